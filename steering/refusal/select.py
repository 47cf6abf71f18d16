"""Choosing one refusal direction among the candidates, by Arditi et al.'s rules (2024, §C):

1. the candidate's layer lies below ``max_layer_frac`` of the depth (default 80%);
2. ablating it changes the harmless next-token distribution little: mean KL < ``max_kl`` (0.1);
3. adding it to harmless prompts induces refusal: mean refusal score > 0;
4. among survivors, pick the one whose ablation lowers the harmful refusal score most ("bypass score").

Compute budget (our addition, for CPU): every candidate first gets a cheap bypass score on ``n_prefilter`` harmful
validation prompts; only the best ``prefilter_k`` are scored on all rules. ``layer_stride`` thins the layer grid.
If no candidate passes every rule, the best by bypass score among those that induce refusal is returned (or the
best overall) and ``Selection.passed_rules`` is False — callers should report that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from steering.refusal import forward as fw
from steering.refusal.directions import Candidates
from steering.refusal.interventions import ablation, addition

if TYPE_CHECKING:
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class SelectConfig:
    max_layer_frac: float = 0.8
    """Only layers l < max_layer_frac · n_layers are eligible."""
    max_kl: float = 0.1
    """Largest mean KL(base || ablated) on harmless validation prompts at the first answer token."""
    layer_stride: int = 1
    """Score every ``layer_stride``-th layer only."""
    positions: tuple[int, ...] | None = None
    """Post-instruction positions to consider (negative offsets); None = all."""
    n_prefilter: int = 8
    """Harmful validation prompts used for the cheap first-pass bypass score."""
    prefilter_k: int = 6
    """Candidates that go on to the full rule check."""
    prefilter_kl: bool = False
    """Also measure KL on ``n_prefilter`` harmless prompts in the first pass and send candidates under ``max_kl``
    to the full check first (costs a second forward per candidate; helps when the best bypassers all fail KL)."""
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0 < self.max_layer_frac <= 1:
            raise ValueError(f"max_layer_frac must be in (0, 1], got {self.max_layer_frac}")
        if self.max_kl <= 0 or self.layer_stride < 1 or self.n_prefilter < 1 or self.prefilter_k < 1:
            raise ValueError("max_kl must be > 0 and layer_stride, n_prefilter, prefilter_k >= 1")


@dataclass
class CandidateScore:
    position: int
    layer: int
    bypass: float
    kl: float | None = None
    induce: float | None = None
    quick_kl: float | None = None
    """KL on the ``n_prefilter`` harmless prompts (first pass, only with ``prefilter_kl``)."""

    def passes(self, max_kl: float) -> bool:
        return self.kl is not None and self.kl < max_kl and self.induce is not None and self.induce > 0


@dataclass
class Selection:
    position: int
    layer: int
    direction: torch.Tensor
    passed_rules: bool
    base_harmful_score: float
    base_harmless_score: float
    scores: list[CandidateScore] = field(default_factory=list)

    def summary(self) -> dict:
        chosen = next(s for s in self.scores if (s.position, s.layer) == (self.position, self.layer))
        return {"position": self.position, "layer": self.layer, "passed_rules": self.passed_rules,
                "bypass_score": chosen.bypass, "kl": chosen.kl, "induce_score": chosen.induce,
                "base_harmful_score": self.base_harmful_score, "base_harmless_score": self.base_harmless_score,
                "direction_norm": float(self.direction.norm()), "n_scored": len(self.scores)}


def _mean_score(lm: "LoadedModel", prompts: Sequence[str], refusal_ids: list[int], batch_size: int) -> float:
    return float(fw.refusal_score(fw.first_token_logits(lm, prompts, batch_size), refusal_ids).mean())


def select_direction(lm: "LoadedModel", candidates: Candidates, harmful_val: Sequence[str],
                     harmless_val: Sequence[str], config: SelectConfig | None = None) -> Selection:
    cfg = config or SelectConfig()
    if candidates.model_fingerprint != lm.fingerprint:
        raise ValueError("these candidates were computed on another model (fingerprint mismatch)")
    if not harmful_val or not harmless_val:
        raise ValueError("selection needs harmful and harmless validation prompts")
    refusal_ids = fw.refusal_token_ids(lm)
    bs = cfg.batch_size
    max_layer = int(cfg.max_layer_frac * lm.n_layers)
    positions = [p for p in candidates.positions if cfg.positions is None or p in cfg.positions]
    grid = [(p, layer) for p in positions for layer in range(0, max(1, max_layer), cfg.layer_stride)
            if candidates.vector(p, layer).norm() > 1e-6]  # e.g. layer 0 at template tokens: same embedding
    if not grid:
        raise ValueError(f"no candidate left: positions {cfg.positions} not in {candidates.positions}")

    base_harmless_logits = fw.first_token_logits(lm, harmless_val, bs)
    base_harmless = float(fw.refusal_score(base_harmless_logits, refusal_ids).mean())
    base_harmful = _mean_score(lm, harmful_val, refusal_ids, bs)
    log.info("base refusal score: harmful %.2f, harmless %.2f; %d candidates", base_harmful, base_harmless, len(grid))

    quick = list(harmful_val[: cfg.n_prefilter])
    quick_harmless = list(harmless_val[: cfg.n_prefilter])
    first: list[CandidateScore] = []
    for position, layer in grid:
        with ablation(lm, candidates.vector(position, layer)):
            cand = CandidateScore(position, layer, _mean_score(lm, quick, refusal_ids, bs))
            if cfg.prefilter_kl:
                ablated = fw.first_token_logits(lm, quick_harmless, bs)
                cand.quick_kl = float(fw.kl_div(base_harmless_logits[: len(quick_harmless)], ablated).mean())
        first.append(cand)
    # bypass first; with prefilter_kl, candidates under the KL bound go first
    first.sort(key=lambda s: (cfg.prefilter_kl and not (s.quick_kl is not None and s.quick_kl < cfg.max_kl),
                              s.bypass))

    scored: list[CandidateScore] = []
    for cand in first[: cfg.prefilter_k]:
        vector = candidates.vector(cand.position, cand.layer)
        with ablation(lm, vector):
            bypass = _mean_score(lm, harmful_val, refusal_ids, bs)
            kl = float(fw.kl_div(base_harmless_logits, fw.first_token_logits(lm, harmless_val, bs)).mean())
        with addition(lm, vector, cand.layer, 1.0):
            induce = _mean_score(lm, harmless_val, refusal_ids, bs)
        scored.append(CandidateScore(cand.position, cand.layer, bypass, kl, induce, cand.quick_kl))
        log.info("candidate pos %d layer %d: bypass %.2f, KL %.3f, induce %.2f", cand.position, cand.layer, bypass,
                 kl, induce)

    passing = [s for s in scored if s.passes(cfg.max_kl)]
    passed = bool(passing)
    if not passing:
        inducing = [s for s in scored if s.induce is not None and s.induce > 0]
        passing = inducing or scored
        log.warning("no candidate passes all selection rules (KL < %.2f and induce > 0); taking the best by bypass "
                    "score among %s", cfg.max_kl, "those that induce refusal" if inducing else "all scored")
    best = min(passing, key=lambda s: s.bypass)
    scores = scored + [s for s in first[cfg.prefilter_k:]]
    return Selection(best.position, best.layer, candidates.vector(best.position, best.layer).clone(), passed,
                     base_harmful, base_harmless, scores)
