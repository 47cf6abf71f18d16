"""llama.cpp control vectors (GGUF): export a bundle's additions, import a control vector back as a bundle.

Format, as llama.cpp reads it (``common_control_vector_load_one`` in ``common/common.cpp``; the same as
``llama-cvector-generator`` and repeng write):

* ``general.architecture = "controlvector"``, ``controlvector.model_hint`` (str) and ``controlvector.layer_count``
  (int32). llama.cpp's loader ignores the metadata; they are for people and tools.
* One 1-D F32 tensor ``direction.{k}`` of length n_embd per steered layer, ``k >= 1``: llama.cpp rejects
  ``direction.0``. Duplicate ``k`` (and several files) are summed, each times its ``--control-vector-scaled`` factor.
* ``direction.{k}`` is added to ``l_out`` of block ``k`` (0-based), i.e. right after the block's final residual add,
  at **every** position, prompt included. In workbench terms: ``blocks.{k}.hook_resid_post`` with scope ``"all"``
  (= ``blocks.{k+1}.hook_resid_pre``). The output of block 0 cannot be steered.

The scale is baked into the tensors (llama.cpp's own scale factor then defaults to 1). The full workbench manifest
travels along in ``workbench.manifest`` so an exported file imports back with its fingerprint and provenance.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from steering.bundle import Bundle, BundleOp
from workbench import atomic, hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)

ARCH = "controlvector"
MANIFEST_KEY = "workbench.manifest"


@dataclass
class ControlVector:
    """``directions[k]`` is llama.cpp's ``direction.{k}`` (added to the output of block k, k >= 1)."""

    directions: dict[int, Tensor]
    model_hint: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The workbench manifest when the file came from here (else empty)."""

    def __post_init__(self) -> None:
        if not self.directions:
            raise ValueError("a control vector needs at least one direction.{k} tensor")
        widths = set()
        for k, vec in list(self.directions.items()):
            if not isinstance(k, int) or k < 1:
                raise ValueError(f"llama.cpp control-vector layers start at 1 (direction.0 is rejected); got {k}")
            vec = torch.as_tensor(vec).detach().float().cpu()
            if vec.ndim != 1:
                raise ValueError(f"direction.{k} must be 1-D, got shape {tuple(vec.shape)}")
            if not torch.isfinite(vec).all():
                raise ValueError(f"direction.{k} contains NaN or inf")
            widths.add(vec.shape[0])
            self.directions[k] = vec
        if len(widths) != 1:
            raise ValueError(f"all direction tensors must have the same length (n_embd); got {sorted(widths)}")

    @property
    def n_embd(self) -> int:
        return next(iter(self.directions.values())).shape[0]

    @property
    def layer_count(self) -> int:
        return len(self.directions)


def llama_cpp_layer(site: str, n_layers: int | None) -> int:
    """llama.cpp control-vector index ``k`` for a workbench site (resid_post.l -> l; resid_pre.l -> l - 1)."""
    parsed = hooks.parse_site(site)
    layer = parsed.layer
    if n_layers is not None and -n_layers <= layer < 0:
        layer %= n_layers
    if layer < 0 or (n_layers is not None and layer >= n_layers):
        raise ValueError(f"{site} is outside a model with {n_layers or 'an unknown number of'} layers")
    if parsed.kind == "resid_post":
        k = layer
    elif parsed.kind == "resid_pre":
        k = layer - 1
    else:
        raise ValueError(f"llama.cpp control vectors add to the residual stream after a block (resid_post); "
                         f"{parsed.name} cannot be expressed. Recompute the vector at a resid_post/resid_pre site")
    if k < 1:
        raise ValueError(f"{parsed.name} is block 0's output or the embeddings; llama.cpp cannot steer there "
                         "(direction.0 is rejected). Use a site at layer >= 1 (resid_post) or >= 2 (resid_pre)")
    return k


def from_bundle(bundle: Bundle, *, allow_scope_change: bool = False) -> ControlVector:
    """The bundle's ``add`` operations as one control vector (``scale * vector`` summed per llama.cpp layer)."""
    n_layers = bundle.model.get("n_layers")
    directions: dict[int, Tensor] = {}
    for op in bundle.ops:
        if op.operation != "add":
            raise ValueError(f"llama.cpp control vectors can only add; this bundle has a {op.operation} operation. "
                             "Export the bundle (safetensors) and apply it with steering.export.load_into instead")
        if op.scope != "all":
            if not allow_scope_change:
                raise ValueError(f"operation scope is {op.scope!r} but llama.cpp adds at every position; pass "
                                 "allow_scope_change=True (CLI: --allow-scope-change) to export it anyway")
            log.warning("exporting a %r-scoped addition as an every-position llama.cpp control vector", op.scope)
        k = llama_cpp_layer(op.sites[0], n_layers)
        delta = op.scale * bundle.tensors[op.tensor]
        directions[k] = directions[k] + delta if k in directions else delta
    return ControlVector(directions, model_hint=str(bundle.model.get("model_type", "")), metadata=bundle.manifest())


def to_bundle(cv: ControlVector, lm: "LoadedModel | None" = None, *, name: str | None = None) -> Bundle:
    """A bundle of ``add`` operations at ``blocks.{k}.hook_resid_post`` (scale 1, scope all) from a control vector.

    Model facts come from the embedded workbench manifest when present, else from ``lm`` (without a fingerprint:
    a foreign file cannot say which weights it was made on), else from the file alone.
    """
    ops, tensors = [], {}
    for i, k in enumerate(sorted(cv.directions)):
        key = f"direction.{k}"
        tensors[key] = cv.directions[k]
        ops.append(BundleOp("add", [hooks.Site(k, "resid_post").name], key, scale=1.0, scope="all"))
    manifest = cv.metadata or {}
    if manifest.get("model"):
        model = dict(manifest["model"])
    elif lm is not None:
        model = {**Bundle.model_info(lm), "fingerprint": None}
    else:
        model = {"name": cv.model_hint or "unknown", "fingerprint": None, "d_model": cv.n_embd,
                 "n_layers": None, "model_type": cv.model_hint or "unknown"}
    provenance = dict(manifest.get("provenance", {}))
    provenance.setdefault("imported_from", "llama.cpp control vector (GGUF)")
    return Bundle(ops, tensors, model, name=name or str(manifest.get("name", "control-vector")),
                  provenance=provenance, eval=dict(manifest.get("eval", {})))


def write(cv: ControlVector, path: str | Path) -> Path:
    """Write a llama.cpp-readable control-vector GGUF atomically."""
    import gguf

    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), ARCH)  # also writes general.architecture
        writer.add_string(f"{ARCH}.model_hint", cv.model_hint)
        writer.add_int32(f"{ARCH}.layer_count", cv.layer_count)
        if cv.metadata:
            writer.add_string(MANIFEST_KEY, json.dumps(cv.metadata, sort_keys=True))
        for k in sorted(cv.directions):
            writer.add_tensor(f"direction.{k}", cv.directions[k].numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def read(path: str | Path) -> ControlVector:
    """Read a control-vector GGUF (ours, llama-cvector-generator's or repeng's); validates like llama.cpp does."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # gguf raises ValueError/struct errors on junk
        raise ValueError(f"{path} is not a readable GGUF file: {err}") from None
    fields = {name: fld for name, fld in reader.fields.items()}
    arch = _field(fields, "general.architecture")
    if arch != ARCH:
        raise ValueError(f"{path} is a GGUF with architecture {arch!r}, not a control vector ({ARCH!r}); "
                         "is this a model file?")
    directions: dict[int, Tensor] = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction" or not index.isdigit():
            raise ValueError(f"unexpected tensor {tensor.name!r} in {path}; control vectors hold direction.<k>")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ValueError(f"{tensor.name} has type {tensor.tensor_type.name}; llama.cpp needs F32")
        vec = torch.from_numpy(np.array(tensor.data, dtype=np.float32).reshape(-1))
        k = int(index)
        directions[k] = directions[k] + vec if k in directions else vec  # duplicates are summed, as in llama.cpp
    manifest_text = _field(fields, MANIFEST_KEY)
    metadata = json.loads(manifest_text) if manifest_text else {}
    return ControlVector(directions, model_hint=_field(fields, f"{ARCH}.model_hint") or "", metadata=metadata)


def read_bytes(data: bytes) -> ControlVector:
    """``read`` for an in-memory upload (via a private temporary file)."""
    with tempfile.NamedTemporaryFile(suffix=".gguf") as handle:
        handle.write(data)
        handle.flush()
        return read(handle.name)


def _field(fields: dict[str, Any], name: str) -> Any:
    fld = fields.get(name)
    if fld is None:
        return None
    value = fld.contents()
    return value.decode() if isinstance(value, (bytes, bytearray)) else value


def to_bytes(cv: ControlVector) -> bytes:
    """The GGUF file as bytes (for downloads), via a private temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        return write(cv, Path(folder) / "control_vector.gguf").read_bytes()
