"""On-disk format of an activation store (version 1).

``manifest.json``: format, version, complete, model_name, model_fingerprint, d_model, sites, config, n_tokens,
n_units, shards[{file, n_tokens, n_units, bytes, sha256}]. Each ``shard_XXXXX.safetensors`` holds, for its tokens:
one tensor per site ``[n, d_model]`` (the canonical site name is the key), ``token_ids`` int32 ``[n]``, ``flags``
uint8 ``[n]`` (bits from ``workbench.chat``), ``seq_ids`` int64 ``[n]`` (row in the store), ``positions`` int32 ``[n]``.
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT = "workbench.activation_store"
VERSION = 1
META_KEYS = ("token_ids", "flags", "seq_ids", "positions")


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not an activation store (no manifest.json); make one with "
                                "`workbench store harvest` or workbench.store.harvest()")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the store is corrupt — delete the folder and harvest "
                         "again") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a workbench activation store (format={manifest.get('format')!r})")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path} has store version {manifest.get('version')}, this workbench reads {VERSION}")
    return manifest
