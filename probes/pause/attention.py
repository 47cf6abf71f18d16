"""Attention mass on pause tokens and on the needle, per layer and head, with vs without pauses.

For a NIAH prompt we read every layer's attention pattern (``blocks.{l}.attn.hook_pattern``, computed on demand by
the workbench hooks) and reduce it inside the hook to the mass that the question's tokens (the queries) put on a set
of key positions, averaged over queries: ``mass[layer, head] = mean_q sum_{k in S} A[head, q, k]``. Only these
reductions are kept, so a 4k-token prompt never stores 30 full [heads, 4k, 4k] patterns.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from probes.pause.niah import NEEDLE, NiahCase, check_context
from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel


def char_span_tokens(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Token positions whose character span overlaps [start, end)."""
    return [i for i, (a, b) in enumerate(offsets) if b > start and a < end and b > a]


def attention_mass(lm: "LoadedModel", ids: Tensor, key_sets: dict[str, Sequence[int]], queries: Sequence[int],
                   layers: Sequence[int] | None = None) -> dict[str, Tensor]:
    """``{name: mass[layer, head]}`` for each named set of key positions; ``ids`` is one sequence [pos]."""
    if ids.ndim != 1 or ids.numel() == 0:
        raise ValueError(f"need one non-empty sequence of token ids [pos], got shape {tuple(ids.shape)}")
    check_context(lm, ids.numel())
    if not queries:
        raise ValueError("need at least one query position")
    layers = list(range(lm.n_layers)) if layers is None else [lm.check_layer(layer) for layer in layers]
    q_idx = torch.tensor(list(queries))
    k_idx = {name: torch.tensor(list(pos), dtype=torch.long) for name, pos in key_sets.items()}
    out = {name: torch.zeros(len(layers), lm.config.num_attention_heads) for name in key_sets}
    row = {layer: i for i, layer in enumerate(layers)}

    def reduce(pattern_BHQK: Tensor, ctx) -> None:
        rows_HQK = pattern_BHQK[0][:, q_idx.to(pattern_BHQK.device)].float()
        for name, keys in k_idx.items():
            if keys.numel():
                out[name][row[ctx.site.layer]] = rows_HQK[:, :, keys.to(rows_HQK.device)].sum(-1).mean(-1).cpu()
        return None

    ops = [hooks.Apply(site=f"blocks.{layer}.attn.hook_pattern", fn=reduce) for layer in layers]
    with torch.no_grad(), hooks.intervene(lm, ops):
        lm.model(input_ids=ids.unsqueeze(0).to(lm.device), use_cache=False)
    return out


def case_positions(lm: "LoadedModel", case: NiahCase, marker: str | None) -> tuple[Tensor, dict[str, list[int]],
                                                                                      list[int]]:
    """Token ids of ``case.prompt``, key sets (needle, pause markers) and query positions (question to the end)."""
    enc = lm.tokenizer(case.prompt, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    needle_pos: list[int] = []
    for key, value in case.needles:
        sentence = case.extra.get("needle_template", NEEDLE).format(key=key, value=value)
        start = case.prompt.find(sentence)
        if start < 0:
            raise ValueError(f"needle {sentence!r} not found in the prompt")
        needle_pos += char_span_tokens(offsets, start, start + len(sentence))
    pause_pos: list[int] = []
    if marker:
        for m in re.finditer(re.escape(marker), case.prompt):
            pause_pos += char_span_tokens(offsets, m.start(), m.end())
    q_start = case.prompt.rfind(case.question)
    queries = list(range(char_span_tokens(offsets, q_start, q_start + 1)[0], len(offsets)))
    return torch.tensor(enc["input_ids"]), {"needle": needle_pos, "pause": sorted(set(pause_pos))}, queries


def case_attention(lm: "LoadedModel", case: NiahCase, marker: str | None = None) -> dict:
    """Needle and pause attention mass [layer, head] for one case, plus the uniform-attention reference (the share of
    positions each set covers), so masses compare across lengths."""
    ids, keys, queries = case_positions(lm, case, marker)
    mass = attention_mass(lm, ids, keys, queries)
    n = ids.numel()
    return {"needle": mass["needle"], "pause": mass["pause"], "n_tokens": n,
            "uniform_needle": len(keys["needle"]) / n, "uniform_pause": len(keys["pause"]) / n,
            "n_pause_tokens": len(keys["pause"])}
