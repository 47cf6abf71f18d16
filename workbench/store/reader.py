"""Reading an activation store: validation, shards, per-sequence access and a shuffled batch iterator."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from workbench import atomic, hooks
from workbench.store.format import META_KEYS, read_manifest


class ShardData(NamedTuple):
    acts: Tensor
    """[n, d_model] in the store's dtype."""
    token_ids: Tensor
    flags: Tensor
    seq_ids: Tensor
    positions: Tensor


class Sequence(NamedTuple):
    seq_id: int
    acts: Tensor
    token_ids: Tensor
    flags: Tensor


class ActivationStore:
    """A finished store. ``open`` checks the manifest, the model fingerprint and that every shard is present."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        self.folder = folder
        self.manifest = manifest

    @classmethod
    def open(cls, folder: str | Path, *, expect_fingerprint: str | None = None,
             expect_d_model: int | None = None) -> "ActivationStore":
        folder = Path(folder)
        manifest = read_manifest(folder)
        if not manifest["complete"]:
            raise ValueError(f"{folder} is an unfinished store ({manifest['n_tokens']} tokens so far); run the same "
                             "harvest again to resume it")
        if expect_fingerprint is not None and manifest["model_fingerprint"] != expect_fingerprint:
            raise ValueError(f"{folder} was recorded on model {manifest['model_name']!r} (fingerprint "
                             f"{manifest['model_fingerprint']}), not on the model you passed ({expect_fingerprint}); "
                             "harvest a store with this model")
        if expect_d_model is not None and manifest["d_model"] != expect_d_model:
            raise ValueError(f"{folder} holds d_model={manifest['d_model']} activations, expected {expect_d_model}")
        for shard in manifest["shards"]:
            path = folder / shard["file"]
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing from the store; delete the folder and harvest again")
            if path.stat().st_size != shard["bytes"]:
                raise ValueError(f"{path} has {path.stat().st_size} bytes, the manifest says {shard['bytes']}: the "
                                 "shard is corrupt; delete the folder and harvest again")
        return cls(folder, manifest)

    # ---- facts ---------------------------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def fingerprint(self) -> str:
        return self.manifest["model_fingerprint"]

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.folder)!r}, model={self.manifest['model_name']!r}, sites={self.sites}, "
                f"n_tokens={self.n_tokens})")

    def verify(self) -> None:
        """Re-hash every shard against the manifest (slow; ``open`` only checks sizes)."""
        for shard in self.manifest["shards"]:
            if atomic.sha256_file(self.folder / shard["file"]) != shard["sha256"]:
                raise ValueError(f"{shard['file']} does not match its sha256: corrupt; delete the store and harvest again")

    # ---- access --------------------------------------------------------------------------------------------------
    def site(self, site: str | None) -> str:
        """Canonical name of ``site`` in this store (the only one when ``site`` is None)."""
        if site is None:
            if len(self.sites) != 1:
                raise ValueError(f"this store has several sites {self.sites}; name one (--site on the command line)")
            return self.sites[0]
        name = hooks.parse_site(site).name
        if name not in self.sites:
            raise KeyError(f"site {name} is not in this store; it holds {self.sites}")
        return name

    def load_shard(self, index: int, site: str | None = None) -> ShardData:
        name = self.site(site)
        path = self.folder / self.manifest["shards"][index]["file"]
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} could not be read ({err}): the shard is corrupt; delete the store and harvest "
                             "again") from None
        missing = [k for k in (name, *META_KEYS) if k not in tensors]
        if missing:
            raise ValueError(f"{path} lacks tensors {missing}: not a shard of this store")
        return ShardData(tensors[name], *(tensors[k] for k in META_KEYS))

    def iter_shards(self, site: str | None = None, order: list[int] | None = None) -> Iterator[ShardData]:
        for index in order if order is not None else range(len(self.manifest["shards"])):
            yield self.load_shard(index, site)

    def sequences(self, site: str | None = None) -> Iterator[Sequence]:
        """Rows of the store in order (a packed block or one example); rows never span shards."""
        for shard in self.iter_shards(site):
            boundaries = torch.nonzero(shard.seq_ids[1:] != shard.seq_ids[:-1]).flatten() + 1
            starts = [0, *boundaries.tolist()]
            ends = [*boundaries.tolist(), len(shard.seq_ids)]
            for start, end in zip(starts, ends):
                yield Sequence(int(shard.seq_ids[start]), shard.acts[start:end], shard.token_ids[start:end],
                               shard.flags[start:end])

    def batches(self, site: str | None = None, batch_size: int = 4096, *, shuffle: bool = True, seed: int = 0,
                buffer_tokens: int = 1 << 18, device: str | torch.device | None = None, drop_last: bool = False,
                token_filter: Callable[[ShardData], Tensor] | None = None, epochs: int = 1) -> Iterator[Tensor]:
        """Float32 batches ``[batch_size, d_model]``.

        With ``shuffle``: shards in random order feed a buffer of ``buffer_tokens``; the buffer is shuffled, half of
        it handed out, then refilled (the shuffle-buffer of SAE training). ``token_filter(shard) -> bool mask`` keeps
        only some tokens (e.g. drop position 0). Deterministic for a given seed.
        """
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        generator = torch.Generator().manual_seed(seed)
        buffer = torch.empty(0, self.d_model)
        for _ in range(epochs):
            n_shards = len(self.manifest["shards"])
            order = torch.randperm(n_shards, generator=generator).tolist() if shuffle else list(range(n_shards))
            for shard in self.iter_shards(site, order):
                acts = shard.acts if token_filter is None else shard.acts[token_filter(shard)]
                buffer = torch.cat([buffer, acts.float()])
                if buffer.shape[0] < buffer_tokens and shuffle:
                    continue
                if shuffle:
                    buffer = buffer[torch.randperm(buffer.shape[0], generator=generator)]
                keep = buffer.shape[0] // 2 if shuffle else buffer.shape[0] % batch_size
                n_out = (buffer.shape[0] - keep) // batch_size * batch_size
                for start in range(0, n_out, batch_size):
                    yield buffer[start:start + batch_size].to(device) if device else buffer[start:start + batch_size]
                buffer = buffer[n_out:]
        if shuffle and buffer.shape[0]:
            buffer = buffer[torch.randperm(buffer.shape[0], generator=generator)]
        for start in range(0, buffer.shape[0], batch_size):
            chunk = buffer[start:start + batch_size]
            if drop_last and chunk.shape[0] < batch_size:
                break
            yield chunk.to(device) if device else chunk
