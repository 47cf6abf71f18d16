"""Shared app state: the model picker, models loaded once per process (``st.cache_resource``), the per-session
steering bundle, and artifact discovery for the capability pages. UI glue only; the math lives in the packages.

Every page starts with ``lm = state.sidebar()``. ``WORKBENCH_APP_MODEL`` picks the default model (tests use
``"tiny (test)"``); ``WORKBENCH_RUNS`` is the folder searched for trained artifacts (default: the repo's ``runs/``).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, MutableMapping, Sequence

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
TINY = "tiny (test)"
BUNDLE_KEY = "steering_bundle"
UPLOAD_ERROR_KEY = "upload_error"


def model_choices() -> list[str]:
    from workbench.models import CATALOG

    return [*CATALOG, TINY]


def default_model() -> str:
    from workbench.models import DEFAULT_MODEL

    wanted = os.environ.get("WORKBENCH_APP_MODEL", DEFAULT_MODEL)
    return wanted if wanted in model_choices() else DEFAULT_MODEL


@st.cache_resource(show_spinner="Loading model (once per server)...")
def get_model(name: str):
    """One shared instance per model name. Safe to share: interventions are per thread (workbench.hooks)."""
    from workbench.models import load_model, tiny_model

    if name == TINY:
        return tiny_model()
    return load_model(name)


def sidebar():
    """Model picker in the sidebar; returns the picked ``LoadedModel``. A model change drops the session's bundle."""
    choices = model_choices()
    if "model_name" not in st.session_state:
        st.session_state["model_name"] = default_model()
    name = st.sidebar.selectbox("Model", choices, key="model_name",
                                help="Offline models from the catalog; 'tiny (test)' is a random 2-layer model.")
    lm = get_model(name)
    st.sidebar.caption(f"{lm.n_layers} layers · d_model {lm.d_model} · {lm.device} · fingerprint `{lm.fingerprint}`")
    bundle = st.session_state.get(BUNDLE_KEY)
    if bundle is not None and bundle.model.get("d_model") != lm.d_model:
        st.session_state.pop(BUNDLE_KEY)
    if st.session_state.get(BUNDLE_KEY) is not None:
        st.sidebar.caption(f"Active bundle: **{st.session_state[BUNDLE_KEY].name}**")
    return lm


def accept_upload(session: MutableMapping[str, Any], files: Sequence[tuple[str, bytes]], lm) -> str | None:
    """Validate an upload; on success store it as the session's bundle, on failure change nothing.

    Returns the error message (None on success).
    """
    from steering.upload import UploadError, parse_upload

    try:
        bundle = parse_upload(files, lm)
    except UploadError as err:
        return str(err)
    session[BUNDLE_KEY] = bundle
    return None


# ---- capabilities built elsewhere: optional imports and artifact discovery -------------------------------------------
def optional_import(module: str):
    """The module, or None when that capability is not installed/importable in this checkout."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a half-landed package may raise anything on import
        return None


def artifact_roots() -> list[Path]:
    root = Path(os.environ["WORKBENCH_RUNS"]) if os.environ.get("WORKBENCH_RUNS") else REPO / "runs"
    return [root] if root.is_dir() else []


def find_artifacts(kinds: Sequence[str], lm=None, names: Sequence[str] = ("cfg.json", "manifest.json")) -> list[Path]:
    """Artifact folders under ``runs/<kind>/`` holding one of ``names``; with ``lm``, only those whose JSON files name
    this model's fingerprint (or no fingerprint at all)."""
    found: set[Path] = set()
    for root in artifact_roots():
        for kind in kinds:
            base = root / kind
            if not base.is_dir():
                continue
            for name in names:
                for marker in base.rglob(name):
                    if lm is None or _fingerprint_ok(marker.parent, lm.fingerprint):
                        found.add(marker.parent)
    return sorted(found)


def _fingerprint_ok(folder: Path, fingerprint: str) -> bool:
    for path in sorted(folder.glob("*.json"))[:8]:
        seen = _find_key(read_json(path), ("model_fingerprint", "fingerprint", "target_fingerprint",
                                           "base_fingerprint"))
        if seen is not None and seen != fingerprint:
            return False
    return True


def _find_key(data: Any, keys: Sequence[str]) -> Any:
    if isinstance(data, dict):
        for key in keys:
            if isinstance(data.get(key), str):
                return data[key]
        for value in data.values():
            found = _find_key(value, keys)
            if found is not None:
                return found
    return None


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def train_first(what: str, command: str, module: str | None = None) -> None:
    """The honest empty state: nothing trained for this model yet; show how to make one."""
    if module is not None and optional_import(module) is None:
        st.warning(f"`{module}` is not available in this checkout yet; this page fills in once it lands.")
    st.info(f"No {what} for this model yet. Train one first:")
    st.code(command, language="bash")


def pick_artifact(what: str, kinds: Sequence[str], lm, command: str, *, module: str | None = None,
                  names: Sequence[str] = ("cfg.json", "manifest.json"), key: str) -> Path | None:
    """Selectbox over this model's artifacts of one kind, or the 'train one first' note (returns None)."""
    if module is not None and optional_import(module) is None:
        train_first(what, command, module)
        return None
    found = find_artifacts(kinds, lm, names)
    if not found:
        train_first(what, command)
        return None
    labels = {str(p.relative_to(p.parents[1])) if len(p.parents) > 1 else str(p): p for p in found}
    return labels[st.selectbox(what.capitalize(), list(labels), key=key)]


def model_arg(lm) -> str:
    """The ``--model`` value to suggest in commands (the tiny test model has no name to pass)."""
    return "smollm2-135m-instruct" if lm.name.startswith("tiny") else lm.name


def comparison(rows) -> None:
    """Side-by-side unsteered / steered generations (``steering.contrast.Comparison`` rows)."""
    for row in rows:
        st.markdown(f"**{row.prompt}**")
        left, right = st.columns(2)
        left.caption("unsteered")
        left.code(row.unsteered, language=None, wrap_lines=True)
        right.caption("steered")
        right.code(row.steered, language=None, wrap_lines=True)
