"""Interpretability scoring of SAE features, pluggable.

FAST judges the top-5 activating contexts of 128 sampled live features on a 1-5 scale with an LLM and reports the
share in the "top range" (4-5). Any object with ``name``, ``is_proxy`` and ``score(feature: dict) -> FeatureScore``
is a scorer; ``feature`` is one entry of ``FeatureReport.to_json()["features"]`` (with ``tokens`` in its contexts).

- ``LLMJudgeScorer(generate)``: the paper's protocol with any text-generation callable (an API model, or a local
  instruct model via ``lambda p: lm.generate([p], max_new_tokens=8)[0]``).
- ``OfflineProxyScorer``: **an offline proxy, not a judgement of interpretability.** It scores how consistent the
  top contexts are: whether they peak on the same token (string) and the same token class (template / content).
  Consistent top contexts are necessary, not sufficient, for a human-readable feature; use it to compare SAEs
  trained the same way, never as a substitute for the paper's numbers.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

JUDGE_PROMPT = """You are evaluating a feature of a sparse autoencoder trained on a language model.
Below are the contexts where the feature activates most; the most active token is marked with <<double brackets>>.

{contexts}

How clearly do these contexts share one human-interpretable concept?
Answer with a single integer from 1 (no pattern) to 5 (one clear, specific concept)."""


@dataclass(frozen=True)
class FeatureScore:
    feature: int
    score: int
    """1..5"""
    scorer: str
    is_proxy: bool
    rationale: str = ""


class Scorer(Protocol):
    name: str
    is_proxy: bool

    def score(self, feature: dict[str, Any]) -> FeatureScore: ...


def render_contexts(feature: dict[str, Any]) -> str:
    lines = []
    for i, ctx in enumerate(feature.get("top_contexts", []), 1):
        tokens = ctx.get("tokens") or [str(t) for t in ctx.get("token_ids", [])]
        h = ctx.get("highlight", -1)
        text = "".join(f"<<{t}>>" if j == h else t for j, t in enumerate(tokens))
        lines.append(f"{i}. (activation {ctx['activation']:.2f}) {text!r}")
    return "\n".join(lines)


class LLMJudgeScorer:
    """FAST's judge protocol on any ``generate(prompt) -> str`` callable."""

    is_proxy = False

    def __init__(self, generate: Callable[[str], str], name: str = "llm_judge"):
        self.generate, self.name = generate, name

    def score(self, feature: dict[str, Any]) -> FeatureScore:
        reply = self.generate(JUDGE_PROMPT.format(contexts=render_contexts(feature)))
        match = re.search(r"[1-5]", reply)
        if match is None:
            raise ValueError(f"judge reply has no score 1-5: {reply!r}")
        return FeatureScore(feature["index"], int(match.group()), self.name, False, reply.strip()[:200])


class OfflineProxyScorer:
    """OFFLINE PROXY (not an LLM judge): 1 + 4 * consistency of the top contexts' peak tokens and token classes."""

    name = "offline_proxy_token_consistency"
    is_proxy = True

    def score(self, feature: dict[str, Any]) -> FeatureScore:
        ctxs = [c for c in feature.get("top_contexts", []) if c.get("activation", 0) > 0]
        if not ctxs:
            return FeatureScore(feature["index"], 1, self.name, True, "no activating contexts")
        peak = [str(c.get("tokens", [None] * (c.get("highlight", 0) + 1))[c.get("highlight", 0)] or c.get("token_id"))
                .strip().lower() for c in ctxs]
        token_share = Counter(peak).most_common(1)[0][1] / len(ctxs)
        classes = [c.get("flag", "") for c in ctxs]
        class_share = Counter(classes).most_common(1)[0][1] / len(ctxs)
        consistency = 0.7 * token_share + 0.3 * class_share
        score = int(round(1 + 4 * consistency))
        return FeatureScore(feature["index"], max(1, min(5, score)), self.name, True,
                            f"peak-token share {token_share:.2f}, token-class share {class_share:.2f}")


def score_features(scorer: Scorer, features: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Scores plus FAST's summary: mean and the share in the top range (4-5)."""
    scores = [scorer.score(f) for f in features]
    values = [s.score for s in scores]
    return {"scorer": scorer.name, "is_proxy": scorer.is_proxy, "n": len(values),
            "mean": sum(values) / len(values) if values else float("nan"),
            "top_range_frac": sum(v >= 4 for v in values) / len(values) if values else float("nan"),
            "histogram": {str(k): values.count(k) for k in range(1, 6)},
            "scores": [s.__dict__ for s in scores]}
