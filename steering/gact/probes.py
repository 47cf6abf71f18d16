"""Per-layer linear probes (softmax regression over clusters) with closed-form online gradient steps.

Each layer ``l`` has a probe ``p(k | h) = softmax(W[l] @ ((h - mu[l]) / sd[l]) + b[l])``. Offline fitting uses
scikit-learn's L2 logistic regression on standardised activations; ``step()`` is one SGD step of cross-entropy on
new activations (the gradient is written out: ``dW = (p - onehot)^T x / B``), used for G-ACT's online refinement.
A layer whose training labels hold a single cluster gets a constant probe (zero weights, that cluster's bias) — the
documented fallback, logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from sklearn.linear_model import LogisticRegression
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass
class LayerProbes:
    W_LKD: Float[Tensor, "layers k d"]
    b_LK: Float[Tensor, "layers k"]
    mu_LD: Float[Tensor, "layers d"]
    sd_LD: Float[Tensor, "layers d"]

    def __post_init__(self) -> None:
        n_layers, k, d = self.W_LKD.shape
        for name, shape in (("b_LK", (n_layers, k)), ("mu_LD", (n_layers, d)), ("sd_LD", (n_layers, d))):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"probe tensor {name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")

    @property
    def n_layers(self) -> int:
        return self.W_LKD.shape[0]

    @property
    def k(self) -> int:
        return self.W_LKD.shape[1]

    @property
    def d_model(self) -> int:
        return self.W_LKD.shape[2]

    def clone(self) -> "LayerProbes":
        return LayerProbes(*(t.clone() for t in (self.W_LKD, self.b_LK, self.mu_LD, self.sd_LD)))

    def logits(self, layer: int, acts_BD: Tensor) -> Float[Tensor, "b k"]:
        x_BD = (acts_BD.float().cpu() - self.mu_LD[layer]) / self.sd_LD[layer]
        return x_BD @ self.W_LKD[layer].T + self.b_LK[layer]

    def proba(self, layer: int, acts_BD: Tensor) -> Float[Tensor, "b k"]:
        return self.logits(layer, acts_BD).softmax(dim=-1)

    def accuracy(self, acts_NLD: Tensor, labels_N: Tensor) -> list[float]:
        """Per-layer accuracy of predicting ``labels_N`` from ``acts_NLD[:, l]``."""
        return [float((self.logits(layer, acts_NLD[:, layer]).argmax(-1) == labels_N).float().mean())
                for layer in range(self.n_layers)]

    def step(self, layer: int, acts_BD: Tensor, target_B: Tensor, lr: float) -> float:
        """One SGD step of cross-entropy toward ``target_B`` at ``layer`` (in place); returns the loss before it."""
        x_BD = (acts_BD.detach().float().cpu() - self.mu_LD[layer]) / self.sd_LD[layer]
        p_BK = (x_BD @ self.W_LKD[layer].T + self.b_LK[layer]).softmax(dim=-1)
        onehot_BK = torch.nn.functional.one_hot(target_B.cpu().long(), self.k).float()
        loss = float(-(onehot_BK * p_BK.clamp_min(1e-12).log()).sum(-1).mean())
        err_BK = (p_BK - onehot_BK) / x_BD.shape[0]
        self.W_LKD[layer] -= lr * err_BK.T @ x_BD
        self.b_LK[layer] -= lr * err_BK.sum(0)
        return loss


def fit_probes(acts_NLD: Float[Tensor, "n layers d"], labels_N: Tensor, k: int, *, c: float = 0.1,
               seed: int = 0) -> LayerProbes:
    """Fit one L2 logistic-regression probe per layer predicting ``labels_N`` (ints in ``[0, k)``)."""
    acts_NLD = torch.as_tensor(acts_NLD).float().cpu()
    labels_N = torch.as_tensor(labels_N).long().cpu()
    if acts_NLD.ndim != 3 or acts_NLD.shape[0] != labels_N.shape[0]:
        raise ValueError(f"need acts [n, layers, d] and labels [n]; got {tuple(acts_NLD.shape)} and "
                         f"{tuple(labels_N.shape)}")
    if labels_N.numel() == 0 or labels_N.min() < 0 or labels_N.max() >= k:
        raise ValueError(f"labels must be ints in [0, {k}) and non-empty")
    n, n_layers, d = acts_NLD.shape
    mu_LD = acts_NLD.mean(dim=0)
    sd_LD = acts_NLD.std(dim=0, unbiased=False).clamp_min(1e-4)
    W_LKD, b_LK = torch.zeros(n_layers, k, d), torch.zeros(n_layers, k)
    present = torch.unique(labels_N)
    if len(present) < 2:
        logger.warning("only one cluster (%d) among the probe labels: probes are constant", int(present[0]))
        b_LK[:, :] = -1e4
        b_LK[:, int(present[0])] = 0.0
        return LayerProbes(W_LKD, b_LK, mu_LD, sd_LD)
    y = labels_N.numpy()
    for layer in range(n_layers):
        x = ((acts_NLD[:, layer] - mu_LD[layer]) / sd_LD[layer]).numpy().astype(np.float64)
        clf = LogisticRegression(C=c, max_iter=500, random_state=seed).fit(x, y)
        coef, intercept = torch.as_tensor(clf.coef_).float(), torch.as_tensor(clf.intercept_).float()
        if len(clf.classes_) == 2 and k >= 2:  # sklearn's binary case: one row for the positive class
            coef = torch.cat([-coef / 2, coef / 2])
            intercept = torch.cat([-intercept / 2, intercept / 2])
        cls = torch.as_tensor(clf.classes_).long()
        W_LKD[layer, cls] = coef
        b_LK[layer] = -1e4
        b_LK[layer, cls] = intercept
    return LayerProbes(W_LKD, b_LK, mu_LD, sd_LD)
