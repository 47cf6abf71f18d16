"""``SteeringVector``: a direction bound to a hook site, with arithmetic, scoped application and safe storage.

Shape taken from steering-vectors / repeng: ``apply()`` is a context manager, ``patch()`` returns a removable handle,
and vectors support ``2 * v``, ``v - w``, ``-v``. Saved as ``<name>.safetensors`` (the tensor) + ``<name>.json``
(site, scale, scope, model fingerprint, provenance); loading checks width, finiteness and fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from workbench import atomic, hooks
from workbench.hooks.scope import ScopeLike, check_scope

if TYPE_CHECKING:
    from workbench.models import LoadedModel

FORMAT_VERSION = 1


@dataclass
class SteeringVector:
    vector: Float[Tensor, " d_model"]
    site: str
    """Canonical hook-site name, e.g. ``blocks.10.hook_resid_post``."""
    scale: float = 1.0
    scope: ScopeLike = "all"
    model_fingerprint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vector = torch.as_tensor(self.vector).detach().float().cpu()
        if self.vector.ndim != 1:
            raise ValueError(f"a steering vector is 1-D [d_model], got shape {tuple(self.vector.shape)}")
        if not torch.isfinite(self.vector).all():
            raise ValueError("steering vector contains NaN or inf")
        self.site = hooks.parse_site(self.site).name
        check_scope(self.scope)

    # ---- arithmetic (scales the tensor, keeps site/scope) --------------------------------------------------------
    def _combine(self, other: "SteeringVector", sign: float) -> "SteeringVector":
        if not isinstance(other, SteeringVector):
            return NotImplemented
        if other.site != self.site or other.vector.shape != self.vector.shape:
            raise ValueError(f"cannot combine vectors at {self.site} {tuple(self.vector.shape)} and "
                             f"{other.site} {tuple(other.vector.shape)}")
        return replace(self, vector=self.scale * self.vector + sign * other.scale * other.vector, scale=1.0)

    def __add__(self, other: "SteeringVector") -> "SteeringVector":
        return self._combine(other, 1.0)

    def __sub__(self, other: "SteeringVector") -> "SteeringVector":
        return self._combine(other, -1.0)

    def __mul__(self, factor: float | int) -> "SteeringVector":
        return replace(self, vector=self.vector * float(factor))

    __rmul__ = __mul__

    def __neg__(self) -> "SteeringVector":
        return self * -1.0

    # ---- application ---------------------------------------------------------------------------------------------
    def check_model(self, lm: "LoadedModel") -> None:
        if self.vector.shape[0] != lm.d_model:
            raise ValueError(f"vector width {self.vector.shape[0]} does not match {lm.name} (d_model={lm.d_model})")
        if self.model_fingerprint and self.model_fingerprint != lm.fingerprint:
            raise ValueError(f"this vector was made on a model with fingerprint {self.model_fingerprint}, but "
                             f"{lm.name} has {lm.fingerprint}; recompute it on this model (or pass strict=False)")

    def apply(self, lm: "LoadedModel", *, scale: float | None = None, scope: ScopeLike | None = None,
              strict: bool = True) -> hooks.HookSession:
        """Context manager adding ``scale * vector`` at the site (thread-scoped; removed on exit)."""
        if strict:
            self.check_model(lm)
        return hooks.steer(lm, self.site, self.vector, self.scale if scale is None else scale,
                           self.scope if scope is None else scope)

    def patch(self, lm: "LoadedModel", **kwargs: Any) -> hooks.HookSession:
        """Like ``apply`` but returns an attached handle; call ``.remove()`` when done."""
        return self.apply(lm, **kwargs).attach()

    # ---- storage -------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path.safetensors`` + ``path.json`` atomically; returns the JSON path."""
        base = Path(path).with_suffix("")
        meta = {"format": "workbench.steering_vector", "version": FORMAT_VERSION, "site": self.site,
                "scale": self.scale, "scope": self.scope if isinstance(self.scope, (str, int)) else list(self.scope),
                "d_model": int(self.vector.shape[0]), "model_fingerprint": self.model_fingerprint,
                "metadata": self.metadata}
        with atomic.atomic_path(base.with_suffix(".safetensors")) as tmp:
            save_file({"vector": self.vector.contiguous()}, str(tmp))
        atomic.write_json(base.with_suffix(".json"), meta)
        return base.with_suffix(".json")

    @classmethod
    def load(cls, path: str | Path) -> "SteeringVector":
        meta, _, tensor_path = atomic.read_artifact_manifest(path, "workbench.steering_vector",
                                                             "a workbench steering vector")
        tensors = load_file(str(tensor_path))
        if set(tensors) != {"vector"} or tensors["vector"].shape != (meta["d_model"],):
            raise ValueError(f"{tensor_path} should hold one tensor 'vector' of shape ({meta['d_model']},)")
        scope = meta["scope"] if not isinstance(meta["scope"], list) else list(meta["scope"])
        return cls(vector=tensors["vector"], site=meta["site"], scale=meta["scale"], scope=scope,
                   model_fingerprint=meta.get("model_fingerprint"), metadata=meta.get("metadata", {}))
