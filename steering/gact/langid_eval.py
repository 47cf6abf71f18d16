"""Accuracy of the language identifier (``langid``) on labelled code it was not written against.

Labelled snippets come from two offline sources: pygments' example files (folder name = language; C, C++, Java,
Julia, Python, plus other languages that must *not* be called one of the four) cut into windows of ``lines`` lines,
as model output is cut at a token budget; and HumanEval's Python prompts + canonical solutions. Windows with fewer
than ``min_code_lines`` lines that are not blank or comments are skipped (licence headers and doc blocks: nothing
to identify).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from steering.gact import langid
from workbench import data

FOLDERS = {"python": "python", "python2": "python", "cpp": "cpp", "c": "c", "java": "java", "julia": "julia",
           "js": "javascript", "javascript": "javascript", "rust": "rust", "go": "go", "fortran": "fortran",
           "fortranfixed": "fortran", "matlab": "matlab", "r": "r", "rconsole": None}
"""pygments example folder -> our label (None: skipped)."""
TARGETS = ("python", "cpp", "java", "julia")


@dataclass
class LangidReport:
    accuracy: float
    n: int
    accuracy_targets: float
    """Accuracy on the snippets labelled with one of ``TARGETS`` (the languages G-ACT measures)."""
    per_language: dict[str, dict[str, float]] = field(default_factory=dict)
    """label -> {"n", "accuracy"} (recall of that label)."""
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "accuracy_python_cpp_java_julia": self.accuracy_targets,
                "per_language": self.per_language,
                "confusion": self.confusion, "sources": self.sources,
                "protocol": "pygments example files cut into windows + HumanEval prompt+solution; label = folder"}


_COMMENT = re.compile(r"^\s*(//|#(?!include|define|if|pragma)|!|/?\*|%|--|;|[Cc](\s|$)|[Cc][A-Z]\b|\"\"\"|\'\'\')")


def windows(text: str, lines: int, min_code_lines: int) -> list[str]:
    rows = text.splitlines()
    out = []
    for start in range(0, len(rows), lines):
        chunk = rows[start:start + lines]
        if sum(1 for r in chunk if r.strip() and not _COMMENT.match(r)) >= min_code_lines:
            out.append("\n".join(chunk))
    return out


def labelled_snippets(*, lines: int = 12, min_code_lines: int = 4, max_per_file: int = 6,
                      max_humaneval: int = 60) -> list[tuple[str, str, str]]:
    """(label, code, source) triples; needs the optional pygments source (``workbench data fetch pygments``)."""
    items: list[tuple[str, str, str]] = []
    for example in data.load_code_examples():
        label = FOLDERS.get(example["language"])
        if label is None:
            continue
        for chunk in windows(example["text"], lines, min_code_lines)[:max_per_file]:
            items.append((label, chunk, "pygments"))
    for problem in data.load_humaneval()[:max_humaneval]:
        items.append(("python", problem["prompt"] + problem["canonical_solution"], "humaneval"))
    if not items:
        raise ValueError("no labelled code found; run `workbench data fetch pygments`")
    return items


def evaluate_langid(snippets: list[tuple[str, str, str]] | None = None) -> LangidReport:
    """Accuracy of ``langid.classify`` (content only, no fence tag) on labelled snippets."""
    snippets = labelled_snippets() if snippets is None else snippets
    confusion: dict[str, Counter] = {}
    for label, code, _ in snippets:
        confusion.setdefault(label, Counter())[langid.classify(code).label] += 1
    n = len(snippets)
    correct = sum(c[label] for label, c in confusion.items())
    per = {label: {"n": sum(c.values()), "accuracy": c[label] / sum(c.values())} for label, c in confusion.items()}
    in_targets = [label for label, _, _ in snippets if label in TARGETS]
    targets = (sum(confusion[t][t] for t in set(in_targets)) / len(in_targets)) if in_targets else float("nan")
    return LangidReport(correct / n, n, targets, per, {k: dict(v) for k, v in confusion.items()},
                        dict(Counter(source for _, _, source in snippets)))
