"""Steering bundles: interventions packaged for deployment as ``tensors.safetensors`` + ``manifest.json``.

A bundle is a list of operations, each naming its tensor in the safetensors file:

* ``add``: add ``scale * vector`` at one hook site for the positions in ``scope`` (activation addition);
* ``ablate``: project a direction out at one or more sites (directional ablation, Arditi et al. 2024);
* ``controller``: a WAS refusal controller (``steering.controller_bundle`` packs it and registers its applier): an
  MLP reads the prompt and sets the per-layer coefficients of a patch along ``[n_sites, d_model]`` directions.

The manifest records the hook site of every operation (``blocks.{l}.hook_{kind}``, see ``LAYER_CONVENTION``), the
token scope, the scale, the model's name, width, depth and fingerprint, provenance (data, method, version) and the
evaluation figures when known. The manifest is also embedded in the safetensors header (``__metadata__``), so the
``.safetensors`` file alone is a complete bundle (one file to upload or download).

>>> bundle = Bundle.from_vector(vector, lm, provenance={"method": "contrast mean difference"})  # doctest: +SKIP
>>> bundle.save("runs/bundles/happy")                                                         # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes
from torch import Tensor

from workbench import atomic, hooks
from workbench.hooks.scope import ScopeLike, check_scope

if TYPE_CHECKING:
    from steering.vector import SteeringVector
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)

FORMAT = "workbench.steering_bundle"
VERSION = 1
MANIFEST_NAME, TENSORS_NAME = "manifest.json", "tensors.safetensors"
METADATA_KEY = "workbench.manifest"
OPERATIONS = ("add", "ablate", "controller")
LAYER_CONVENTION = {
    "name": "workbench.blocks.v1",
    "description": "blocks.{l} is the transformers decoder layer model.layers[l], 0-based. hook_resid_pre of l is the "
                   "input of layer l (= hidden_states[l] of output_hidden_states); hook_resid_post of l is its output "
                   "(= hidden_states[l+1], = resid_pre of l+1) and equals llama.cpp's control-vector tensor "
                   "direction.{l} (added to l_out of block l; l >= 1).",
}

Applier = Callable[["LoadedModel", "BundleOp", dict[str, Tensor]], list[hooks.Op]]
_APPLIERS: dict[str, Applier] = {}


def _scope_to_json(scope: ScopeLike) -> Any:
    if isinstance(scope, slice):
        return {"slice": [scope.start, scope.stop, scope.step]}
    if isinstance(scope, (str, int)):
        return scope
    return [int(i) for i in scope]


def _scope_from_json(value: Any) -> ScopeLike:
    if isinstance(value, dict) and "slice" in value:
        return slice(*value["slice"])
    return check_scope(value if not isinstance(value, list) else list(value))


@dataclass
class BundleOp:
    """One operation of a bundle. ``tensor`` names its main tensor (vector or direction) in the bundle."""

    operation: str
    sites: list[str]
    tensor: str
    scale: float = 1.0
    scope: ScopeLike = "all"
    params: dict[str, Any] = field(default_factory=dict)
    """Operation-specific settings (e.g. a controller's extra tensor names and hyper-parameters)."""

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown bundle operation {self.operation!r}; use one of {OPERATIONS}")
        if not self.sites:
            raise ValueError(f"a {self.operation} operation needs at least one hook site")
        if self.operation == "add" and len(self.sites) != 1:
            raise ValueError(f"an add operation has exactly one site, got {self.sites}")
        self.sites = [hooks.parse_site(s).name for s in self.sites]
        self.scale = float(self.scale)
        if not math.isfinite(self.scale):
            raise ValueError("operation scale must be finite")
        check_scope(self.scope)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["scope"] = _scope_to_json(self.scope)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BundleOp":
        known = {"operation", "sites", "tensor", "scale", "scope", "params"}
        if not isinstance(data, dict) or not {"operation", "sites", "tensor"} <= set(data):
            raise ValueError(f"a manifest operation needs 'operation', 'sites' and 'tensor'; got {data!r:.200}")
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown keys in manifest operation: {sorted(extra)}")
        return cls(**{**data, "scope": _scope_from_json(data.get("scope", "all"))})


@dataclass
class Bundle:
    """Operations + their tensors + everything needed to apply them safely to the right model."""

    ops: list[BundleOp]
    tensors: dict[str, Tensor]
    model: dict[str, Any]
    """``name``, ``fingerprint``, ``d_model``, ``n_layers``, ``model_type`` of the model the bundle was made on."""
    name: str = "bundle"
    provenance: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    """Evaluation figures when known (e.g. {"refusal_rate": ...}); empty means not evaluated."""

    def __post_init__(self) -> None:
        self.tensors = {k: torch.as_tensor(v).detach().float().cpu().contiguous() for k, v in self.tensors.items()}
        self.validate()

    # ---- validation ----------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check tensors against the manifest: names, 1-D main tensors of width d_model, finite values, layers."""
        if not self.ops:
            raise ValueError("a bundle needs at least one operation")
        d_model, n_layers = self.model.get("d_model"), self.model.get("n_layers")
        if not isinstance(d_model, int) or d_model <= 0 or not (n_layers is None or (isinstance(n_layers, int)
                                                                                   and n_layers > 0)):
            raise ValueError(f"bundle model info needs a positive integer d_model (and n_layers or null), got "
                             f"{self.model}")
        for key, tensor in self.tensors.items():
            if not torch.isfinite(tensor).all():
                raise ValueError(f"bundle tensor {key!r} contains NaN or inf")
        for op in self.ops:
            if op.tensor not in self.tensors:
                raise ValueError(f"operation {op.operation} refers to tensor {op.tensor!r}, which the bundle lacks "
                                 f"(has {sorted(self.tensors)})")
            main = self.tensors[op.tensor]
            want = (len(op.sites), d_model) if op.operation == "controller" else (d_model,)
            if main.shape != want:
                raise ValueError(f"tensor {op.tensor!r} of the {op.operation} operation has shape "
                                 f"{tuple(main.shape)}, expected {want} for d_model={d_model}")
            if op.operation == "ablate" and main.norm() == 0:
                raise ValueError(f"ablation direction {op.tensor!r} is all zeros")
            for site in op.sites:
                layer = hooks.parse_site(site).layer
                if n_layers is not None and not -n_layers <= layer < n_layers:
                    raise ValueError(f"site {site} is outside the bundle model's {n_layers} layers")

    def check_model(self, lm: "LoadedModel", *, strict: bool = True) -> None:
        """Raise when ``lm`` is not the model this bundle was made for (width always; fingerprint when strict)."""
        n_layers = self.model.get("n_layers")
        if lm.d_model != self.model["d_model"] or (n_layers is not None and lm.n_layers != n_layers):
            raise ValueError(f"bundle {self.name!r} was made for a model with d_model={self.model['d_model']}, "
                             f"{n_layers} layers ({self.model.get('name')}); {lm.name} has "
                             f"d_model={lm.d_model}, {lm.n_layers} layers")
        want = self.model.get("fingerprint")
        if strict and want and want != lm.fingerprint:
            raise ValueError(f"bundle {self.name!r} was made on {self.model.get('name')} with fingerprint {want}, "
                             f"but this model's fingerprint is {lm.fingerprint}; use the same weights, or pass "
                             "strict=False to apply it anyway")

    # ---- construction --------------------------------------------------------------------------------------------
    @staticmethod
    def model_info(lm: "LoadedModel") -> dict[str, Any]:
        return {"name": lm.name, "fingerprint": lm.fingerprint, "d_model": lm.d_model, "n_layers": lm.n_layers,
                "model_type": str(getattr(lm.config, "model_type", "unknown"))}

    @classmethod
    def from_vector(cls, vector: "SteeringVector", lm: "LoadedModel", *, name: str | None = None,
                    provenance: dict[str, Any] | None = None, eval: dict[str, Any] | None = None) -> "Bundle":
        """A one-operation ``add`` bundle from a ``SteeringVector`` (checked against ``lm``)."""
        vector.check_model(lm)
        op = BundleOp("add", [vector.site], "op0.vector", scale=vector.scale, scope=vector.scope)
        stored = vector.metadata.get("provenance")
        prov = {**(stored if isinstance(stored, dict) else {}), **(provenance or {})}
        return cls([op], {"op0.vector": vector.vector}, cls.model_info(lm),
                   name=name or str(vector.metadata.get("name", "steering-vector")),
                   provenance=_with_defaults(prov), eval=dict(eval or {}))

    @classmethod
    def from_direction(cls, direction: Tensor, lm: "LoadedModel", *, sites: list[str] | None = None,
                       scope: ScopeLike = "all", name: str = "ablation", provenance: dict[str, Any] | None = None,
                       eval: dict[str, Any] | None = None) -> "Bundle":
        """A one-operation ``ablate`` bundle (default sites as ``hooks.ablate``: every resid_pre/attn_out/mlp_out)."""
        if sites is None:
            sites = [hooks.Site(l, k).name for l in range(lm.n_layers) for k in ("resid_pre", "attn_out", "mlp_out")]
        op = BundleOp("ablate", list(sites), "op0.direction", scope=scope)
        return cls([op], {"op0.direction": direction}, cls.model_info(lm), name=name,
                   provenance=_with_defaults(provenance or {}), eval=dict(eval or {}))

    # ---- serialisation -------------------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "name": self.name, "model": self.model,
                "layer_convention": LAYER_CONVENTION, "operations": [op.to_json() for op in self.ops],
                "tensors": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in self.tensors.items()},
                "provenance": self.provenance, "eval": self.eval}

    def to_safetensors_bytes(self) -> bytes:
        """The whole bundle as one safetensors file (manifest in the header metadata)."""
        return st_save_bytes(self.tensors, metadata={METADATA_KEY: json.dumps(self.manifest(), sort_keys=True)})

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/tensors.safetensors`` then ``folder/manifest.json`` (each atomic); returns the folder."""
        folder = Path(folder)
        atomic.write_bytes(folder / TENSORS_NAME, self.to_safetensors_bytes())
        atomic.write_json(folder / MANIFEST_NAME, self.manifest())
        return folder

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], tensors: dict[str, Tensor]) -> "Bundle":
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a workbench steering bundle manifest (format="
                             f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, expected {FORMAT!r})")
        if manifest.get("version") != VERSION:
            raise ValueError(f"bundle format version {manifest.get('version')} is not supported (this is {VERSION})")
        declared = manifest.get("tensors", {})
        if set(declared) != set(tensors):
            raise ValueError(f"manifest lists tensors {sorted(declared)} but the file holds {sorted(tensors)}")
        for key, info in declared.items():
            if list(tensors[key].shape) != list(info.get("shape", [])):
                raise ValueError(f"tensor {key!r} has shape {list(tensors[key].shape)}, manifest says {info.get('shape')}")
            if tensors[key].dtype not in (torch.float32, torch.float16, torch.bfloat16):
                raise ValueError(f"tensor {key!r} has dtype {tensors[key].dtype}; bundles hold floating-point tensors")
        ops = [BundleOp.from_json(op) for op in manifest.get("operations", [])]
        return cls(ops, tensors, dict(manifest.get("model", {})), name=str(manifest.get("name", "bundle")),
                   provenance=dict(manifest.get("provenance", {})), eval=dict(manifest.get("eval", {})))

    @classmethod
    def from_safetensors_bytes(cls, data: bytes, manifest: dict[str, Any] | None = None) -> "Bundle":
        """Parse a bundle from safetensors bytes; the manifest comes from the header unless given."""
        try:
            tensors = st_load_bytes(data)
            header_meta = _safetensors_metadata(data)
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"not a readable safetensors file: {err}") from None
        if manifest is None:
            if METADATA_KEY not in header_meta:
                raise ValueError("this safetensors file carries no workbench bundle manifest; upload its "
                                 "manifest.json too, or export the bundle again with `workbench export`")
            manifest = json.loads(header_meta[METADATA_KEY])
        return cls.from_manifest(manifest, tensors)

    @classmethod
    def load(cls, path: str | Path) -> "Bundle":
        """Load a bundle folder (manifest.json + tensors.safetensors) or a single bundle ``.safetensors`` file."""
        path = Path(path)
        if path.is_dir():
            tensors_path, manifest_path = path / TENSORS_NAME, path / MANIFEST_NAME
            if not tensors_path.exists():
                raise FileNotFoundError(f"{tensors_path} is missing; a bundle folder holds {TENSORS_NAME} + "
                                        f"{MANIFEST_NAME}")
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
            return cls.from_safetensors_bytes(tensors_path.read_bytes(), manifest)
        if path.suffix == ".safetensors" and path.exists():
            return cls.from_safetensors_bytes(path.read_bytes())
        raise FileNotFoundError(f"{path} is neither a bundle folder nor a bundle .safetensors file")

    # ---- application ---------------------------------------------------------------------------------------------
    def hook_ops(self, lm: "LoadedModel") -> list[hooks.Op]:
        ops: list[hooks.Op] = []
        for op in self.ops:
            applier = _applier(op.operation)
            ops.extend(applier(lm, op, self.tensors))
        return ops

    def apply(self, lm: "LoadedModel", *, strict: bool = True, scale: float | None = None) -> hooks.HookSession:
        """Context manager (or ``.attach()``/``.remove()`` handle) applying every operation, thread-scoped.

        ``scale`` multiplies the stored scales of ``add`` and ``controller`` operations (1.0 = as exported).
        """
        self.check_model(lm, strict=strict)
        bundle = self if scale is None else self.scaled(scale)
        return hooks.intervene(lm, bundle.hook_ops(lm))

    def scaled(self, factor: float) -> "Bundle":
        ops = [BundleOp(op.operation, op.sites, op.tensor,
                        op.scale * factor if op.operation in ("add", "controller") else op.scale, op.scope, op.params)
               for op in self.ops]
        return Bundle(ops, self.tensors, self.model, self.name, self.provenance, self.eval)


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("file too short for safetensors")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ValueError("safetensors header length exceeds the file")
    header = json.loads(data[8:8 + header_len])
    return dict(header.get("__metadata__", {}) or {})


def _with_defaults(provenance: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        wb_version = version("interp-workbench")
    except PackageNotFoundError:
        wb_version = "unknown"
    return {"workbench_version": wb_version, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **provenance}


# ---- operation appliers ------------------------------------------------------------------------------------------
def register_operation(name: str, applier: Applier) -> None:
    """Register how a bundle operation becomes hook ops: ``applier(lm, op, tensors) -> list[hooks.Op]``."""
    if name not in OPERATIONS:
        raise ValueError(f"bundle operations are {OPERATIONS}; {name!r} is not one of them")
    _APPLIERS[name] = applier


def _applier(name: str) -> Applier:
    if name not in _APPLIERS and name == "controller":
        try:
            import steering.controller_bundle  # noqa: F401  (registers its applier on import)
        except ImportError as err:
            raise NotImplementedError("this bundle holds a controller, which needs steering.controller_bundle "
                                      f"(not importable here: {err})") from None
    if name not in _APPLIERS:
        raise NotImplementedError(f"no applier registered for bundle operation {name!r}")
    return _APPLIERS[name]


def _apply_add(lm: "LoadedModel", op: BundleOp, tensors: dict[str, Tensor]) -> list[hooks.Op]:
    return [hooks.Add(site=op.sites[0], vector=tensors[op.tensor], scale=op.scale, scope=op.scope)]


def _apply_ablate(lm: "LoadedModel", op: BundleOp, tensors: dict[str, Tensor]) -> list[hooks.Op]:
    return [hooks.Ablate(site=s, direction=tensors[op.tensor], scope=op.scope) for s in op.sites]


register_operation("add", _apply_add)
register_operation("ablate", _apply_ablate)
