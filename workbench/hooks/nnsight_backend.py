"""The same hook sites through nnsight, so experiment code can move to NDIF-hosted models via nnsight's remote
execution. Recording here matches ``workbench.hooks.record`` (tested); the torch-hook path is faster locally
(see bench/results/harvest.json), so it stays the default.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Sequence
from weakref import WeakKeyDictionary

import torch
from torch import Tensor

from workbench.hooks.record import Inputs, as_batch
from workbench.hooks.sites import Site, SiteLike, parse_site

if TYPE_CHECKING:
    from workbench.models import LoadedModel

_WRAPPERS: "WeakKeyDictionary[object, object]" = WeakKeyDictionary()
_LOCK = threading.Lock()


def nnsight_model(lm: "LoadedModel"):
    """An ``nnsight.TransformersModel`` around the already loaded HF model (cached per model; no copy, no download)."""
    from nnsight import TransformersModel

    with _LOCK:
        if lm.model not in _WRAPPERS:
            _WRAPPERS[lm.model] = TransformersModel(lm.model, task="text-generation", tokenizer=lm.tokenizer)
        return _WRAPPERS[lm.model]


def _envoy(root, dotted: str):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def _proxy(nlm, lm: "LoadedModel", site: Site):
    layer = _envoy(nlm, lm.arch.layers)[site.layer]
    if site.kind == "resid_pre":
        return layer.input
    if site.kind == "resid_post":
        return layer.output
    if site.kind == "attn_out":
        return getattr(layer, lm.arch.attn).output[0]
    if site.kind == "mlp_out":
        return getattr(layer, lm.arch.mlp).output
    raise ValueError(f"{site.name}: attention patterns are recorded with workbench.hooks.record, not the nnsight backend")


def record_nnsight(lm: "LoadedModel", inputs: Inputs, sites: Sequence[SiteLike], *,
                   stop_early: bool = True) -> dict[str, Tensor]:
    """``workbench.hooks.record`` through an nnsight trace (sites are visited in execution order, as nnsight needs)."""
    parsed = sorted({parse_site(s, lm) for s in sites}, key=lambda s: s.order)
    batch = as_batch(lm, inputs)
    nlm = nnsight_model(lm)
    saved = {}
    with torch.no_grad(), nlm.trace(batch["input_ids"], attention_mask=batch.get("attention_mask")) as tracer:
        for site in parsed:
            saved[site.name] = _proxy(nlm, lm, site).save()
        if stop_early:
            tracer.stop()
    return {name: value for name, value in saved.items()}
