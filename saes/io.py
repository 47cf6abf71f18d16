"""Save/load SAEs in SAELens's on-disk layout, plus our provenance side file.

    <dir>/cfg.json                 SAELens 6 config (architecture, d_in, d_sae, dtype, apply_b_dec_to_input,
                                   normalize_activations, reshape_activations, metadata{sae_lens_version, hook_name,
                                   model_name, ...}; k and rescale_acts_by_decoder_norm for topk)
    <dir>/sae_weights.safetensors  W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec (+ threshold for jumprelu)
    <dir>/workbench.json           our side file: our SAEConfig, model fingerprint, regime, training config and stats

``sae_lens.SAE.load_from_disk(<dir>)`` loads it unmodified (tested). The directory is written to a temporary
sibling and renamed, so a crash never leaves half an SAE, and an existing SAE is never overwritten unless asked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from saes.architectures import SparseAutoencoder
from saes.config import SAEConfig, SAEMeta

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SIDE_FILENAME = "workbench.json"
FORMAT_VERSION = 1


class OutputExistsError(FileExistsError, ValueError):
    """The output folder exists and overwriting was not asked for (a ValueError too, so the CLI reports it)."""


def _saelens_version() -> str:
    try:
        from importlib.metadata import version
        return version("sae-lens")
    except Exception:  # noqa: BLE001 - any failure: claim the 6.x format we write
        return "6.0.0"


def saelens_cfg(cfg: SAEConfig, meta: SAEMeta) -> dict[str, Any]:
    """The cfg.json SAELens 6 expects (``SAEConfig.to_dict()`` of its Standard/JumpReLU/TopK config classes)."""
    d: dict[str, Any] = {
        "architecture": cfg.architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",  # any training-time scale is folded into the weights
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": _saelens_version(),
            "sae_lens_training_version": None,
            "model_name": meta.model_name,
            "hook_name": meta.hook_name,
            "hook_head_index": None,
            "prepend_bos": True,
            "context_size": None,
            "dataset_path": meta.regime or None,
        },
    }
    if cfg.architecture == "topk":
        d["k"] = cfg.k
        d["rescale_acts_by_decoder_norm"] = False
    return d


def save_sae(sae: SparseAutoencoder, path: str | os.PathLike[str], meta: SAEMeta | None = None, *,
             overwrite: bool = False) -> Path:
    """Write ``sae`` to the directory ``path`` atomically; refuses to replace an existing SAE unless ``overwrite``."""
    final = Path(path)
    meta = meta or SAEMeta()
    if final.exists() and not overwrite:
        raise OutputExistsError(f"{final} already exists; pass overwrite=True (CLI: --overwrite) or choose a new path")
    weights = sae.saelens_state_dict()
    for name, tensor in weights.items():
        if not torch.isfinite(tensor).all():
            raise ValueError(f"refusing to save an SAE with non-finite {name}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        save_file(weights, tmp / WEIGHTS_FILENAME)
        (tmp / CFG_FILENAME).write_text(json.dumps(saelens_cfg(sae.cfg, meta), indent=2))
        side = {"format_version": FORMAT_VERSION, "sae_cfg": sae.cfg.to_dict(), **asdict(meta)}
        (tmp / SIDE_FILENAME).write_text(json.dumps(side, indent=2, default=str))
        if final.exists():
            backup = final.with_name(f".{final.name}.old")
            os.replace(final, backup)
            os.replace(tmp, final)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def load_sae(path: str | os.PathLike[str], *, expect_fingerprint: str | None = None,
             device: str | torch.device | None = None) -> tuple[SparseAutoencoder, SAEMeta]:
    """Load an SAE written by :func:`save_sae` (or a plain SAELens standard/jumprelu/topk folder)."""
    path = Path(path)
    if not (path / CFG_FILENAME).exists() or not (path / WEIGHTS_FILENAME).exists():
        raise FileNotFoundError(f"{path} is not an SAE folder: expected {CFG_FILENAME} and {WEIGHTS_FILENAME}")
    side_path = path / SIDE_FILENAME
    if side_path.exists():
        side = json.loads(side_path.read_text())
        cfg = SAEConfig(**side["sae_cfg"])
        meta = SAEMeta(**{k: side[k] for k in SAEMeta.__dataclass_fields__ if k in side})
    else:
        raw = json.loads((path / CFG_FILENAME).read_text())
        cfg = SAEConfig(d_in=raw["d_in"], d_sae=raw["d_sae"], architecture=raw.get("architecture", "standard"),
                        k=raw.get("k", 32), apply_b_dec_to_input=raw.get("apply_b_dec_to_input", True))
        md = raw.get("metadata", {})
        meta = SAEMeta(model_name=md.get("model_name") or "", hook_name=md.get("hook_name") or "")
    if expect_fingerprint is not None and meta.model_fingerprint and meta.model_fingerprint != expect_fingerprint:
        raise ValueError(f"SAE at {path} was trained on model fingerprint {meta.model_fingerprint}, but the model "
                         f"has {expect_fingerprint}; load the model it was trained on")
    sae = SparseAutoencoder(cfg, device=device, seed=None)
    sae.load_saelens_state_dict(load_file(path / WEIGHTS_FILENAME))
    return sae, meta
