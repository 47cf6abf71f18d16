"""WAS controller (Guiding Giants: weighted activation steering with a lightweight controller).

A small MLP reads the last-token activations of the last ``k`` layers of the *unsteered* prompt and outputs a global
scale ``s ∈ (0, 1)`` (trained by BCE: harmful 1, benign 0) and per-layer weights ``w_l ∈ (0, 1)`` (sigmoid; only a
pull-to-0.5 regulariser, as in the public code). While generating, ``s · w_l · strength · d_l`` is added to the
residual stream (``resid_post``) of **every** weighted layer ``l`` at the last position of every forward pass — the
last prompt token and each generated token. ``d_l`` is a unit direction per layer (Arditi's single direction
broadcast to all layers, or the refusal-vs-compliance phrase direction of each layer).

Two defects of the public code are fixed: the patch really reaches every weighted layer (one hook per layer, built by
a factory — no late-binding closure; ``tests/test_controller.py`` proves it layer by layer) and prompts use the chat
template. The controller needs the prompt's last-token activations before it can steer that same token. Two ways to
get them, with the same result:

* ``Controller.generate_batch`` runs the prompt once unsteered, crops the KV cache by one token and lets ``generate``
  recompute the last prompt token with the patch: the extra cost is one token per prompt plus the MLP;
* ``Controller.session`` (what a deployed bundle uses, see ``steering.controller_bundle``) is hooks only, so it works
  with a plain ``model.generate``/``model(...)``: at the start of every prompt forward pass it reads the same inputs
  in a nested unsteered pass (stopped after the last read layer), then the main pass runs with the patch.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from workbench import atomic, hooks
from workbench.hooks.scope import PROMPT

if TYPE_CHECKING:
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)
FORMAT = "workbench.was_controller"


@dataclass
class ControllerConfig:
    read_k: int = 4
    """Read the last-token ``resid_post`` of the last ``read_k`` layers."""
    hidden: int = 1024
    strength: float = 4.0
    """Patch norm at a layer when ``s · w_l = 1`` (directions are unit vectors)."""
    steer_layers: tuple[int, ...] | None = None
    """Layers that receive the patch; None = every layer."""
    reg: float = 0.1
    """Weight of the pull-to-0.5 regulariser on the per-layer weights."""
    lr: float = 1e-3
    epochs: int = 300
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.read_k < 1 or self.hidden < 1 or self.epochs < 0:
            raise ValueError("read_k and hidden must be >= 1 and epochs >= 0")
        if self.strength < 0 or self.reg < 0 or self.lr <= 0:
            raise ValueError("strength and reg must be >= 0 and lr > 0")
        if self.steer_layers is not None:
            self.steer_layers = tuple(int(layer) for layer in self.steer_layers)
            if not self.steer_layers:
                raise ValueError("steer_layers must name at least one layer (or be None for all)")


class ControllerOut(NamedTuple):
    scale_logit_B: Float[Tensor, " batch"]
    scale_B: Float[Tensor, " batch"]
    weights_BL: Float[Tensor, "batch steer_layer"]

    @property
    def coeff_BL(self) -> Tensor:
        """``s · w_l`` per prompt and weighted layer."""
        return self.scale_B[:, None] * self.weights_BL


class WASNet(nn.Module):
    """MLP: [batch, k·d] → hidden (ReLU) → 1 scale logit + one weight logit per steered layer."""

    def __init__(self, d_in: int, n_steer: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("in_mean", torch.zeros(d_in))
        self.register_buffer("in_std", torch.ones(d_in))
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, 1 + n_steer))

    def forward(self, acts_BKD: Tensor) -> ControllerOut:
        x_BI = (acts_BKD.flatten(1).float() - self.in_mean) / self.in_std  # [batch, k*d]
        out_BO = self.net(x_BI)
        scale_logit = out_BO[:, 0]
        return ControllerOut(scale_logit, torch.sigmoid(scale_logit), torch.sigmoid(out_BO[:, 1:]))


def unit_rows(directions: Tensor, n_rows: int, d_model: int) -> Float[Tensor, "steer_layer d_model"]:
    """One unit direction per steered layer; a single [d] direction is broadcast."""
    directions = torch.as_tensor(directions).detach().float().cpu()
    if directions.ndim == 1:
        directions = directions.expand(n_rows, -1)
    if directions.shape != (n_rows, d_model):
        raise ValueError(f"directions have shape {tuple(directions.shape)}; expected ({d_model},) or "
                         f"({n_rows}, {d_model}) for {n_rows} steered layers of width {d_model}")
    if not torch.isfinite(directions).all():
        raise ValueError("directions contain NaN or inf")
    norms = directions.norm(dim=-1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("a steering direction is all zeros")
    return (directions / norms).contiguous()


def patch_ops(lm: "LoadedModel", layers: Sequence[int], directions_LD: Tensor, strength: float,
              coeff: Callable[[], Tensor]) -> list[hooks.Op]:
    """One ``Apply`` op per weighted layer adding ``coeff()[:, i] · strength · d_i`` at the last position.

    ``coeff()`` is read at hook time (shape [batch, n_layers] or broadcastable), so a controller can set it after
    reading the prompt. Each op is built by ``_layer_fn`` so every layer keeps its own index and direction.
    """
    def _layer_fn(i: int) -> Callable:
        def fn(acts: Tensor, ctx: hooks.HookContext) -> Tensor:
            c_B = torch.as_tensor(coeff()).to(acts.device, torch.float32)
            c_B = c_B[:, i] if c_B.ndim == 2 else c_B.expand(acts.shape[0])
            delta_BD = (c_B[:, None] * strength) * directions_LD[i].to(acts.device)[None, :]
            out = acts.clone()
            out[:, -1] = acts[:, -1] + delta_BD.to(acts.dtype)
            return out
        return fn

    return [hooks.Apply(site=hooks.Site(lm.check_layer(layer), "resid_post"), fn=_layer_fn(i))
            for i, layer in enumerate(layers)]


KEEP_DECISIONS = 64
"""A live session keeps its most recent decisions only (an attached deployment handle serves requests for ever)."""


@dataclass
class ControllerRead(hooks.Op):
    """Reads the unsteered prompt at the start of every prompt-phase forward pass and sets ``s · w_l`` per prompt.

    Its own site hook does nothing; the work happens in ``before_forward`` (one nested pass with this session's hooks
    off, stopped after the last read layer). Other sessions active on the thread see that pass like any other (a
    recording gets one extra, truncated prompt pass; a steering vector also steers what the controller reads), as
    with ``generate_batch``.
    """

    controller: "Controller" = None  # type: ignore[assignment]
    lm: "LoadedModel" = None  # type: ignore[assignment]
    decisions: deque = None  # type: ignore[assignment]
    """Shared with the session's patch ops: the last entry steers the current prompt batch."""

    def run(self, acts: Tensor, ctx: hooks.HookContext) -> None:
        return None

    @torch.no_grad()
    def before_forward(self, ctx: hooks.ForwardContext) -> None:
        if ctx.phase != PROMPT:
            return
        inputs = {k: ctx.inputs[k] for k in ("input_ids", "inputs_embeds", "attention_mask", "position_ids")
                  if ctx.inputs.get(k) is not None}
        sites = self.controller.read_sites()
        recorders = [hooks.Record(site=s) for s in sites]
        with ctx.unhooked(), hooks.HookSession(self.lm, recorders, stop_after=sites[-1]):
            try:
                self.lm.model(**inputs, use_cache=False)
            except hooks.StopForward:
                pass
        acts_BKD = torch.stack([rec.result()[:, -1].float() for rec in recorders], dim=1)
        self.decisions.append(self.controller.predict(acts_BKD))


class LiveSession(hooks.HookSession):
    """A controller applied through hooks only; ``decisions`` holds the ``ControllerOut`` of each prompt forward
    pass (the most recent ``KEEP_DECISIONS``)."""

    def __init__(self, lm: "LoadedModel", ops: Sequence[hooks.Op], decisions: deque) -> None:
        super().__init__(lm, ops)
        self.decisions = decisions


@dataclass
class Controller:
    """A trained WAS controller bound to one model (fingerprint) and one set of steering directions."""

    net: WASNet
    config: ControllerConfig
    read_layers: list[int]
    steer_layers: list[int]
    directions_LD: Tensor
    model_fingerprint: str
    d_model: int
    metadata: dict = field(default_factory=dict)

    @classmethod
    def create(cls, lm: "LoadedModel", directions: Tensor, config: ControllerConfig | None = None,
               **metadata) -> "Controller":
        cfg = config or ControllerConfig()
        if cfg.read_k > lm.n_layers:
            raise ValueError(f"read_k={cfg.read_k} but {lm.name} has only {lm.n_layers} layers")
        steer = [lm.check_layer(layer) for layer in (cfg.steer_layers or range(lm.n_layers))]
        read = list(range(lm.n_layers - cfg.read_k, lm.n_layers))
        torch.manual_seed(cfg.seed)
        net = WASNet(cfg.read_k * lm.d_model, len(steer), cfg.hidden)
        return cls(net, cfg, read, steer, unit_rows(directions, len(steer), lm.d_model), lm.fingerprint,
                   lm.d_model, dict(metadata))

    def check_model(self, lm: "LoadedModel", *, fingerprint: bool = True) -> None:
        """Width and layers always; the fingerprint unless ``fingerprint=False`` (a bundle checks its own)."""
        if self.d_model != lm.d_model:
            raise ValueError(f"controller was built for width {self.d_model}; {lm.name} has d_model={lm.d_model}")
        if fingerprint and self.model_fingerprint != lm.fingerprint:
            raise ValueError(f"controller was trained on a model with fingerprint {self.model_fingerprint}, but "
                             f"{lm.name} has {lm.fingerprint}; retrain it on this model")
        if max(self.read_layers + self.steer_layers) >= lm.n_layers:
            raise ValueError(f"controller uses layers up to {max(self.read_layers + self.steer_layers)}; "
                             f"{lm.name} has {lm.n_layers}")

    # ---- reading --------------------------------------------------------------------------------------------------
    def read_sites(self) -> list[hooks.Site]:
        return [hooks.Site(layer, "resid_post") for layer in self.read_layers]

    @torch.no_grad()
    def read(self, lm: "LoadedModel", batch: dict[str, Tensor]) -> Float[Tensor, "batch k d_model"]:
        """Last-token activations of the read layers for a tokenised (left-padded, chat-rendered) batch."""
        rec = hooks.record(lm, batch, self.read_sites())
        return torch.stack([rec[s.name][:, -1].float() for s in self.read_sites()], dim=1)

    @torch.no_grad()
    def predict(self, acts_BKD: Tensor) -> ControllerOut:
        self.net.eval()
        return self.net(acts_BKD.to(self.net.in_mean.device))

    # ---- steering -------------------------------------------------------------------------------------------------
    def ops(self, lm: "LoadedModel", coeff: Callable[[], Tensor]) -> list[hooks.Op]:
        return patch_ops(lm, self.steer_layers, self.directions_LD, self.config.strength, coeff)

    def live_ops(self, lm: "LoadedModel") -> tuple[list[hooks.Op], deque]:
        """Hook ops that make the decision from the prompt themselves (see ``ControllerRead``) and patch every
        weighted layer at the last position; no fingerprint check (callers check). Also returns the decisions."""
        decisions: deque = deque(maxlen=KEEP_DECISIONS)
        zero = torch.zeros(())

        def coeff() -> Tensor:
            return decisions[-1].coeff_BL if decisions else zero

        reader = ControllerRead(site=self.read_sites()[-1], controller=self, lm=lm, decisions=decisions)
        return [reader, *self.ops(lm, coeff)], decisions

    def session(self, lm: "LoadedModel") -> LiveSession:
        """Context manager / handle: the controller steers every ``lm.model(...)`` / ``lm.model.generate(...)``
        inside it on its own (hooks only, this thread only); ``.decisions`` holds what it decided per prompt."""
        self.check_model(lm)
        ops, decisions = self.live_ops(lm)
        return LiveSession(lm, ops, decisions)

    def constant(self, lm: "LoadedModel", coeff: float = 0.5) -> hooks.HookSession:
        """The same patch with a fixed ``s · w_l = coeff`` for every prompt (constant-strength steering)."""
        self.check_model(lm)
        value = torch.tensor(float(coeff))
        return hooks.intervene(lm, self.ops(lm, lambda: value))

    @torch.no_grad()
    def generate_batch(self, lm: "LoadedModel", batch: dict[str, Tensor], **generate_kwargs):
        """Controlled ``generate`` for one tokenised, left-padded, chat-rendered batch.

        1. run the prompt unsteered (KV cache on) and read the last-token activations of the read layers;
        2. the MLP gives ``s`` and ``w`` per prompt;
        3. crop the cache by one token and call ``generate`` with the patch at every weighted layer, so the last
           prompt token (which decides the first answer token) and every generated token are steered.
        Returns (``generate`` output, ``ControllerOut``).
        """
        self.check_model(lm)
        mask = batch["attention_mask"]
        position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as generate() computes them
        with hooks.recording(lm, self.read_sites()) as rec:
            try:
                out = lm.model(**batch, position_ids=position_ids, use_cache=True, logits_to_keep=1)
            except TypeError:
                out = lm.model(**batch, position_ids=position_ids, use_cache=True)
        acts_BKD = torch.stack([rec[s][:, -1].float() for s in self.read_sites()], dim=1)
        decision = self.predict(acts_BKD)
        cache = out.past_key_values
        cache.crop(-1)  # drop the last prompt token; generate() recomputes it with the patch
        coeff_BL = decision.coeff_BL
        with hooks.intervene(lm, self.ops(lm, lambda: coeff_BL)):
            generated = lm.model.generate(**batch, past_key_values=cache, **generate_kwargs)
        return generated, decision

    # ---- storage --------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """``path.safetensors`` (MLP, input normalisation, directions) + ``path.json`` (config, layers, fingerprint)."""
        base = Path(path).with_suffix("")
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        tensors["directions"] = self.directions_LD.contiguous()
        with atomic.atomic_path(base.with_suffix(".safetensors")) as tmp:
            save_file(tensors, str(tmp))
        cfg = asdict(self.config)
        cfg["steer_layers"] = list(cfg["steer_layers"]) if cfg["steer_layers"] is not None else None
        atomic.write_json(base.with_suffix(".json"), {
            "format": FORMAT, "version": 1, "config": cfg, "read_layers": self.read_layers,
            "steer_layers": self.steer_layers, "d_model": self.d_model, "model_fingerprint": self.model_fingerprint,
            "metadata": self.metadata})
        return base.with_suffix(".json")

    @classmethod
    def load(cls, path: str | Path, lm: "LoadedModel | None" = None) -> "Controller":
        """Load and validate; with ``lm``, also check fingerprint, width and layers against that model."""
        meta, meta_path, tensor_path = atomic.read_artifact_manifest(path, FORMAT, "a WAS controller")
        tensors = load_file(str(tensor_path))
        for name, tensor in tensors.items():
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{tensor_path}: tensor {name!r} contains NaN or inf; the file is corrupt")
        cfg = ControllerConfig(**meta["config"])
        d_model, read, steer = int(meta["d_model"]), list(meta["read_layers"]), list(meta["steer_layers"])
        if tensors.get("directions") is None or tensors["directions"].shape != (len(steer), d_model):
            raise ValueError(f"{tensor_path}: 'directions' should have shape ({len(steer)}, {d_model})")
        net = WASNet(len(read) * d_model, len(steer), cfg.hidden)
        state = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{tensor_path}: weights do not match the config in {meta_path}: {err}") from None
        ctrl = cls(net, cfg, read, steer, unit_rows(tensors["directions"], len(steer), d_model),
                   meta["model_fingerprint"], d_model, meta.get("metadata", {}))
        if lm is not None:
            ctrl.check_model(lm)
        return ctrl
