"""Saving and loading fitted steerers: ``<dir>/cfg.json`` + ``<dir>/tensors.safetensors`` with the model fingerprint.

``load`` checks the format, tensor shapes, finiteness and — given a model — its width, depth and fingerprint, and
says what to do when they do not match (refit on that model). Only JSON and safetensors are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from workbench import atomic

FORMAT = "workbench.gact"
VERSION = 1


def save_artifact(path: str | Path, tensors: dict[str, torch.Tensor], cfg: dict[str, Any]) -> Path:
    """Write the folder atomically (tensors first, then cfg.json, so a folder with cfg.json is complete)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(folder / "tensors.safetensors") as tmp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    atomic.write_json(folder / "cfg.json", {"format": FORMAT, "version": VERSION, **cfg})
    return folder


def load_artifact(path: str | Path, *, kind: str, lm=None, strict: bool = True
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    folder = Path(path)
    cfg_path, tensor_path = folder / "cfg.json", folder / "tensors.safetensors"
    for p in (cfg_path, tensor_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing; a saved G-ACT steerer is a folder with cfg.json + "
                                    "tensors.safetensors (written by .save())")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("format") != FORMAT or cfg.get("kind") != kind:
        raise ValueError(f"{folder} holds format={cfg.get('format')!r} kind={cfg.get('kind')!r}, "
                         f"expected {FORMAT!r} kind={kind!r}")
    tensors = load_file(str(tensor_path))
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{tensor_path}: tensor {name} contains NaN or inf")
    if lm is not None:
        check_model(cfg, lm, strict=strict)
    return tensors, cfg


def check_model(cfg: dict[str, Any], lm, *, strict: bool = True) -> None:
    """Raise when the artifact was made for a model of another width/depth (always) or fingerprint (``strict``)."""
    if cfg["d_model"] != lm.d_model or cfg["n_layers"] != lm.n_layers:
        raise ValueError(f"these probes/vectors are for a model with d_model={cfg['d_model']}, "
                         f"n_layers={cfg['n_layers']} ({cfg.get('model_name')}), but {lm.name} has "
                         f"d_model={lm.d_model}, n_layers={lm.n_layers}; refit them on this model")
    if strict and cfg.get("model_fingerprint") not in (None, lm.fingerprint):
        raise ValueError(f"these probes/vectors were fitted on {cfg.get('model_name')} with fingerprint "
                         f"{cfg['model_fingerprint']}, but {lm.name} has {lm.fingerprint}; refit them on this model "
                         "(or pass strict=False if you know the weights are compatible)")
