"""The README's Python example runs as written (on the tiny model, with a smaller token budget)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.integration  # needs `workbench data fetch` (C4)
def test_readme_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    code = (code.replace('load_model("smollm2-135m-instruct")', 'load_model("tiny")')
                .replace("resid_post.12", "resid_post.1").replace("blocks.12.", "blocks.1.")
                .replace("max_tokens=200_000", "max_tokens=2_000").replace('"runs/c4-l12"', repr(str(tmp_path / "s"))))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
