"""Feature inspection data for the UI: top-k activating contexts, activation histograms and densities.

``inspect_features`` streams held-out sequences once and keeps, per latent, the ``top_k`` largest activations with
their (sequence, position), a histogram of log10 of non-zero activations, the firing count and the max. The result is
a plain JSON-able dict (``FeatureReport.to_json``) so the Streamlit app needs no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from saes.architectures import SparseAutoencoder
from workbench.chat import describe_flags


@dataclass
class FeatureReport:
    n_tokens: int
    density_F: Tensor
    """Fraction of tokens on which each latent fires."""
    max_F: Tensor
    mean_active_F: Tensor
    """Mean activation over the tokens where the latent fires."""
    hist_edges: list[float]
    """Bin edges of log10(activation) histograms."""
    hist_FB: Tensor
    top_values_KF: Tensor
    top_seq_KF: Tensor
    top_pos_KF: Tensor
    token_ids: dict[int, Tensor] = field(default_factory=dict)
    flags: dict[int, Tensor] = field(default_factory=dict)

    def live_features(self) -> list[int]:
        return (self.density_F > 0).nonzero().flatten().tolist()

    def contexts(self, feature: int, tokenizer=None, window: int = 8) -> list[dict[str, Any]]:
        """Top activating contexts of ``feature``, best first; tokens as strings when a tokenizer is given."""
        out = []
        order = self.top_values_KF[:, feature].argsort(descending=True)
        for k in order.tolist():
            value = float(self.top_values_KF[k, feature])
            if value <= 0:
                continue
            seq, pos = int(self.top_seq_KF[k, feature]), int(self.top_pos_KF[k, feature])
            ids = self.token_ids.get(seq)
            ctx: dict[str, Any] = {"activation": value, "seq_id": seq, "position": pos}
            if ids is not None:
                lo, hi = max(0, pos - window), min(len(ids), pos + window + 1)
                piece = ids[lo:hi].tolist()
                ctx["token_ids"] = piece
                ctx["highlight"] = pos - lo
                ctx["token_id"] = int(ids[pos])
                if tokenizer is not None:
                    ctx["tokens"] = [tokenizer.decode([t]) for t in piece]
                if seq in self.flags:
                    ctx["flag"] = describe_flags(int(self.flags[seq][pos]))
            out.append(ctx)
        return out

    def to_json(self, features: Sequence[int] | None = None, tokenizer=None, window: int = 8) -> dict[str, Any]:
        features = list(features) if features is not None else self.live_features()
        return {
            "n_tokens": self.n_tokens,
            "hist_edges": self.hist_edges,
            "density": self.density_F.tolist(),
            "features": [{"index": f, "density": float(self.density_F[f]), "max": float(self.max_F[f]),
                          "mean_active": float(self.mean_active_F[f]), "histogram": self.hist_FB[f].tolist(),
                          "top_contexts": self.contexts(f, tokenizer, window)} for f in features],
        }


@torch.no_grad()
def inspect_features(sae: SparseAutoencoder, sequences: Iterable, *, top_k: int = 5, n_bins: int = 30,
                     log10_range: tuple[float, float] = (-4.0, 3.0), max_tokens: int | None = None,
                     keep_tokens: bool = True) -> FeatureReport:
    """One pass over ``sequences`` (``.seq_id``, ``.acts``, ``.token_ids``, ``.flags``) collecting feature statistics."""
    Fdim = sae.cfg.d_sae
    top_v = torch.zeros(top_k, Fdim)
    top_s = torch.full((top_k, Fdim), -1, dtype=torch.long)
    top_p = torch.zeros((top_k, Fdim), dtype=torch.long)
    count_F = torch.zeros(Fdim, dtype=torch.long)
    sum_F = torch.zeros(Fdim, dtype=torch.float64)
    max_F = torch.zeros(Fdim)
    lo, hi = log10_range
    hist_FB = torch.zeros(Fdim, n_bins, dtype=torch.long)
    token_ids: dict[int, Tensor] = {}
    flags: dict[int, Tensor] = {}
    n_tokens = 0
    for i, seq in enumerate(sequences):
        if max_tokens is not None and n_tokens >= max_tokens:
            break
        seq_id = int(getattr(seq, "seq_id", i))
        acts_NF = sae.encode(seq.acts.float().to(sae.device)).cpu()
        n = acts_NF.shape[0]
        n_tokens += n
        active = acts_NF > 0
        count_F += active.sum(0)
        sum_F += acts_NF.double().sum(0)
        max_F = torch.maximum(max_F, acts_NF.max(0).values)
        # histogram of log10 activation over the active entries: bin index per (token, feature)
        rows, cols = active.nonzero(as_tuple=True)
        if len(rows):
            logs = acts_NF[rows, cols].log10().clamp(lo, hi - 1e-6)
            bins = ((logs - lo) / (hi - lo) * n_bins).long()
            hist_FB.view(-1).index_add_(0, cols * n_bins + bins, torch.ones_like(bins))
        # running top-k over tokens for every feature
        k_here = min(top_k, n)
        vals_KF, pos_KF = acts_NF.topk(k_here, dim=0)
        cat_v = torch.cat([top_v, vals_KF])
        cat_s = torch.cat([top_s, torch.full_like(pos_KF, seq_id)])
        cat_p = torch.cat([top_p, pos_KF])
        top_v, idx = cat_v.topk(top_k, dim=0)
        top_s, top_p = cat_s.gather(0, idx), cat_p.gather(0, idx)
        if keep_tokens:
            token_ids[seq_id] = seq.token_ids.clone()
            flags[seq_id] = seq.flags.clone()
    if n_tokens == 0:
        raise ValueError("no tokens to inspect features on")
    if keep_tokens:  # only keep sequences some top context points at
        used = set(top_s[top_v > 0].tolist())
        token_ids = {s: t for s, t in token_ids.items() if s in used}
        flags = {s: f for s, f in flags.items() if s in used}
    edges = [lo + (hi - lo) * b / n_bins for b in range(n_bins + 1)]
    return FeatureReport(n_tokens=n_tokens, density_F=count_F.float() / n_tokens, max_F=max_F,
                         mean_active_F=(sum_F / count_F.clamp_min(1)).float(), hist_edges=edges, hist_FB=hist_FB,
                         top_values_KF=top_v, top_seq_KF=top_s, top_pos_KF=top_p, token_ids=token_ids, flags=flags)


def sample_live_features(report: FeatureReport, n: int = 128, seed: int = 0) -> list[int]:
    """``n`` live features drawn uniformly (FAST samples 128 live features for interpretability scoring)."""
    live = report.live_features()
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(live), generator=gen)[:n].tolist()
    return sorted(live[i] for i in picks)


def log_density(report: FeatureReport, eps: float = 1e-10) -> list[float]:
    return [math.log10(float(d) + eps) for d in report.density_F]
