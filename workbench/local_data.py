"""User-supplied corpora from local files: chat conversations and plain documents (JSON / JSONL / text only).

For users with a bigger corpus than the offline registry data (e.g. an UltraChat or ShareGPT export, a C4 shard).
Accepted conversation rows, one per line in ``.jsonl`` or as a list in ``.json``:

- ``{"messages": [{"role": "user", "content": ...}, ...]}``   (OpenAI / Hugging Face chat format)
- ``{"conversations": [{"from": "human", "value": ...}, ...]}`` (ShareGPT format)
- ``{"instruction": ..., "input": ..., "output": ...}``         (Alpaca format)

Documents: ``.txt`` (one document per non-empty line) or JSON/JSONL rows with a ``"text"`` field. Nothing is
unpickled; a bad row raises an error naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.data import SHAREGPT_ROLES, to_chat

ROLES = ("system", "user", "assistant")


def _rows(path: str | Path) -> list[tuple[int, Any]]:
    """(line or index, parsed row) for a .json list or a .jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (give a .json or .jsonl file)")
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{i} is not valid JSON ({err.msg})") from None
        return rows
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path} must hold a JSON list of rows (or use .jsonl, one row per line)")
        return list(enumerate(data))
    raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .json or .jsonl")


def _messages(row: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
    if "messages" in row:
        turns = [(t.get("role"), t.get("content")) for t in row["messages"]]
    elif "conversations" in row:
        turns = [(SHAREGPT_ROLES.get(t.get("from"), t.get("from")), t.get("value")) for t in row["conversations"]]
    elif "instruction" in row:
        return to_chat({k: str(row.get(k) or "") for k in ("instruction", "input", "output")})
    else:
        raise ValueError(f"{where}: a conversation needs 'messages', 'conversations' or 'instruction'; got keys "
                         f"{sorted(row)}")
    messages = []
    for role, content in turns:
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"{where}: every turn needs a role in {ROLES} and string content; got {role!r}")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in messages):
        raise ValueError(f"{where}: conversation has no user turn")
    return messages


def load_conversations(path: str | Path) -> list[list[dict[str, str]]]:
    """Conversations (lists of ``{"role", "content"}``) from a local JSON/JSONL file; see the module docstring."""
    conversations = [_messages(row, f"{path}:{i}") for i, row in _rows(path)]
    if not conversations:
        raise ValueError(f"{path} holds no conversations")
    return conversations


def load_texts(path: str | Path) -> list[str]:
    """Plain documents from ``.txt`` (one per non-empty line) or JSON/JSONL rows with a ``"text"`` field."""
    path = Path(path)
    if path.suffix == ".txt" and path.is_file():
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = []
        for i, row in _rows(path):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{i}: each row needs a string 'text' field")
            texts.append(row["text"])
    if not texts:
        raise ValueError(f"{path} holds no documents")
    return texts
