"""Harvest activations into a store on disk: safetensors shards + a JSON manifest, resumable and bounded in RAM.

Guarantees:
- RAM holds at most one shard's worth of activations (``shard_tokens``) plus one batch.
- Each shard is written atomically, then the manifest is rewritten atomically to list it.
- Shards end on batch boundaries, so a killed job resumes at the next batch exactly as the uninterrupted run would
  have processed it: the finished store is identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from workbench import atomic, hooks
from workbench.store.config import StoreConfig
from workbench.store.format import FORMAT, VERSION, read_manifest, shard_name
from workbench.store.reader import ActivationStore
from workbench.store.units import Example, Unit, units

if TYPE_CHECKING:
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _batches(stream: Iterator[Unit], size: int) -> Iterator[list[Unit]]:
    batch: list[Unit] = []
    for unit in stream:
        batch.append(unit)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _record_batch(lm: "LoadedModel", batch: list[Unit], sites: list[str], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded forward pass; returns per-site [n_real_tokens, d] plus the token metadata, on CPU."""
    length = max(len(u.input_ids) for u in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    flags = torch.zeros((len(batch), length), dtype=torch.uint8)
    for row, unit in enumerate(batch):
        n = len(unit.input_ids)
        ids[row, :n] = torch.tensor(unit.input_ids)
        mask[row, :n] = 1
        flags[row, :n] = torch.tensor(unit.flags, dtype=torch.uint8)
    acts = hooks.record(lm, {"input_ids": ids, "attention_mask": mask}, sites)
    keep = mask.bool()
    seq_ids = torch.tensor([u.index for u in batch]).unsqueeze(1).expand_as(ids)
    positions = torch.arange(length).unsqueeze(0).expand_as(ids)
    out = {name: tensor.cpu()[keep] for name, tensor in acts.items()}
    out.update(token_ids=ids[keep].to(torch.int32), flags=flags[keep], seq_ids=seq_ids[keep].to(torch.int64),
               positions=positions[keep].to(torch.int32))
    return out


def _new_manifest(lm: "LoadedModel", config: StoreConfig, sites: list[str]) -> dict:
    return {"format": FORMAT, "version": VERSION, "complete": False, "model_name": lm.name,
            "model_fingerprint": lm.fingerprint, "d_model": lm.d_model, "sites": sites, "config": config.to_dict(),
            "n_tokens": 0, "n_units": 0, "shards": []}


def harvest(lm: "LoadedModel", examples: Iterable[Example], out_dir: str | Path, config: StoreConfig, *,
            progress: bool = True) -> ActivationStore:
    """Record ``config.sites`` over ``examples`` into ``out_dir``; resumes a partial store made with the same config."""
    out = Path(out_dir)
    sites = [hooks.parse_site(s, lm).name for s in config.sites]
    manifest = read_manifest(out) if (out / "manifest.json").exists() else None
    if manifest is not None:
        same = (manifest.get("config") == config.to_dict() and manifest.get("model_fingerprint") == lm.fingerprint
                and manifest.get("sites") == sites)
        if not same:
            raise ValueError(f"{out} already holds a store made with another model or config; pick a new folder or "
                             "delete this one (nothing was changed)")
        if manifest["complete"]:
            return ActivationStore.open(out, expect_fingerprint=lm.fingerprint)
        log.info("resuming %s after %d units / %d tokens", out, manifest["n_units"], manifest["n_tokens"])
    else:
        manifest = _new_manifest(lm, config, sites)
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / "manifest.json", manifest)
    dtype = _TORCH_DTYPES[config.dtype]
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    stream = units(lm.tokenizer, examples, config.formatting, config.block_size)
    for _ in range(manifest["n_units"]):  # skip what finished shards already hold
        next(stream, None)
    pending: list[dict[str, torch.Tensor]] = []
    pending_tokens = pending_units = 0
    total = manifest["n_tokens"]
    bar = tqdm(total=config.max_tokens, initial=min(total, config.max_tokens), unit="tok", disable=not progress,
               desc=f"harvest {out.name}")
    started, written_bytes = time.perf_counter(), 0
    for batch in _batches(stream, config.batch_size):
        if total >= config.max_tokens:
            break
        record = _record_batch(lm, batch, sites, pad_id)
        pending.append(record)
        n = int(record["token_ids"].shape[0])
        pending_tokens, pending_units, total = pending_tokens + n, pending_units + len(batch), total + n
        bar.update(n)
        if pending_tokens >= config.shard_tokens:
            written_bytes += _flush(out, manifest, pending, pending_units, sites, dtype)
            pending, pending_tokens, pending_units = [], 0, 0
    if pending:
        written_bytes += _flush(out, manifest, pending, pending_units, sites, dtype)
    bar.close()
    if manifest["n_tokens"] == 0:
        raise ValueError("no tokens were harvested: the examples are empty or shorter than one packed block "
                         f"({config.block_size} tokens); give more text or use formatting='sequence'")
    manifest["complete"] = True
    manifest["write_seconds"] = round(time.perf_counter() - started, 3)
    atomic.write_json(out / "manifest.json", manifest)
    log.info("harvested %d tokens into %s (%d shards, %.1f MB)", manifest["n_tokens"], out,
             len(manifest["shards"]), written_bytes / 1e6)
    return ActivationStore.open(out, expect_fingerprint=lm.fingerprint)


def _flush(out: Path, manifest: dict, pending: list[dict[str, torch.Tensor]], n_units: int, sites: list[str],
           dtype: torch.dtype) -> int:
    tensors = {key: torch.cat([p[key] for p in pending]) for key in pending[0]}
    for site in sites:
        tensors[site] = tensors[site].to(dtype).contiguous()
    name = shard_name(len(manifest["shards"]))
    with atomic.atomic_path(out / name) as tmp:
        save_file(tensors, str(tmp))
        size = tmp.stat().st_size
        digest = atomic.sha256_file(tmp)
    n_tokens = int(tensors["token_ids"].shape[0])
    manifest["shards"].append({"file": name, "n_tokens": n_tokens, "n_units": n_units, "bytes": size,
                               "sha256": digest})
    manifest["n_tokens"] += n_tokens
    manifest["n_units"] += n_units
    atomic.write_json(out / "manifest.json", manifest)
    return size
