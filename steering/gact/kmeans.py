"""Deterministic k-means (k-means++ init, Lloyd iterations) in torch, with a documented empty-cluster fallback.

Empty clusters: when a Lloyd step leaves a cluster with no members, it is re-seeded with the point farthest from its
current centroid (taken from a cluster with at least two members) and a warning is logged; clustering never returns
an empty cluster. Asking for more clusters than there are distinct points is an error, not a fallback.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

logger = logging.getLogger(__name__)


class KMeansResult(NamedTuple):
    centroids_KD: Float[Tensor, "k d"]
    labels_N: Int[Tensor, " n"]
    inertia: float
    n_reseeded: int
    """How many times an empty cluster was re-seeded (the fallback)."""


def assign(points_ND: Tensor, centroids_KD: Tensor) -> Tensor:
    """Index of the nearest centroid for each point."""
    return torch.cdist(points_ND.float(), centroids_KD.float()).argmin(dim=1)


def kmeans(points_ND: Float[Tensor, "n d"], k: int, *, n_iter: int = 100, seed: int = 0, n_init: int = 4,
           init_KD: Tensor | None = None) -> KMeansResult:
    """Cluster rows of ``points_ND`` into ``k`` non-empty clusters; best of ``n_init`` k-means++ starts."""
    points_ND = torch.as_tensor(points_ND).float()
    if points_ND.ndim != 2 or points_ND.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [n, d] matrix, got shape {tuple(points_ND.shape)}")
    if not torch.isfinite(points_ND).all():
        raise ValueError("kmeans input contains NaN or inf")
    n_distinct = torch.unique(points_ND, dim=0).shape[0]
    if not 1 <= k <= n_distinct:
        raise ValueError(f"asked for k={k} clusters but there are only {n_distinct} distinct points "
                         f"({points_ND.shape[0]} samples); use k <= {n_distinct} or give more prompts")
    gen = torch.Generator().manual_seed(seed)
    best: KMeansResult | None = None
    for attempt in range(1 if init_KD is not None else n_init):
        start = init_KD.float().clone() if init_KD is not None else _plus_plus(points_ND, k, gen)
        result = _lloyd(points_ND, start, n_iter)
        if best is None or result.inertia < best.inertia - 1e-9:
            best = result
    return best


def _plus_plus(points_ND: Tensor, k: int, gen: torch.Generator) -> Tensor:
    n = points_ND.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    for _ in range(1, k):
        d2_N = torch.cdist(points_ND, points_ND[chosen]).min(dim=1).values ** 2
        if d2_N.sum() <= 0:
            d2_N = torch.ones(n)
        chosen.append(int(torch.multinomial(d2_N / d2_N.sum(), 1, generator=gen)))
    return points_ND[chosen].clone()


def _lloyd(points_ND: Tensor, centroids_KD: Tensor, n_iter: int) -> KMeansResult:
    k = centroids_KD.shape[0]
    reseeded = 0
    labels_N = assign(points_ND, centroids_KD)
    for _ in range(n_iter):
        for cluster in range(k):
            if not (labels_N == cluster).any():  # empty cluster: documented fallback
                dist_N = (points_ND - centroids_KD[labels_N]).norm(dim=1)
                sizes_K = torch.bincount(labels_N, minlength=k)
                dist_N[sizes_K[labels_N] < 2] = -1.0
                far = int(dist_N.argmax())
                logger.warning("k-means: cluster %d became empty; re-seeding it with point %d", cluster, far)
                labels_N[far] = cluster
                centroids_KD[cluster] = points_ND[far]
                reseeded += 1
        new_KD = torch.stack([points_ND[labels_N == c].mean(dim=0) for c in range(k)])
        new_labels_N = assign(points_ND, new_KD)
        converged = torch.equal(new_labels_N, labels_N) and torch.allclose(new_KD, centroids_KD)
        centroids_KD, labels_N = new_KD, new_labels_N
        if converged:
            break
    if torch.bincount(labels_N, minlength=k).min() == 0:  # final assignment emptied one: fall back once more
        return _lloyd(points_ND, centroids_KD, 1)._replace(n_reseeded=reseeded + 1)
    inertia = float(((points_ND - centroids_KD[labels_N]) ** 2).sum())
    return KMeansResult(centroids_KD, labels_N, inertia, reseeded)
