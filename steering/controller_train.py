"""Training a WAS controller: read the unsteered last-token activations of harmful (label 1) and benign (label 0)
chat-rendered prompts, then fit the scale head by BCE with a pull-to-0.5 regulariser on the per-layer weights
(the public code's objective). The trainer takes plain tensors, so it is testable without a language model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from steering.controller import Controller, ControllerConfig
from steering.refusal import forward as fw

if TYPE_CHECKING:
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)


@torch.no_grad()
def collect(lm: "LoadedModel", controller: Controller, prompts: Sequence[str], batch_size: int = 16) -> Tensor:
    """[n, k, d] last-token activations of the controller's read layers (chat template, no steering)."""
    return torch.cat([controller.read(lm, fw.encode(lm, chunk)).cpu() for chunk in fw.batches(list(prompts),
                                                                                               batch_size)])


def train(controller: Controller, positive_NKD: Tensor, negative_NKD: Tensor) -> dict:
    """Full-batch Adam on BCE(scale, label) + reg · mean((w − 0.5)²). Returns final loss and training accuracy."""
    cfg = controller.config
    if len(positive_NKD) == 0 or len(negative_NKD) == 0:
        raise ValueError("training a controller needs harmful (positive) and benign (negative) examples")
    x = torch.cat([positive_NKD, negative_NKD]).float()
    y = torch.cat([torch.ones(len(positive_NKD)), torch.zeros(len(negative_NKD))])
    flat = x.flatten(1)
    net = controller.net
    net.in_mean.copy_(flat.mean(0))
    net.in_std.copy_(flat.std(0).clamp_min(1e-4))
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net.train()
    loss = torch.tensor(float("nan"))
    for _ in range(cfg.epochs):
        out = net(x)
        loss = F.binary_cross_entropy_with_logits(out.scale_logit_B, y) + cfg.reg * ((out.weights_BL - 0.5) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss = loss.detach()
    net.eval()
    with torch.no_grad():
        out = net(x)
    acc = float(((out.scale_B > 0.5).float() == y).float().mean())
    log.info("controller trained: loss %.4f, train accuracy %.3f, mean w %.3f", float(loss), acc,
             float(out.weights_BL.mean()))
    return {"loss": float(loss), "train_accuracy": acc, "mean_weight": float(out.weights_BL.mean()),
            "n_positive": len(positive_NKD), "n_negative": len(negative_NKD)}


def fit_controller(lm: "LoadedModel", directions: Tensor, harmful: Sequence[str], harmless: Sequence[str],
                   config: ControllerConfig | None = None, batch_size: int = 16, **metadata) -> Controller:
    controller = Controller.create(lm, directions, config, **metadata)
    history = train(controller, collect(lm, controller, harmful, batch_size),
                    collect(lm, controller, harmless, batch_size))
    controller.metadata["training"] = history
    return controller


@torch.no_grad()
def calibrate_strength(lm: "LoadedModel", controller: Controller, harmless_val: Sequence[str],
                       grid: Sequence[float] = (2, 4, 8, 16, 32), coeff: float = 0.5,
                       batch_size: int = 16) -> tuple[float, dict[float, float]]:
    """Smallest strength at which constant steering (``s · w = coeff``) makes the mean refusal score on harmless
    validation prompts positive (Arditi's induce-refusal rule applied to the controller's patch). Sets it on the
    controller and returns (strength, {strength: score}); falls back to the largest grid value."""
    refusal_ids = fw.refusal_token_ids(lm)
    scores: dict[float, float] = {}
    original = controller.config.strength
    chosen = None
    for strength in sorted(grid):
        controller.config.strength = float(strength)
        with controller.constant(lm, coeff):
            logits = fw.first_token_logits(lm, harmless_val, batch_size)
        scores[float(strength)] = float(fw.refusal_score(logits, refusal_ids).mean())
        log.info("strength %.1f: harmless refusal score %.2f under constant steering", strength,
                 scores[float(strength)])
        if scores[float(strength)] > 0:
            chosen = float(strength)
            break
    controller.config.strength = chosen if chosen is not None else float(max(grid))
    if chosen is None:
        log.warning("no strength in %s induces refusal on harmless prompts; using %.1f (was %.1f)", list(grid),
                    controller.config.strength, original)
    return controller.config.strength, scores
