"""Where the workbench keeps its caches (models, data, activation stores).

One environment variable moves everything: ``WORKBENCH_CACHE`` (default ``~/.cache/workbench``).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of every cache; created on first use."""
    configured = os.environ.get("WORKBENCH_CACHE", "").strip()  # empty counts as unset, never "the current folder"
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "workbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    path = cache_dir() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir() -> Path:
    """Registry archives (wheels, sdists) as pip downloaded them."""
    path = cache_dir() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path
