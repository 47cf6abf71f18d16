"""Model loading: named offline models, local folders, hub ids, and a tiny test model.

>>> lm = load_model("smollm2-135m-instruct")          # doctest: +SKIP
>>> lm.n_layers, lm.d_model
(30, 576)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench import paths
from workbench.models.catalog import CATALOG, DEFAULT_MODEL, OfflineModel, fetch_gguf, lookup
from workbench.models.convert import gguf_to_folder, is_converted, read_sidecar
from workbench.models.loaded import LoadedModel
from workbench.models.tiny import tiny_llama, tiny_tokenizer

log = logging.getLogger(__name__)

TINY_MODEL = "tiny"
"""Name that ``load_model`` maps to ``tiny_model()`` (tests, UI smoke runs)."""

__all__ = ["CATALOG", "DEFAULT_MODEL", "LoadedModel", "OfflineModel", "default_device", "fetch_model",
           "load_model", "tiny_model", "wrap_model", "TINY_MODEL"]


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        try:
            return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                    "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None
    return dtype


def fetch_model(name: str) -> Path:
    """Make sure the named offline model is downloaded and converted; returns its safetensors folder."""
    spec = lookup(name)
    folder = paths.models_dir() / spec.name
    if not is_converted(folder):
        gguf_to_folder(fetch_gguf(spec), folder, source=name)
    return folder


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None) -> LoadedModel:
    """Load a named offline model, a local transformers folder, or (when a hub is reachable) a hub id.

    ``device`` defaults to CUDA when present; ``dtype`` defaults to float32 on CPU and bfloat16 on CUDA.
    """
    target = torch.device(device) if device is not None else default_device()
    torch_dtype = _resolve_dtype(dtype, target)
    name = str(name_or_path)
    if name == TINY_MODEL:
        return tiny_model(device=target)
    fingerprint = None
    if name in CATALOG:
        folder = fetch_model(name)
        fingerprint = read_sidecar(folder).get("fingerprint")
    elif Path(name).expanduser().exists():
        folder = Path(name).expanduser()
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder} has no config.json; point at a transformers model folder "
                                    f"(save_pretrained output) or use one of {sorted(CATALOG)}")
        fingerprint = read_sidecar(folder).get("fingerprint")
    else:
        folder = name  # a hub id: transformers reports a clear error when no hub is reachable
        log.info("%r is neither an offline model %s nor a local folder; trying it as a hub id", name, sorted(CATALOG))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
    except OSError as err:
        raise OSError(f"could not load {name!r}: {err}\nOffline models: {sorted(CATALOG)}; or pass a local "
                      "folder containing config.json and safetensors weights.") from err
    model.to(target)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, _fingerprint=fingerprint)


def wrap_model(model, tokenizer, name: str = "custom") -> LoadedModel:
    """Wrap an already loaded transformers causal LM (ours or yours) without copying it."""
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)


def tiny_model(n_layers: int = 2, d_model: int = 64, seed: int = 0, device: str | torch.device = "cpu") -> LoadedModel:
    """Randomly initialised 2-layer Llama (hidden 64) with a byte tokenizer and ChatML template; no network."""
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer), n_layers=n_layers, d_model=d_model, seed=seed).to(device)
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"tiny-llama-{n_layers}x{d_model}-seed{seed}")
