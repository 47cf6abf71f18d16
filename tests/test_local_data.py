"""User corpora from local JSON/JSONL/text files: every accepted row format, and errors that name file and line."""

from __future__ import annotations

import json

import pytest

from workbench.local_data import load_conversations, load_texts


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_three_conversation_formats_give_the_same_messages(tmp_path):
    want = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    rows = [{"messages": want},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
            {"instruction": "Hi", "input": "", "output": "Hello!"}]
    got = load_conversations(write_jsonl(tmp_path / "c.jsonl", rows))
    assert got == [want, want, want]
    (tmp_path / "c.json").write_text(json.dumps(rows))
    assert load_conversations(tmp_path / "c.json") == got


@pytest.mark.parametrize("row, match", [
    ({"text": "no turns"}, "needs 'messages'"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "no user turn"),
    ("a bare string", "expected an object"),
])
def test_bad_rows_name_the_line(tmp_path, row, match):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "ok"}]}, row])
    with pytest.raises(ValueError, match=match) as err:
        load_conversations(path)
    assert "bad.jsonl:2" in str(err.value)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_conversations(tmp_path / "missing.jsonl")
    (tmp_path / "x.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_conversations(tmp_path / "x.pkl")
    (tmp_path / "broken.jsonl").write_text('{"messages": [\n')
    with pytest.raises(ValueError, match="broken.jsonl:1 is not valid JSON"):
        load_conversations(tmp_path / "broken.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no conversations"):
        load_conversations(tmp_path / "empty.jsonl")


def test_texts_from_txt_and_jsonl(tmp_path):
    (tmp_path / "d.txt").write_text("first doc\n\nsecond doc\n")
    assert load_texts(tmp_path / "d.txt") == ["first doc", "second doc"]
    assert load_texts(write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b"}])) == ["a", "b"]
    with pytest.raises(ValueError, match="'text' field"):
        load_texts(write_jsonl(tmp_path / "e.jsonl", [{"body": "a"}]))
