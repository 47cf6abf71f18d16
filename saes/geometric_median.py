"""Geometric median by Weiszfeld's algorithm, used to initialise the decoder bias (FAST; Bricken et al. 2023).

The geometric median minimises sum_i ||x_i - m||_2; it is robust to the rare huge-norm tokens (BOS/attention sinks)
that drag the mean around.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def geometric_median(points_ND: Tensor, max_iter: int = 100, tol: float = 1e-6, eps: float = 1e-8) -> Tensor:
    """Weiszfeld iterations from the coordinate-wise mean; stops when the objective improves by < ``tol`` relative."""
    if points_ND.ndim != 2 or points_ND.shape[0] == 0:
        raise ValueError(f"geometric_median needs a non-empty [n, d] tensor, got shape {tuple(points_ND.shape)}")
    points = points_ND.double()
    median_D = points.mean(0)
    prev_obj = torch.linalg.vector_norm(points - median_D, dim=-1).sum()
    for _ in range(max_iter):
        dist_N = torch.linalg.vector_norm(points - median_D, dim=-1).clamp_min(eps)
        weights_N = 1.0 / dist_N
        median_D = (weights_N[:, None] * points).sum(0) / weights_N.sum()
        obj = torch.linalg.vector_norm(points - median_D, dim=-1).sum()
        if (prev_obj - obj).abs() <= tol * prev_obj:
            break
        prev_obj = obj
    return median_D.to(points_ND.dtype)
