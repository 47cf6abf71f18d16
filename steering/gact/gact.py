"""G-ACT: cluster per-prompt activation differences into steering directions; per-layer probes pick one.

After Sharma & Raman (2025), "Steering Conceptual Bias via Transformer Latent-Subspace Activation" (METHODS.md §2):

1. For each training prompt and each language (Python, C++, Java, Julia), the residual activation at the last
   prompt token, at every layer, of the language variant ("... Write it in C++.") minus that of the default prompt
   (no language named): one difference per (prompt, language) and layer.
2. Cluster the differences jointly over layers (each layer rescaled by its mean difference norm so every layer
   counts equally) into ``k`` clusters; a cluster's per-layer mean difference is its steering vector at that layer.
   Each cluster is tagged with the majority language of its members; clusters tagged with the target language are
   the candidate directions (if none is, the cluster with the largest target share is used, with a warning).
3. Per-layer linear probes predict the cluster from the variant's activation at that layer (does the running state
   look like "the model is going to write language X", and which sub-direction).
4. Steering (``Gact.steer``): at every layer the probe reads the running activation's last position; log-probs are
   summed over the layers seen so far; the most probable *target* cluster's vector is added (``scale`` times) at the
   injection layers, at the last position of each pass (``positions="last"``: where the differences were measured;
   adding the vector at every position broke SmolLM2's output in our calibration) or at all positions. After the prompt pass the choice is fixed per sequence.
5. Online refinement (the paper's wording is not available; this is our implementation): each probe takes one SGD
   step of cross-entropy toward the cross-layer consensus cluster (argmax of the summed log-probs of all layers)
   on the prompt pass's activation and on each generated token's running activation — self-training that adapts the
   probes to the steered, generation-time activations. It acts on a copy owned by the session
   (``session.probes``), so the fitted probes and other threads are untouched; ``Gact.with_probes(session.probes)``
   keeps the refined ones.

Everything goes through ``workbench.hooks`` (``hooks.Apply``), so it is thread-scoped and removed on exit.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from steering.gact import io
from steering.gact.activations import language_samples
from steering.gact.kmeans import assign, kmeans
from steering.gact.probes import LayerProbes, fit_probes
from steering.gact.prompts import LANGUAGES
from workbench import hooks

logger = logging.getLogger(__name__)


@dataclass
class GactConfig:
    k: int = 3
    """Number of clusters (steering directions)."""
    target: str = "cpp"
    """Language the steering should pick (one of prompts.LANGUAGES)."""
    languages: tuple[str, ...] = LANGUAGES
    """Languages whose variants make the differences (must include ``target``)."""
    inject_layers: list[int] | None = None
    """Layers whose resid_post gets the chosen vector; None = ``default_inject_layers``."""
    scale: float = 1.0
    """Multiplier on the cluster's mean difference at each injection layer."""
    positions: str = "last"
    """Where the vector is added: "last" (the last position of every pass: the last prompt token, then each new
    token — where the differences were measured) or "all"."""
    refine_lr: float = 0.05
    """SGD step size of online probe refinement; 0 turns it off."""
    refine_on: str = "prompt"
    """Which passes refine the probes: "prompt" (the last prompt token of each prompt pass — the distribution the
    probes were fitted on) or "all" (also every generated token; measured to drift the probes toward a constant
    answer: SmolLM2 validation accuracy fell from 0.94 to 0.42 over 30 test prompts)."""
    probe_c: float = 0.1
    """Inverse L2 strength of the logistic-regression probes."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.target not in LANGUAGES or self.target not in self.languages:
            raise ValueError(f"target must be one of {LANGUAGES} and of languages={self.languages}, "
                             f"got {self.target!r}")
        self.languages = tuple(self.languages)
        if self.positions not in ("last", "all"):
            raise ValueError(f"positions must be 'last' or 'all', got {self.positions!r}")
        if self.refine_lr < 0 or self.probe_c <= 0:
            raise ValueError("refine_lr must be >= 0 and probe_c > 0")
        if self.refine_on not in ("prompt", "all"):
            raise ValueError(f"refine_on must be 'prompt' or 'all', got {self.refine_on!r}")


def default_inject_layers(n_layers: int) -> list[int]:
    """Three layers at about 25%, 40% and 55% depth (e.g. 7, 12, 16 of SmolLM2's 30)."""
    return sorted({min(n_layers - 1, round(n_layers * f)) for f in (0.25, 0.4, 0.55)})


@dataclass
class Gact:
    probes: LayerProbes
    vectors_LKD: Float[Tensor, "layers k d"]
    """Mean target − default difference of each cluster at each layer."""
    layer_scale_L: Float[Tensor, " layers"]
    """Per-layer rescaling used for the joint clustering (mean difference norm)."""
    config: GactConfig
    cluster_languages: list[str]
    """Majority language of each cluster's training members."""
    model_name: str = ""
    model_fingerprint: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def target_clusters(self) -> list[int]:
        found = [k for k, lang in enumerate(self.cluster_languages) if lang == self.config.target]
        return found or [int(self.info.get("fallback_target_cluster", 0))]

    @property
    def n_layers(self) -> int:
        return self.vectors_LKD.shape[0]

    @property
    def inject_layers(self) -> list[int]:
        layers = self.config.inject_layers
        return list(layers) if layers is not None else default_inject_layers(self.n_layers)

    def joint_features(self, diff_NLD: Tensor) -> Tensor:
        return (diff_NLD / self.layer_scale_L[None, :, None]).flatten(1)

    def assign(self, diff_NLD: Tensor) -> Tensor:
        """Cluster of held-out differences: nearest centroid in the joint (rescaled) space."""
        centroids_KF = self.joint_features(self.vectors_LKD.transpose(0, 1))
        return assign(self.joint_features(diff_NLD), centroids_KF)

    def probe_accuracy(self, variant_NLD: Tensor, diff_NLD: Tensor) -> list[float]:
        """Per-layer accuracy on held-out samples (labels: nearest cluster of each held-out difference)."""
        return self.probes.accuracy(variant_NLD, self.assign(diff_NLD))

    def with_probes(self, probes: LayerProbes) -> "Gact":
        return Gact(probes, self.vectors_LKD, self.layer_scale_L, self.config, self.cluster_languages,
                    self.model_name, self.model_fingerprint, self.info)

    # ---- steering --------------------------------------------------------------------------------------------------
    def steer(self, lm, *, scale: float | None = None, layers: list[int] | None = None,
              refine_lr: float | None = None, strict: bool = True) -> "GactSession":
        """Context manager steering ``lm`` (thread-scoped); ``session.probes`` holds the refined copy."""
        io.check_model(self._cfg(), lm, strict=strict)
        return GactSession(self, lm, self.config.scale if scale is None else scale,
                           [lm.check_layer(x) for x in (self.inject_layers if layers is None else layers)],
                           self.config.refine_lr if refine_lr is None else refine_lr)

    # ---- storage ---------------------------------------------------------------------------------------------------
    def _cfg(self) -> dict:
        return {"kind": "gact", "config": asdict(self.config), "model_name": self.model_name,
                "model_fingerprint": self.model_fingerprint, "n_layers": self.n_layers,
                "d_model": self.vectors_LKD.shape[2], "k": self.vectors_LKD.shape[1], "info": self.info,
                "cluster_languages": self.cluster_languages}

    def save(self, path: str | Path) -> Path:
        p = self.probes
        return io.save_artifact(path, {"vectors_LKD": self.vectors_LKD, "layer_scale_L": self.layer_scale_L,
                                       "W_LKD": p.W_LKD, "b_LK": p.b_LK, "mu_LD": p.mu_LD, "sd_LD": p.sd_LD},
                                self._cfg())

    @classmethod
    def load(cls, path: str | Path, lm=None, *, strict: bool = True) -> "Gact":
        t, cfg = io.load_artifact(path, kind="gact", lm=lm, strict=strict)
        shape = (cfg["n_layers"], cfg["k"], cfg["d_model"])
        if tuple(t["vectors_LKD"].shape) != shape or tuple(t["W_LKD"].shape) != shape:
            raise ValueError(f"{path}: tensor shapes do not match cfg.json (expected {shape})")
        probes = LayerProbes(t["W_LKD"], t["b_LK"], t["mu_LD"], t["sd_LD"])
        config = GactConfig(**{**cfg["config"], "languages": tuple(cfg["config"]["languages"])})
        return cls(probes, t["vectors_LKD"], t["layer_scale_L"], config, cfg["cluster_languages"],
                   cfg["model_name"], cfg["model_fingerprint"], cfg.get("info", {}))


def fit_gact(lm, prompts: list[str], config: GactConfig | None = None, *, batch_size: int = 16
             ) -> tuple[Gact, Tensor, Tensor, list[str]]:
    """Fit G-ACT on ``prompts``; returns (steerer, variant activations, differences, sample languages)."""
    config = config or GactConfig()
    variant_NLD, diff_NLD, langs = language_samples(lm, prompts, config.languages, seed=config.seed,
                                                    batch_size=batch_size)
    return fit_gact_from_acts(variant_NLD, diff_NLD, langs, config, lm=lm), variant_NLD, diff_NLD, langs


def cluster_majorities(labels_N: Tensor, langs: list[str], k: int) -> list[str]:
    """Language making up more than half of each cluster, or "mixed" (a mixed cluster is never a target: in
    calibration the probes picked a mixed "some language was named" cluster and steering went nowhere)."""
    out = []
    for c in range(k):
        members = [lang for lang, lab in zip(langs, labels_N.tolist()) if lab == c]
        top = max(sorted(set(members)), key=members.count) if members else ""
        out.append(top if members and members.count(top) > len(members) / 2 else "mixed")
    return out


def fit_gact_from_acts(variant_NLD: Tensor, diff_NLD: Tensor, langs: list[str], config: GactConfig, *,
                       lm=None) -> Gact:
    """Clustering + probes from precomputed activations (testable without a model)."""
    n, n_layers, d = diff_NLD.shape
    if variant_NLD.shape != diff_NLD.shape or len(langs) != n:
        raise ValueError(f"variant activations {tuple(variant_NLD.shape)}, differences {tuple(diff_NLD.shape)} "
                         f"and {len(langs)} languages must describe the same samples")
    if config.target not in langs:
        raise ValueError(f"no sample asks for the target language {config.target!r}; add target variants")
    layer_scale_L = diff_NLD.norm(dim=-1).mean(dim=0).clamp_min(1e-6)
    joint_NF = (diff_NLD / layer_scale_L[None, :, None]).flatten(1)
    result = kmeans(joint_NF, config.k, seed=config.seed)
    labels_N = result.labels_N
    vectors_LKD = torch.stack([diff_NLD[labels_N == c].mean(dim=0) for c in range(config.k)], dim=1)
    probes = fit_probes(variant_NLD, labels_N, config.k, c=config.probe_c, seed=config.seed)
    sizes = torch.bincount(labels_N, minlength=config.k).tolist()
    majorities = cluster_majorities(labels_N, langs, config.k)
    info = {"cluster_sizes": sizes, "n_train": n, "kmeans_reseeded": result.n_reseeded}
    if config.target not in majorities:
        share = [sum(1 for lang, lab in zip(langs, labels_N.tolist()) if lab == c and lang == config.target)
                 / max(sizes[c], 1) for c in range(config.k)]
        info["fallback_target_cluster"] = int(max(range(config.k), key=share.__getitem__))
        logger.warning("no cluster is mostly %s samples (majorities %s); steering with cluster %d (largest %s share)",
                       config.target, majorities, info["fallback_target_cluster"], config.target)
    logger.info("G-ACT: %d samples, cluster sizes %s, languages %s", n, sizes, majorities)
    return Gact(probes, vectors_LKD, layer_scale_L, config, majorities, getattr(lm, "name", ""),
                getattr(lm, "fingerprint", None), info)


class GactSession:
    """One steering block. State (choices, refined probes) lives here, never on the ``Gact`` or the model."""

    def __init__(self, gact: Gact, lm, scale: float, layers: list[int], refine_lr: float) -> None:
        self.gact, self.lm, self.scale, self.inject, self.refine_lr = gact, lm, scale, set(layers), refine_lr
        self.probes = gact.probes.clone()
        self.mask_K = torch.full((gact.probes.k,), float("-inf"))
        self.mask_K[gact.target_clusters] = 0.0
        self.target_B: Tensor | None = None
        self.first, self.last = 0, gact.n_layers - 1
        self.choice_B: Tensor | None = None
        self.losses: list[float] = []
        self.choices: list[list[int]] = []
        self._logp_BK: Tensor | None = None
        self._pending: dict[int, Tensor] = {}
        ops = [hooks.Apply(site=f"blocks.{layer}.hook_resid_post", fn=self._fn(layer)) for layer in range(gact.n_layers)]
        self._session = hooks.intervene(lm, ops)

    def __enter__(self) -> "GactSession":
        self._session.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._session.__exit__(*exc)

    attach = __enter__

    def remove(self) -> None:
        self._session.remove()

    def _add(self, layer: int, acts: Tensor, k_B: Tensor) -> Tensor | None:
        if layer not in self.inject or self.scale == 0:
            return None
        delta_BD = (self.scale * self.gact.vectors_LKD[layer][k_B.cpu()]).to(device=acts.device, dtype=acts.dtype)
        if self.gact.config.positions == "all":
            return acts + delta_BD[:, None, :]
        out = acts.clone()
        out[:, -1] = acts[:, -1] + delta_BD
        return out

    def _fn(self, layer: int):
        def run(acts: Tensor, ctx: hooks.HookContext) -> Tensor | None:
            h_BD = acts[:, -1].detach()
            if ctx.phase == "prompt":
                if layer == self.first:
                    self._logp_BK, self._pending = None, {}
                logp_BK = self.probes.logits(layer, h_BD).log_softmax(-1)
                self._logp_BK = logp_BK if self._logp_BK is None else self._logp_BK + logp_BK
                self._pending[layer] = h_BD
                pick_B = (self._logp_BK + self.mask_K).argmax(-1)  # most probable target cluster so far
                if layer == self.last:
                    self.target_B = pick_B
                    self.choice_B = self._logp_BK.argmax(-1)  # consensus: the refinement pseudo-label
                    self.choices.append(self.choice_B.tolist())
                    if self.refine_lr > 0:
                        for seen, h in self._pending.items():
                            self.losses.append(self.probes.step(seen, h, self.choice_B, self.refine_lr))
                    self._pending = {}
                return self._add(layer, acts, pick_B)
            if self.choice_B is None or self.choice_B.shape[0] != acts.shape[0]:
                raise RuntimeError("G-ACT saw a cached generation step before a prompt pass in this session")
            if self.refine_lr > 0 and self.gact.config.refine_on == "all":
                self.losses.append(self.probes.step(layer, h_BD, self.choice_B, self.refine_lr))
            return self._add(layer, acts, self.target_B)

        return run
