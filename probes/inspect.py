"""One prompt, looked at from inside: tokens, residual-stream norms per layer, attention patterns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel


@dataclass
class Inspection:
    tokens: list[str]
    resid_norms: Tensor
    """[layer, pos] L2 norm of ``resid_post`` of every layer."""
    attn_out_norms: Tensor
    """[layer, pos] L2 norm of each layer's attention output."""
    mlp_out_norms: Tensor
    """[layer, pos] L2 norm of each layer's MLP output."""
    patterns: dict[int, Tensor]
    """layer -> [head, query_pos, key_pos] attention probabilities (only the layers asked for)."""


@torch.no_grad()
def inspect_prompt(lm: "LoadedModel", text: str, *, pattern_layers: Sequence[int] = (),
                   add_special_tokens: bool = True) -> Inspection:
    """Record norms of every layer and the attention patterns of ``pattern_layers`` in one forward pass."""
    if not text:
        raise ValueError("inspect_prompt needs a non-empty text")
    batch = lm.tokenize([text], add_special_tokens=add_special_tokens)
    layers = range(lm.n_layers)
    kinds = ("resid_post", "attn_out", "mlp_out")
    sites = [hooks.Site(layer, kind).name for kind in kinds for layer in layers]
    pattern_sites = {lm.check_layer(layer): hooks.Site(lm.check_layer(layer), "attn_pattern").name
                     for layer in pattern_layers}
    acts = hooks.record(lm, batch, sites + list(pattern_sites.values()), to_cpu=True)

    def norms(kind: str) -> Tensor:
        return torch.stack([acts[hooks.Site(layer, kind).name][0].float().norm(dim=-1) for layer in layers])

    ids = batch["input_ids"][0].tolist()
    return Inspection(tokens=[lm.tokenizer.decode([i]) for i in ids], resid_norms=norms("resid_post"),
                      attn_out_norms=norms("attn_out"), mlp_out_norms=norms("mlp_out"),
                      patterns={layer: acts[name][0].float() for layer, name in pattern_sites.items()})
