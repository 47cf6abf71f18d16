"""Steering for deployment: write bundles (safetensors + manifest, optional llama.cpp GGUF) and apply them to a plain
transformers model.

>>> from transformers import AutoModelForCausalLM, AutoTokenizer                     # doctest: +SKIP
>>> model = AutoModelForCausalLM.from_pretrained(folder)                              # doctest: +SKIP
>>> with load_into(model, "runs/bundles/happy"):                                      # doctest: +SKIP
...     model.generate(...)                                                           # steered, this thread only
>>> handle = load_into(model, "runs/bundles/happy").attach(); ...; handle.remove()   # doctest: +SKIP

Interventions go through ``workbench.hooks``: they are thread-scoped (another thread using the same model is not
steered), removed on exit, and never touch the weights.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedTokenizerBase

from steering import gguf_control
from steering.bundle import LAYER_CONVENTION, Bundle, BundleOp, register_operation
from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["Bundle", "BundleOp", "LAYER_CONVENTION", "export", "export_gguf", "import_gguf", "load_bundle",
           "load_into", "register_operation"]

GGUF_NAME = "control_vector.gguf"


def export(bundle: Bundle, folder: str | Path, *, gguf: bool | None = None,
           allow_scope_change: bool = False) -> dict[str, Path]:
    """Write ``folder/{manifest.json, tensors.safetensors}`` and, for pure additions, ``folder/control_vector.gguf``.

    ``gguf=None`` writes the GGUF when the bundle can be expressed as a llama.cpp control vector; ``True`` raises
    when it cannot; ``False`` skips it. Returns the written paths by kind.
    """
    folder = Path(folder)
    written = {"bundle": bundle.save(folder)}
    if gguf is not False:
        try:
            cv = gguf_control.from_bundle(bundle, allow_scope_change=allow_scope_change)
        except ValueError as err:
            if gguf:
                raise
            log.info("no GGUF control vector for %s: %s", bundle.name, err)
        else:
            written["gguf"] = gguf_control.write(cv, folder / GGUF_NAME)
    return written


def export_gguf(bundle: Bundle, path: str | Path, *, allow_scope_change: bool = False) -> Path:
    """Only the llama.cpp control vector (see ``steering.gguf_control``)."""
    return gguf_control.write(gguf_control.from_bundle(bundle, allow_scope_change=allow_scope_change), path)


def import_gguf(path: str | Path, lm: "LoadedModel | None" = None) -> Bundle:
    """A llama.cpp control vector as a bundle of additions at ``blocks.{k}.hook_resid_post``."""
    return gguf_control.to_bundle(gguf_control.read(path), lm)


def load_bundle(path: str | Path | Bundle) -> Bundle:
    """A bundle folder, a bundle ``.safetensors``, a control-vector ``.gguf``, or a ``SteeringVector`` ``.json``."""
    if isinstance(path, Bundle):
        return path
    path = Path(path)
    if path.suffix == ".gguf":
        return import_gguf(path)
    if path.suffix == ".json" and path.name != "manifest.json":
        return _vector_bundle(path)
    if path.name == "manifest.json":
        path = path.parent
    return Bundle.load(path)


def _vector_bundle(path: Path) -> Bundle:
    from steering.vector import SteeringVector

    vec = SteeringVector.load(path)
    model = {"name": vec.metadata.get("model_name", "unknown"), "fingerprint": vec.model_fingerprint,
             "d_model": int(vec.vector.shape[0]), "n_layers": vec.metadata.get("n_layers"),
             "model_type": vec.metadata.get("model_type", "unknown")}
    op = BundleOp("add", [vec.site], "op0.vector", scale=vec.scale, scope=vec.scope)
    return Bundle([op], {"op0.vector": vec.vector}, model, name=path.stem, provenance={"source": str(path)})


_FINGERPRINTS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


class _NoTokenizer(PreTrainedTokenizerBase):
    """Stand-in when applying a bundle needs no tokenizer (hooks never tokenise); it cannot encode anything."""

    pad_token = eos_token = "<pad>"
    chat_template = None

    def __init__(self) -> None:  # deliberately skips the base initialiser: no vocabulary, no files
        pass


def as_loaded(model: Any, tokenizer: Any = None) -> "LoadedModel":
    """A ``LoadedModel`` view of a transformers causal LM (no copy); LoadedModels pass through."""
    from workbench.models import LoadedModel

    if isinstance(model, LoadedModel):
        return model
    if not hasattr(model, "config") or not hasattr(model, "forward"):
        raise TypeError(f"load_into needs a transformers causal LM or a workbench LoadedModel, not "
                        f"{type(model).__name__}")
    name = str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
    lm = LoadedModel(model=model, tokenizer=tokenizer if tokenizer is not None else _NoTokenizer(), name=name,
                     _fingerprint=_FINGERPRINTS.get(model))
    return lm


def load_into(model: Any, bundle: str | Path | Bundle, tokenizer: Any = None, *, strict: bool = True,
              scale: float | None = None) -> hooks.HookSession:
    """Apply a bundle to ``model`` (a plain transformers model or a ``LoadedModel``).

    Returns a ``HookSession``: use it as a context manager, or ``.attach()`` it and ``.remove()`` later. Checks the
    width and depth always and the model fingerprint when ``strict`` (hashing a plain model's weights takes about a
    second per 100M parameters, once per wrapped model). ``scale`` multiplies the exported scale of additions.
    """
    lm = as_loaded(model, tokenizer)
    session = load_bundle(bundle).apply(lm, strict=strict, scale=scale)
    if lm._fingerprint is not None and lm.model is model:
        _FINGERPRINTS[model] = lm._fingerprint  # hashed once per model object (weights are assumed unchanged)
    return session
