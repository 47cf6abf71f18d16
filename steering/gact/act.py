"""Baseline B — ACT (adaptive activation steering, Wang et al. 2024) transplanted to language choice.

Per-sample steering vectors are the language-variant − default differences at the last prompt token of one layer
(one per prompt and language, as for G-ACT); k-means turns them into ``k`` steering vectors, each tagged with its
members' majority language; a linear probe on the running activation at that layer predicts the cluster. When
steering, the most probable target-language cluster is chosen and the probe sets the strength:
``scale * (1 - p(target clusters)) * vector_k`` (push less when the model already heads for the target). ACT
clusters and probes *one layer at a time*; ``per_layer_probe_accuracy`` runs that recipe at every layer (the
``probe_acc_act[layer]`` curve), where G-ACT clusters all layers jointly and refines its probes online.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from steering.gact import io
from steering.gact.kmeans import assign, kmeans
from steering.gact.probes import LayerProbes, fit_probes
from steering.gact.prompts import LANGUAGES
from workbench import hooks


@dataclass
class ActConfig:
    k: int = 3
    layer: int | None = None
    """Layer to cluster, probe and steer at; None = the middle layer."""
    scale: float = 4.0
    target: str = "cpp"
    probe_c: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.target not in LANGUAGES:
            raise ValueError(f"target must be one of {LANGUAGES}, got {self.target!r}")


@dataclass
class Act:
    probe: LayerProbes
    """A one-layer probe (layer axis of size 1)."""
    vectors_KD: Float[Tensor, "k d"]
    layer: int
    config: ActConfig
    n_layers: int
    cluster_languages: list[str] = field(default_factory=list)
    model_name: str = ""
    model_fingerprint: str | None = None
    info: dict = field(default_factory=dict)

    def steer(self, lm, *, scale: float | None = None, strict: bool = True) -> hooks.HookSession:
        """Context manager: on the prompt pass the probe reads the last token; the most probable target cluster's
        vector times ``scale * (1 - p(target))`` is added at every position of every pass (fixed per sequence)."""
        io.check_model(self._cfg(), lm, strict=strict)
        strength = self.config.scale if scale is None else scale
        targets = [k for k, lang in enumerate(self.cluster_languages) if lang == self.config.target]
        if not targets:  # documented fallback: the cluster with the largest target share (set at fit time)
            targets = [int(self.info.get("fallback_target_cluster", 0))]
        chosen: dict[str, Tensor] = {}

        def run(acts: Tensor, ctx: hooks.HookContext) -> Tensor | None:
            if ctx.phase == "prompt" or "delta" not in chosen or chosen["delta"].shape[0] != acts.shape[0]:
                p_BK = self.probe.proba(0, acts[:, -1].detach())
                k_B = targets[0] + torch.zeros(p_BK.shape[0], dtype=torch.long)
                if len(targets) > 1:
                    k_B = torch.as_tensor(targets)[p_BK[:, targets].argmax(-1)]
                push_B = 1.0 - p_BK[:, targets].sum(-1)
                chosen["delta"] = strength * push_B[:, None] * self.vectors_KD[k_B]
            return acts + chosen["delta"].to(device=acts.device, dtype=acts.dtype)[:, None, :]

        return hooks.apply(lm, f"blocks.{self.layer}.hook_resid_post", run)

    def _cfg(self) -> dict:
        return {"kind": "act", "config": asdict(self.config), "layer": self.layer, "model_name": self.model_name,
                "model_fingerprint": self.model_fingerprint, "n_layers": self.n_layers,
                "d_model": self.vectors_KD.shape[1], "k": self.vectors_KD.shape[0], "info": self.info,
                "cluster_languages": self.cluster_languages}

    def save(self, path: str | Path) -> Path:
        p = self.probe
        return io.save_artifact(path, {"vectors_KD": self.vectors_KD, "W_LKD": p.W_LKD, "b_LK": p.b_LK,
                                       "mu_LD": p.mu_LD, "sd_LD": p.sd_LD}, self._cfg())

    @classmethod
    def load(cls, path: str | Path, lm=None, *, strict: bool = True) -> "Act":
        t, cfg = io.load_artifact(path, kind="act", lm=lm, strict=strict)
        if tuple(t["vectors_KD"].shape) != (cfg["k"], cfg["d_model"]):
            raise ValueError(f"{path}: vectors_KD shape does not match cfg.json")
        return cls(LayerProbes(t["W_LKD"], t["b_LK"], t["mu_LD"], t["sd_LD"]), t["vectors_KD"], cfg["layer"],
                   ActConfig(**cfg["config"]), cfg["n_layers"], cfg["cluster_languages"], cfg["model_name"],
                   cfg["model_fingerprint"], cfg.get("info", {}))


def fit_act_from_acts(variant_NLD: Tensor, diff_NLD: Tensor, langs: list[str], config: ActConfig, *,
                      lm=None) -> Act:
    """ACT at one layer from the same samples as G-ACT (``activations.language_samples``)."""
    from steering.gact.gact import cluster_majorities

    n, n_layers, _ = diff_NLD.shape
    if len(langs) != n or variant_NLD.shape != diff_NLD.shape:
        raise ValueError("variant activations, differences and languages must describe the same samples")
    layer = config.layer if config.layer is not None else n_layers // 2
    if not 0 <= layer < n_layers:
        raise IndexError(f"ACT layer {layer} out of range 0..{n_layers - 1}")
    result = kmeans(diff_NLD[:, layer], config.k, seed=config.seed)
    vectors_KD = torch.stack([diff_NLD[result.labels_N == c, layer].mean(0) for c in range(config.k)])
    probe = fit_probes(variant_NLD[:, layer:layer + 1], result.labels_N, config.k, c=config.probe_c, seed=config.seed)
    sizes = torch.bincount(result.labels_N, minlength=config.k).tolist()
    majorities = cluster_majorities(result.labels_N, langs, config.k)
    info = {"cluster_sizes": sizes, "n_train": n}
    if config.target not in majorities:
        share = [sum(1 for g, lab in zip(langs, result.labels_N.tolist()) if lab == c and g == config.target)
                 / max(sizes[c], 1) for c in range(config.k)]
        info["fallback_target_cluster"] = int(max(range(config.k), key=share.__getitem__))
    return Act(probe, vectors_KD, layer, config, n_layers, majorities, getattr(lm, "name", ""),
               getattr(lm, "fingerprint", None), info)


def per_layer_probe_accuracy(train: tuple[Tensor, Tensor], held_out: tuple[Tensor, Tensor], k: int, *,
                             probe_c: float = 0.1, seed: int = 0) -> tuple[list[float], list[float]]:
    """ACT at every layer: cluster that layer's differences, probe that layer's (variant) activation.

    Returns (accuracy on held-out prompts, majority-class rate of the held-out labels) per layer; held-out labels
    are the nearest training centroid of each held-out difference.
    """
    (train_def, train_diff), (test_def, test_diff) = train, held_out
    accs, chance = [], []
    for layer in range(train_diff.shape[1]):
        result = kmeans(train_diff[:, layer], k, seed=seed)
        probe = fit_probes(train_def[:, layer:layer + 1], result.labels_N, k, c=probe_c, seed=seed)
        labels_N = assign(test_diff[:, layer], result.centroids_KD)
        accs.append(probe.accuracy(test_def[:, layer:layer + 1], labels_N)[0])
        chance.append(float(torch.bincount(labels_N, minlength=k).max()) / len(labels_N))
    return accs, chance
