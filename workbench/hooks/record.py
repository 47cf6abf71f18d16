"""One-call recording of activations, stopping the forward pass after the deepest requested site."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from workbench.hooks.ops import Record
from workbench.hooks.session import HookSession, StopForward
from workbench.hooks.sites import Site, SiteLike, parse_site

if TYPE_CHECKING:
    from workbench.models import LoadedModel

Inputs = str | Sequence[str] | Tensor | dict[str, Tensor]


def as_batch(lm: "LoadedModel", inputs: Inputs) -> dict[str, Tensor]:
    """Accept text(s), a token-id tensor [batch, pos] or a tokenizer output dict; return tensors on the model device."""
    if isinstance(inputs, Tensor):
        ids = inputs.unsqueeze(0) if inputs.ndim == 1 else inputs
        if ids.ndim != 2:
            raise ValueError(f"token ids must be [batch, pos], got shape {tuple(inputs.shape)}")
        return {"input_ids": ids.to(lm.device), "attention_mask": torch.ones_like(ids, device=lm.device)}
    if isinstance(inputs, dict):
        if "input_ids" not in inputs:
            raise ValueError("an input dict needs 'input_ids' (and usually 'attention_mask')")
        return {k: v.to(lm.device) for k, v in inputs.items() if isinstance(v, Tensor)}
    return lm.tokenize(inputs)


def _site_list(sites: Sequence[SiteLike] | SiteLike) -> list[SiteLike]:
    """One site (``"resid_post.3"``, ``Site``, ``("resid_post", 3)``) or a sequence of them."""
    single_tuple = isinstance(sites, tuple) and len(sites) == 2 and isinstance(sites[1], int)
    if isinstance(sites, (str, Site)) or single_tuple:
        return [sites]
    return list(sites)


def record(lm: "LoadedModel", inputs: Inputs, sites: Sequence[SiteLike] | SiteLike, *, stop_early: bool = True,
           to_cpu: bool = False) -> dict[str, Tensor]:
    """Activations at ``sites`` for one batch, keyed by canonical site name.

    With ``stop_early`` (default) the forward pass ends right after the deepest requested site: no compute is spent
    on later layers or the LM head.
    """
    parsed = [parse_site(s, lm) for s in _site_list(sites)]
    if not parsed:
        raise ValueError("record() needs at least one site")
    recorders = [Record(site=site, to_cpu=to_cpu) for site in parsed]
    deepest = max(parsed, key=lambda s: s.order) if stop_early else None
    batch = as_batch(lm, inputs)
    with torch.no_grad(), HookSession(lm, recorders, stop_after=deepest):
        try:
            lm.model(**batch, use_cache=False)
        except StopForward:
            pass
    return {site.name: rec.result() for site, rec in zip(parsed, recorders)}
