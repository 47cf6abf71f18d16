"""Operations a hook session can run at a site: record, add, ablate, replace, or any user function.

Every operation is out-of-place (the model's own tensors are never modified in place) and never touches weights.
Operations are plain dataclasses; ``HookSession`` (``session.py``) decides when and where they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from workbench.hooks.scope import ScopeLike, apply_at, check_scope, positions
from workbench.hooks.sites import Site, SiteLike


class HookContext(NamedTuple):
    site: Site
    phase: str
    """``"prompt"`` for the first forward pass of a generation (or any plain forward), ``"generated"`` after."""


class ForwardContext(NamedTuple):
    inputs: dict[str, Any]
    """The model call's arguments by name (``input_ids`` or ``inputs_embeds``, ``attention_mask``, ...)."""
    phase: str
    unhooked: Callable[[], ContextManager]
    """A block in which this session's own hooks are inactive: for an op that runs a nested forward pass."""


@dataclass
class Op:
    site: SiteLike

    def run(self, acts: Tensor, ctx: HookContext) -> Tensor | None:  # pragma: no cover - interface
        raise NotImplementedError

    def before_forward(self, ctx: ForwardContext) -> None:
        """Called at the start of every forward pass of the model while the session is active (default: nothing).
        Ops whose patch depends on the whole input (e.g. a controller that reads the prompt first) use it."""

    def check(self, site: Site, d_model: int) -> None:
        """Validate against the bound site and model width; raise with a fix."""


def _as_vector(vector: Tensor, d_model: int, what: str) -> Tensor:
    vector = torch.as_tensor(vector)
    if vector.ndim != 1 or vector.shape[0] != d_model:
        raise ValueError(f"{what} has shape {tuple(vector.shape)} but this model's residual width is {d_model}; "
                         f"pass a 1-D tensor of length {d_model} (was it made on another model?)")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{what} contains NaN or inf values")
    return vector


def _on(vector: Tensor, like: Tensor) -> Tensor:
    return vector.to(device=like.device, dtype=like.dtype)


def _require_writable(site: Site, op: str) -> None:
    if not site.writable:
        raise ValueError(f"{op} cannot write to {site.name}: attention patterns are read-only; "
                         "write to resid_pre/attn_out/mlp_out/resid_post instead")


@dataclass
class Record(Op):
    """Keep a copy of the activation of every forward pass (several passes during cached generation)."""

    detach: bool = True
    to_cpu: bool = False
    chunks: list[Tensor] = field(default_factory=list, repr=False)

    def run(self, acts: Tensor, ctx: HookContext) -> None:
        kept = acts.detach() if self.detach else acts
        self.chunks.append(kept.to("cpu") if self.to_cpu else kept)
        return None

    def result(self) -> Tensor:
        """Passes concatenated along the position axis (the axis after batch)."""
        if not self.chunks:
            raise RuntimeError(f"nothing was recorded at {self.site}: did a forward pass run inside the session?")
        if len(self.chunks) == 1:
            return self.chunks[0]
        if self.chunks[0].ndim == 4:  # attention patterns have growing key length; no single tensor exists
            raise ValueError("attention patterns from several forward passes differ in key length; use .chunks")
        return torch.cat(self.chunks, dim=1)


@dataclass
class Add(Op):
    """``acts[:, scope] += scale * vector`` — activation addition / steering."""

    vector: Float[Tensor, " d_model"] = None  # type: ignore[assignment]
    scale: float = 1.0
    scope: ScopeLike = "all"

    def __post_init__(self) -> None:
        check_scope(self.scope)
        if self.vector is None:
            raise ValueError("Add needs a vector")

    def check(self, site: Site, d_model: int) -> None:
        _require_writable(site, "Add")
        self.vector = _as_vector(self.vector, d_model, "steering vector")

    def run(self, acts: Tensor, ctx: HookContext) -> Tensor | None:
        index = positions(self.scope, ctx.phase, acts.shape[1])
        if index is None or self.scale == 0:
            return None
        delta = self.scale * _on(self.vector, acts)
        return apply_at(acts, index, lambda a: a + delta)


@dataclass
class Ablate(Op):
    """Project a direction out: ``acts -= (acts · d̂) d̂`` (directional ablation, Arditi et al. 2024)."""

    direction: Float[Tensor, " d_model"] = None  # type: ignore[assignment]
    scope: ScopeLike = "all"

    def __post_init__(self) -> None:
        check_scope(self.scope)
        if self.direction is None:
            raise ValueError("Ablate needs a direction")

    def check(self, site: Site, d_model: int) -> None:
        _require_writable(site, "Ablate")
        direction = _as_vector(self.direction, d_model, "ablation direction").float()
        norm = direction.norm()
        if norm == 0:
            raise ValueError("ablation direction is all zeros")
        self.direction = direction / norm

    def run(self, acts: Tensor, ctx: HookContext) -> Tensor | None:
        index = positions(self.scope, ctx.phase, acts.shape[1])
        if index is None:
            return None
        unit = _on(self.direction, acts)
        return apply_at(acts, index, lambda a: a - (a @ unit).unsqueeze(-1) * unit)


@dataclass
class Replace(Op):
    """Replace the activation at the scoped positions by a tensor (broadcast) or ``value(acts) -> tensor``."""

    value: Tensor | Callable[[Tensor], Tensor] = None  # type: ignore[assignment]
    scope: ScopeLike = "all"

    def __post_init__(self) -> None:
        check_scope(self.scope)
        if self.value is None:
            raise ValueError("Replace needs a value")

    def check(self, site: Site, d_model: int) -> None:
        _require_writable(site, "Replace")
        if isinstance(self.value, Tensor) and self.value.shape[-1] != d_model:
            raise ValueError(f"replacement has last dimension {self.value.shape[-1]}, expected d_model={d_model}")

    def run(self, acts: Tensor, ctx: HookContext) -> Tensor | None:
        index = positions(self.scope, ctx.phase, acts.shape[1])
        if index is None:
            return None
        if callable(self.value) and not isinstance(self.value, Tensor):
            return apply_at(acts, index, lambda a: self.value(a).to(a.dtype))
        return apply_at(acts, index, lambda a: _on(self.value, a).expand_as(a))


@dataclass
class Apply(Op):
    """Run ``fn(acts, ctx)``; it returns a new tensor of the same shape, or None to leave the activation alone."""

    fn: Callable[[Tensor, HookContext], Tensor | None] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError("Apply needs a callable fn(acts, ctx)")

    def run(self, acts: Tensor, ctx: HookContext) -> Tensor | None:
        out = self.fn(acts, ctx)
        if out is not None and out.shape != acts.shape:
            raise ValueError(f"hook function at {ctx.site} returned shape {tuple(out.shape)}, "
                             f"expected {tuple(acts.shape)}")
        return out
