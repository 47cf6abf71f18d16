"""Shuffle buffer over activation chunks (fill, shuffle, hand out half, refill), as in FAST and SAELens.

Consecutive tokens of one sequence are highly correlated; mixing them across many sequences before batching makes
each SAE batch closer to i.i.d. Deterministic for a given seed.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import Tensor


def shuffle_batches(chunks: Iterable[Tensor], batch_size: int, buffer_tokens: int = 65536, seed: int = 0,
                    drop_last: bool = True) -> Iterator[Tensor]:
    """Yield ``[batch_size, d]`` batches from ``[n, d]`` chunks through a shuffle buffer of ``buffer_tokens`` rows."""
    if buffer_tokens < 2 * batch_size:
        raise ValueError(f"buffer_tokens ({buffer_tokens}) should be at least 2 * batch_size ({2 * batch_size})")
    gen = torch.Generator().manual_seed(seed)
    buffer: Tensor | None = None
    for chunk in chunks:
        chunk = chunk.reshape(-1, chunk.shape[-1])
        buffer = chunk if buffer is None else torch.cat([buffer, chunk])
        if buffer.shape[0] < buffer_tokens:
            continue
        buffer = buffer[torch.randperm(buffer.shape[0], generator=gen)]
        n_out = (buffer.shape[0] // 2 // batch_size) * batch_size  # hand out half, keep the rest mixing
        for start in range(0, n_out, batch_size):
            yield buffer[start:start + batch_size]
        buffer = buffer[n_out:]
    if buffer is not None and buffer.shape[0]:
        buffer = buffer[torch.randperm(buffer.shape[0], generator=gen)]
        n_full = buffer.shape[0] // batch_size
        for i in range(n_full):
            yield buffer[i * batch_size:(i + 1) * batch_size]
        if not drop_last and buffer.shape[0] % batch_size:
            yield buffer[n_full * batch_size:]
