"""Steering vectors from contrast prompts: mean difference of residual activations (ActAdd / CAA style).

``v = mean_i act(positive_i) - mean_j act(negative_j)`` at one hook site, read either at each prompt's last token
(Rimsky et al. 2024, "Steering Llama 2 via Contrastive Activation Addition") or averaged over the prompt's tokens.

>>> vec = contrast_vector(lm, ["I love this"], ["I hate this"], "resid_post.10")   # doctest: +SKIP
>>> compare_generations(lm, ["Tell me about cats"], vec, scale=4.0)                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from steering.vector import SteeringVector
from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel

READOUTS = ("last", "mean")


def prompt_activations(lm: "LoadedModel", prompts: Sequence[str], site: str, *, readout: str = "last",
                       chat: bool = False, batch_size: int = 16) -> Tensor:
    """One activation per prompt at ``site``: [n_prompts, d_model] (float32, CPU)."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise ValueError("need at least one non-empty prompt")
    if chat:
        from workbench.chat import render_prompt

        prompts = [render_prompt(lm.tokenizer, p) for p in prompts]
    name = hooks.parse_site(site, lm).name
    rows: list[Tensor] = []
    for start in range(0, len(prompts), batch_size):
        batch = lm.tokenize(list(prompts[start:start + batch_size]), add_special_tokens=not chat)  # left padded
        acts_BPD = hooks.record(lm, batch, [name])[name].float()
        if readout == "last":
            rows.append(acts_BPD[:, -1].cpu())
        else:
            mask_BP1 = batch["attention_mask"].unsqueeze(-1).to(acts_BPD.dtype)
            rows.append(((acts_BPD * mask_BP1).sum(1) / mask_BP1.sum(1).clamp_min(1)).cpu())
    return torch.cat(rows)


def contrast_vector(lm: "LoadedModel", positive: Sequence[str], negative: Sequence[str], site: str, *,
                    readout: str = "last", chat: bool = False, scale: float = 1.0,
                    scope: hooks.ScopeLike = "all") -> SteeringVector:
    """Mean(positive) - mean(negative) activation at ``site`` as a ``SteeringVector`` bound to ``lm``."""
    pos_ND = prompt_activations(lm, positive, site, readout=readout, chat=chat)
    neg_ND = prompt_activations(lm, negative, site, readout=readout, chat=chat)
    vector_D = pos_ND.mean(0) - neg_ND.mean(0)
    provenance = {"method": f"contrast mean difference ({readout} token)", "n_positive": len(pos_ND),
                  "n_negative": len(neg_ND), "chat": chat,
                  "data": {"positive": list(positive)[:50], "negative": list(negative)[:50]}}
    return SteeringVector(vector_D, hooks.parse_site(site, lm).name, scale=scale, scope=scope,
                          model_fingerprint=lm.fingerprint,
                          metadata={"provenance": provenance, "model_name": lm.name, "n_layers": lm.n_layers})


@dataclass
class Comparison:
    prompt: str
    unsteered: str
    steered: str


def compare_generations(lm: "LoadedModel", prompts: Sequence[str], vector: SteeringVector | None = None, *,
                        scale: float | None = None, max_new_tokens: int = 32, chat: bool | None = None,
                        session: hooks.HookSession | None = None) -> list[Comparison]:
    """Greedy generations without and with the intervention (a vector, or any hook session such as a bundle's)."""
    if (vector is None) == (session is None):
        raise ValueError("pass exactly one of vector= or session=")
    prompts = list(prompts)
    plain = lm.generate(prompts, max_new_tokens=max_new_tokens, chat=chat)
    with session if session is not None else vector.apply(lm, scale=scale):
        steered = lm.generate(prompts, max_new_tokens=max_new_tokens, chat=chat)
    return [Comparison(p, a, b) for p, a, b in zip(prompts, plain, steered)]
