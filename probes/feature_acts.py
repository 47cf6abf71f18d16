"""SAE feature activations on one prompt: record the SAE's site, encode, keep the most active features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel


@dataclass
class FeatureActivations:
    tokens: list[str]
    features: list[int]
    """Feature indices, most active first (by max over positions)."""
    acts_FP: Tensor
    """[feature, pos] activations of those features."""


@torch.no_grad()
def feature_activations(lm: "LoadedModel", sae, site: str, text: str, *, top_n: int = 10) -> FeatureActivations:
    """``sae.encode`` of the activations at ``site`` for ``text``; the ``top_n`` features by max activation."""
    name = hooks.parse_site(site, lm).name
    batch = lm.tokenize([text])
    acts_PD = hooks.record(lm, batch, [name])[name][0].float()
    feats_PF = sae.encode(acts_PD.to(sae.W_dec.device))
    top = feats_PF.max(0).values.topk(min(top_n, feats_PF.shape[1])).indices
    return FeatureActivations(tokens=[lm.tokenizer.decode([i]) for i in batch["input_ids"][0].tolist()],
                              features=top.tolist(), acts_FP=feats_PF[:, top].T.cpu())
