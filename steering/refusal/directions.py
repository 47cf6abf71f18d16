"""Candidate refusal directions: difference of means at every layer × post-instruction position (Arditi et al. 2024).

    r[pos, l] = mean_harmful(resid_pre_l[pos]) − mean_harmless(resid_pre_l[pos])

Before averaging, prompts are filtered by the model's own refusal score (harmful prompts it does not refuse and
harmless prompts it does refuse are dropped), as in the paper. A chosen candidate becomes a ``SteeringVector`` at
``blocks.{l}.hook_resid_pre`` carrying the model fingerprint; ``load_direction`` refuses files from another model,
of the wrong width, or holding non-finite values.

The paper's alternative (Guiding Giants / WAS): ``phrase_directions`` — mean activation of refusal phrases minus
compliance phrases, written as assistant answers, one direction per layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from steering.refusal import forward as fw
from steering.vector import SteeringVector
from workbench import hooks
from workbench.chat import encode_chat

if TYPE_CHECKING:
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)

REFUSAL_PHRASES = (
    "I'm sorry, but I can't assist with that.",
    "I cannot help with that request.",
    "I'm sorry, I can't provide that information.",
    "As an AI, I must decline this request.",
    "I can't help with that. It would be unsafe and unethical.",
    "Sorry, but I won't be able to help with this.",
    "I'm unable to comply with that request.",
    "I must refuse: this could cause harm.",
)
COMPLIANCE_PHRASES = (
    "Sure, here's how you can do that.",
    "Of course! Here is what you asked for.",
    "Certainly. Here are the steps:",
    "Absolutely, let me walk you through it.",
    "Sure! Here's a detailed answer.",
    "Here is the information you requested.",
    "Great question! Here's how it works.",
    "Okay, here's a step-by-step guide.",
)


@dataclass
class PromptActivations:
    """Post-instruction residual activations and refusal scores of a set of prompts."""

    acts_NPLD: Float[Tensor, "n pos layer d_model"]
    scores_N: Float[Tensor, " n"]
    positions: list[int] = field(default_factory=list)
    """Negative offsets from the end of the prompt, e.g. [-5, ..., -1]."""


@torch.no_grad()
def prompt_activations(lm: "LoadedModel", prompts: Sequence[str], *, batch_size: int = 16,
                       n_post: int | None = None) -> PromptActivations:
    """One forward per batch: ``resid_pre`` of every layer at the post-instruction positions, plus refusal scores."""
    if not prompts:
        raise ValueError("prompt_activations needs at least one prompt")
    n_post = n_post or fw.n_post_instruction(lm)
    sites = [hooks.Site(layer, "resid_pre") for layer in range(lm.n_layers)]
    refusal_ids = fw.refusal_token_ids(lm)
    acts, scores = [], []
    for chunk in fw.batches(list(prompts), batch_size):
        batch = fw.encode(lm, chunk)
        with hooks.recording(lm, sites) as rec:
            logits_BV = fw.last_logits(lm, batch)
        # each recording is [batch, pos, d]; keep the last n_post positions -> [batch, n_post, layer, d]
        acts.append(torch.stack([rec[s][:, -n_post:] for s in sites], dim=2).float().cpu())
        scores.append(fw.refusal_score(logits_BV, refusal_ids).cpu())
    return PromptActivations(torch.cat(acts), torch.cat(scores), list(range(-n_post, 0)))


@dataclass
class Candidates:
    """Difference-of-means candidates, indexed by (post-instruction position, layer)."""

    diff_PLD: Float[Tensor, "pos layer d_model"]
    positions: list[int]
    model_fingerprint: str
    n_harmful: int
    n_harmless: int

    @property
    def n_layers(self) -> int:
        return self.diff_PLD.shape[1]

    def vector(self, position: int, layer: int) -> Tensor:
        return self.diff_PLD[self.positions.index(position), layer]

    def to_steering_vector(self, position: int, layer: int, **metadata) -> SteeringVector:
        return SteeringVector(self.vector(position, layer), site=hooks.Site(layer, "resid_pre").name,
                              model_fingerprint=self.model_fingerprint,
                              metadata={"method": "diff_means", "position": position, "layer": layer,
                                        "n_harmful": self.n_harmful, "n_harmless": self.n_harmless, **metadata})


def candidate_directions(lm: "LoadedModel", harmful: Sequence[str], harmless: Sequence[str], *,
                         batch_size: int = 16, filter_by_score: bool = True, min_kept: int = 4) -> Candidates:
    """Difference of means harmful − harmless at every layer and post-instruction position.

    With ``filter_by_score``, keep harmful prompts with refusal score > 0 and harmless ones with score < 0; if fewer
    than ``min_kept`` survive on a side, that side is left unfiltered (logged) so tiny/odd models still work.
    """
    bad = prompt_activations(lm, harmful, batch_size=batch_size)
    good = prompt_activations(lm, harmless, batch_size=batch_size)
    keep_bad, keep_good = torch.ones(len(harmful), dtype=torch.bool), torch.ones(len(harmless), dtype=torch.bool)
    if filter_by_score:
        keep_bad, keep_good = bad.scores_N > 0, good.scores_N < 0
        for name, keep in (("harmful", keep_bad), ("harmless", keep_good)):
            if int(keep.sum()) < min_kept:
                log.warning("only %d %s prompts pass the refusal-score filter; using all of them", int(keep.sum()),
                            name)
                keep[:] = True
    log.info("difference of means over %d/%d harmful and %d/%d harmless prompts", int(keep_bad.sum()), len(harmful),
             int(keep_good.sum()), len(harmless))
    diff_PLD = bad.acts_NPLD[keep_bad].mean(0) - good.acts_NPLD[keep_good].mean(0)
    return Candidates(diff_PLD, bad.positions, lm.fingerprint, int(keep_bad.sum()), int(keep_good.sum()))


@torch.no_grad()
def phrase_directions(lm: "LoadedModel", refusal: Sequence[str] = REFUSAL_PHRASES,
                      compliance: Sequence[str] = COMPLIANCE_PHRASES, *,
                      user_prompt: str = "Can you help me with this request?") -> Float[Tensor, "layer d_model"]:
    """Refusal-vs-compliance phrase direction per layer (the WAS paper's direction).

    Each phrase is written as the assistant's answer to a neutral user turn; we average ``resid_post`` over the
    phrase's tokens and take mean(refusal) − mean(compliance) at every layer.
    """
    from workbench.chat import ASSISTANT

    sites = [hooks.Site(layer, "resid_post") for layer in range(lm.n_layers)]

    def mean_acts(phrases: Sequence[str]) -> Tensor:
        rows = []
        for phrase in phrases:
            enc = encode_chat(lm.tokenizer, [{"role": "user", "content": user_prompt},
                                             {"role": "assistant", "content": phrase}])
            mask = torch.tensor([bool(f & ASSISTANT) for f in enc.flags])
            if not mask.any():
                raise ValueError(f"no assistant tokens found for phrase {phrase!r}")
            ids = torch.tensor([enc.input_ids], device=lm.device)
            rec = hooks.record(lm, ids, sites)
            rows.append(torch.stack([rec[s.name][0, mask.to(rec[s.name].device)].float().mean(0).cpu()
                                     for s in sites]))
        return torch.stack(rows).mean(0)  # [layer, d]

    if not refusal or not compliance:
        raise ValueError("phrase_directions needs at least one refusal and one compliance phrase")
    return mean_acts(refusal) - mean_acts(compliance)


def load_direction(path: str | Path, lm: "LoadedModel") -> SteeringVector:
    """Load a saved refusal direction and check it belongs to ``lm`` (fingerprint, width, finite values)."""
    try:
        vector = SteeringVector.load(path)
    except ValueError as err:
        raise ValueError(f"{path}: not a usable refusal direction: {err}") from err
    if not vector.model_fingerprint:
        raise ValueError(f"{path} records no model fingerprint; recompute the direction with "
                         "`workbench refusal direction` so it can be checked against the model")
    vector.check_model(lm)
    return vector
