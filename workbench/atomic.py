"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write to disk in the workbench goes through here, so a killed job never leaves a truncated artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; artifacts get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_artifact_manifest(path: str | os.PathLike[str], fmt: str, what: str) -> tuple[dict, Path, Path]:
    """Read the JSON half of a ``.json`` + ``.safetensors`` artifact pair and check its ``format`` field.

    Returns ``(meta, meta_path, tensor_path)``; ``what`` names the artifact in errors ("a steering vector").
    """
    base = Path(path).with_suffix("")
    meta_path, tensor_path = base.with_suffix(".json"), base.with_suffix(".safetensors")
    for p in (meta_path, tensor_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing; {what} is a .json + .safetensors pair")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != fmt:
        raise ValueError(f"{meta_path} is not {what} (format={meta.get('format')!r})")
    return meta, meta_path, tensor_path
