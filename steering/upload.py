"""Validate user-uploaded steering files before anything uses them.

Accepted: a bundle ``.safetensors`` (manifest in its header), a bundle ``manifest.json`` + ``.safetensors`` pair, a
``SteeringVector`` ``.json`` + ``.safetensors`` pair, or a llama.cpp control-vector ``.gguf``. Nothing else: no
pickle, no torch.load. Every check (size, extension, parse, shape, dtype, finite values, model width/depth and
fingerprint) happens in memory; a failure raises ``UploadError`` with what was wrong and changes nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

from safetensors.torch import load as st_load_bytes

from steering import gguf_control
from steering.bundle import FORMAT, Bundle, BundleOp

if TYPE_CHECKING:
    from workbench.models import LoadedModel

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
ALLOWED_SUFFIXES = (".safetensors", ".json", ".gguf")


class UploadError(ValueError):
    """An uploaded file was rejected; the message says why and what to upload instead."""


def parse_upload(files: Sequence[tuple[str, bytes]], lm: "LoadedModel", *, max_bytes: int = MAX_UPLOAD_BYTES,
                 strict: bool = True) -> Bundle:
    """``files`` = [(file name, content)] -> a validated ``Bundle`` that fits ``lm`` (fingerprint checked if strict)."""
    if not files:
        raise UploadError("no file uploaded")
    if len(files) > 2:
        raise UploadError(f"upload one bundle: at most 2 files (.json + .safetensors), got {len(files)}")
    by_suffix: dict[str, tuple[str, bytes]] = {}
    for name, data in files:
        suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if suffix not in ALLOWED_SUFFIXES:
            raise UploadError(f"{name}: only {', '.join(ALLOWED_SUFFIXES)} files are accepted")
        if len(data) > max_bytes:
            raise UploadError(f"{name} is {_size(len(data))}; the upload size limit is {_size(max_bytes)}")
        if suffix in by_suffix:
            raise UploadError(f"two {suffix} files uploaded; upload one bundle at a time")
        by_suffix[suffix] = (name, data)
    try:
        bundle = _parse(by_suffix, lm)
        bundle.check_model(lm, strict=strict)
    except UploadError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise UploadError(f"rejected: {err}") from None
    return bundle


def _parse(by_suffix: dict[str, tuple[str, bytes]], lm: "LoadedModel") -> Bundle:
    if ".gguf" in by_suffix:
        if len(by_suffix) != 1:
            raise UploadError("a .gguf control vector is uploaded on its own")
        return gguf_control.to_bundle(gguf_control.read_bytes(by_suffix[".gguf"][1]), lm)
    if ".safetensors" not in by_suffix:
        raise UploadError("a .json manifest alone holds no tensors; upload it with its .safetensors file")
    tensors_bytes = by_suffix[".safetensors"][1]
    if ".json" not in by_suffix:
        return Bundle.from_safetensors_bytes(tensors_bytes)
    meta = json.loads(by_suffix[".json"][1].decode())
    if isinstance(meta, dict) and meta.get("format") == FORMAT:
        return Bundle.from_safetensors_bytes(tensors_bytes, manifest=meta)
    if isinstance(meta, dict) and meta.get("format") == "workbench.steering_vector":
        return _vector_pair(meta, tensors_bytes, lm)
    raise UploadError(f"{by_suffix['.json'][0]} is neither a bundle manifest ({FORMAT}) nor a steering vector")


def _vector_pair(meta: dict, tensors_bytes: bytes, lm: "LoadedModel") -> Bundle:
    from steering.vector import SteeringVector

    try:
        tensors = st_load_bytes(tensors_bytes)
    except Exception as err:  # safetensors' own error types
        raise UploadError(f"not a readable safetensors file: {err}") from None
    if set(tensors) != {"vector"}:
        raise UploadError(f"a steering vector file holds one tensor 'vector', found {sorted(tensors)}")
    vec = SteeringVector(vector=tensors["vector"], site=meta["site"], scale=float(meta.get("scale", 1.0)),
                         scope=meta.get("scope", "all"), model_fingerprint=meta.get("model_fingerprint"))
    if vec.vector.shape[0] != meta.get("d_model", vec.vector.shape[0]):
        raise UploadError(f"vector length {vec.vector.shape[0]} disagrees with its JSON d_model {meta.get('d_model')}")
    model = {**Bundle.model_info(lm), "fingerprint": vec.model_fingerprint, "d_model": int(vec.vector.shape[0])}
    op = BundleOp("add", [vec.site], "op0.vector", scale=vec.scale, scope=vec.scope)
    return Bundle([op], {"op0.vector": vec.vector}, model, name="uploaded-vector",
                  provenance={"source": "upload", **(meta.get("metadata", {}).get("provenance", {}) or {})})


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes} bytes"
