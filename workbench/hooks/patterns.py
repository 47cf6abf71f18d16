"""Attention patterns on demand, without giving up fast (SDPA / flash) attention.

transformers computes attention through a named function (``config._attn_implementation``). We register a thin
wrapper, ``workbench_<impl>``, that delegates to the original implementation unless the current context asked for the
patterns of that layer; then it computes attention explicitly and returns the probabilities, which the attention
module hands back as its second output. The request is carried by a ``ContextVar``, so one thread asking for patterns
does not slow down or change another thread's forward pass. Installing the wrapper is idempotent and numerically a
no-op for every caller that does not ask for patterns.
"""

from __future__ import annotations

import contextlib
import threading
from contextvars import ContextVar
from typing import Iterator

import torch
from torch import Tensor
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

_PATTERN_LAYERS: ContextVar[frozenset[int]] = ContextVar("workbench_pattern_layers", default=frozenset())
_INSTALL_LOCK = threading.Lock()
PREFIX = "workbench_"


@contextlib.contextmanager
def want_patterns(layers: set[int]) -> Iterator[None]:
    token = _PATTERN_LAYERS.set(_PATTERN_LAYERS.get() | frozenset(layers))
    try:
        yield
    finally:
        _PATTERN_LAYERS.reset(token)


def attention_with_weights(module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                           scaling: float | None = None, dropout: float = 0.0, softcap: float | None = None,
                           sliding_window: int | None = None, **_: object) -> tuple[Tensor, Tensor]:
    """Explicit softmax attention. query [b, h, q, d]; key/value [b, kv_h, k, d]; returns ([b, q, h, d], [b, h, q, k])."""
    n_rep = query.shape[1] // key.shape[1]
    key_bhkd = key.repeat_interleave(n_rep, dim=1)
    value_bhkd = value.repeat_interleave(n_rep, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores_bhqk = torch.matmul(query, key_bhkd.transpose(2, 3)) * scale
    if softcap is not None:
        scores_bhqk = torch.tanh(scores_bhqk / softcap) * softcap
    q_len, k_len = query.shape[2], key_bhkd.shape[2]
    floor = torch.finfo(scores_bhqk.dtype).min  # not -inf: fully masked (padding) rows must not become NaN
    if attention_mask is None:  # SDPA's "pure causal" fast path passes no mask
        q_pos = torch.arange(q_len, device=query.device).unsqueeze(1) + (k_len - q_len)
        k_pos = torch.arange(k_len, device=query.device).unsqueeze(0)
        allowed = k_pos <= q_pos
        if sliding_window is not None:
            allowed &= k_pos > q_pos - sliding_window
        scores_bhqk = scores_bhqk.masked_fill(~allowed, floor)
    elif attention_mask.dtype == torch.bool:
        scores_bhqk = scores_bhqk.masked_fill(~attention_mask[..., :k_len], floor)
    else:
        scores_bhqk = scores_bhqk + attention_mask[..., :k_len]
    weights_bhqk = torch.softmax(scores_bhqk, dim=-1, dtype=torch.float32).to(query.dtype)
    out_bqhd = torch.matmul(weights_bhqk, value_bhkd).transpose(1, 2).contiguous()
    return out_bqhd, weights_bhqk


def _wrapper(impl: str):
    def attention(module, query, key, value, attention_mask, **kwargs):
        if getattr(module, "layer_idx", None) in _PATTERN_LAYERS.get():
            return attention_with_weights(module, query, key, value, attention_mask, **kwargs)
        return ALL_ATTENTION_FUNCTIONS[impl](module, query, key, value, attention_mask, **kwargs)

    return attention


def ensure_installed(model) -> None:
    """Route ``model``'s attention through the pattern-capable wrapper (once; thread-safe)."""
    impl = model.config._attn_implementation
    if impl == "eager" or impl.startswith(PREFIX):
        return  # eager attention already returns its weights
    name = PREFIX + impl
    with _INSTALL_LOCK:
        if name not in ALL_ATTENTION_FUNCTIONS:
            AttentionInterface.register(name, _wrapper(impl))
            AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[impl])
        if model.config._attn_implementation != name:
            model.set_attn_implementation(name)
