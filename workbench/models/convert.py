"""Convert a GGUF checkpoint once into a plain transformers folder (safetensors) so later loads take about a second.

Loading a GGUF through transformers de-quantises every tensor to float32 (~20-50 s). We do that once, save the result
with ``save_pretrained`` and record the fingerprint next to it in ``workbench.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench import atomic
from workbench.models.fingerprint import fingerprint

log = logging.getLogger(__name__)

SIDECAR = "workbench.json"


def is_converted(folder: Path) -> bool:
    return (folder / SIDECAR).exists() and (folder / "config.json").exists()


def gguf_to_folder(gguf_path: Path, folder: Path, *, source: str) -> Path:
    """De-quantise ``gguf_path`` to float32 and save model + tokenizer into ``folder`` (all or nothing)."""
    if is_converted(folder):
        return folder
    log.info("converting %s to safetensors (one-off, ~30 s)", gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model ("quantized with gguf, not serializable"); the weights are
    # already de-quantised float32, so drop the quantizer marker before saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        sidecar = {"fingerprint": fingerprint(model, model.config), "source": source, "gguf": gguf_path.name,
                   "gguf_sha256": atomic.sha256_file(gguf_path)}
        (staging / SIDECAR).write_text(json.dumps(sidecar, indent=2, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def read_sidecar(folder: Path) -> dict:
    path = folder / SIDECAR
    return json.loads(path.read_text()) if path.exists() else {}
