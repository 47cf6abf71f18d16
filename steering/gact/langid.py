"""Which programming language a piece of generated text is written in.

Pygments' ``analyse_text`` is too weak for short, truncated model output, so this is a small weighted-evidence
classifier: each language has regular-expression features (``std::``, ``System.out.println``, ``def f(...):``,
``::Float64``, ...) with hand-set weights; a language's score is ``sum(weight * log1p(matches))``, and a markdown
fence tag (```` ```cpp ````) adds strong evidence. Accuracy is measured on held-out labelled snippets (pygments'
example files cut into windows, HumanEval solutions, and hand-written snippets): see ``bench/gact.py`` and
``tests/test_gact_langid.py``.

Text with no code in it gives ``Detection(language=None, has_code=False)``: callers count it as "no code" (never as
any language) — the documented fallback for prompts that yield no code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

LABELS = ("python", "cpp", "c", "java", "julia", "javascript", "rust", "go", "fortran", "matlab", "r")

_M = re.MULTILINE
# (language, weight, pattern). Several languages may share a pattern with different weights.
_FEATURES: list[tuple[str, float, re.Pattern]] = [
    (lang, w, re.compile(p, flags)) for lang, w, p, flags in [
        # python
        ("python", 3.0, r"^\s*def \w+\s*\(.*\)\s*(->\s*[\w\[\], .]+)?:\s*(#.*)?$", _M),
        ("python", 3.0, r"^\s*from [\w.]+ import ", _M),
        ("python", 2.0, r"^\s*import [\w.]+(\s+as \w+)?\s*$", _M),
        ("python", 2.5, r"^\s*(if|elif|else|for|while|with|try|except|class)\b[^{;]*:\s*(#.*)?$", _M),
        ("python", 2.0, r"\bself\.", 0),
        ("python", 3.0, r"\belif\b", 0),
        ("python", 2.0, r"\b(np|numpy|scipy|plt|math)\.\w+", 0),
        ("python", 1.5, r"\bin range\(", 0),
        ("python", 1.0, r"\b(None|True|False)\b", 0),
        ("python", 2.0, r'"""|\'\'\'', 0),
        ("python", 3.0, r"__name__|__init__", 0),
        ("python", 1.0, r"\blambda \w*:", 0),
        ("python", 1.0, r"\blen\(", 0),
        ("python", 1.0, r"^\s*return\b[^;]*$", _M),
        ("python", 1.5, r"\bprint\(f?[\"']", 0),
        ("python", 1.0, r"\[\s*\w+ for \w+ in ", 0),
        # C++
        ("cpp", 4.0, r"^\s*#\s*include\s*<(iostream|vector|cmath|string|algorithm|random|array|fstream|sstream|"
                     r"iomanip|chrono|numeric|functional|map|unordered_map|complex|memory|utility|limits|cstdlib|"
                     r"cstdio|cassert|queue|thread|tuple|set)>", _M),
        ("cpp", 3.0, r"\bstd::", 0),
        ("cpp", 3.0, r"\b(cout|cerr|cin|endl)\b", 0),
        ("cpp", 4.0, r"\busing namespace\b", 0),
        ("cpp", 3.0, r"\btemplate\s*<", 0),
        ("cpp", 2.5, r"\b(vector|array|map|unique_ptr|shared_ptr|pair|complex)\s*<", 0),
        ("cpp", 3.0, r"\bnullptr\b|\bconstexpr\b", 0),
        ("cpp", 2.0, r"\bconst\s+[\w:<>]+\s*&", 0),
        ("cpp", 1.0, r"\bauto\b", 0),
        ("cpp", 1.0, r"\w::\w", 0),
        ("cpp", 1.5, r"^\s*(int|double|float|void|bool|auto)\s+\w+\s*\([^)]*\)\s*(const\s*)?\{?\s*$", _M),
        ("cpp", 1.0, r"^\s*int main\s*\(", _M),
        ("cpp", 0.5, r";\s*$", _M),
        ("cpp", 0.5, r"^\s*#\s*include\s*<\w+\.h>", _M),
        ("cpp", 1.0, r"\b(double|int|float|size_t)\s+\w+\s*(=|;|\[)", 0),
        ("cpp", 0.8, r"\bfor\s*\(\s*(int|size_t|auto|unsigned)\b", 0),
        # C
        ("c", 3.0, r"^\s*#\s*include\s*<(stdio|stdlib|math|string|time|assert|stdint|stdbool)\.h>", _M),
        ("c", 2.0, r"\b(printf|scanf|fprintf|malloc|calloc|free|puts)\s*\(", 0),
        ("c", 1.1, r"^\s*int main\s*\(", _M),
        ("c", 1.1, r"\b(double|int|float|size_t)\s+\w+\s*(=|;|\[)", 0),
        ("c", 0.6, r";\s*$", _M),
        ("c", 1.6, r"^\s*(int|double|float|void)\s+\w+\s*\([^)]*\)\s*\{?\s*$", _M),
        ("c", 0.9, r"\bfor\s*\(\s*(int|size_t|unsigned)\b", 0),
        ("c", 1.0, r"^\s*#\s*define\b", _M),
        # Java
        ("java", 4.0, r"\bpublic\s+(final\s+)?class\b", 0),
        ("java", 5.0, r"\bpublic static void main\b", 0),
        ("java", 5.0, r"\bSystem\.(out|err)\.print", 0),
        ("java", 5.0, r"^\s*import java[x]?\.", _M),
        ("java", 2.5, r"\b(public|private|protected)\s+(static\s+)?(final\s+)?[\w<>\[\]]+\s+\w+\s*\(", 0),
        ("java", 3.0, r"\b(String|double|int|long|float|boolean)\[\]", 0),
        ("java", 3.0, r"@Override\b", 0),
        ("java", 2.0, r"\bnew \w+(<[\w, ]*>)?\s*[\[(]", 0),
        ("java", 2.0, r"\bMath\.\w+\(", 0),
        ("java", 1.5, r"\.length\b", 0),
        ("java", 2.0, r"\b(ArrayList|HashMap|List|Map|Random|Scanner)<?", 0),
        ("java", 0.5, r";\s*$", _M),
        ("java", 1.0, r"\bfor\s*\(\s*(int|long)\b", 0),
        # Julia
        ("julia", 2.5, r"^\s*function \w+[!]?\s*\([^)]*\)\s*(::\s*\w+)?\s*$", _M),
        ("julia", 1.5, r"^\s*end\s*$", _M),
        ("julia", 3.0, r"\bprintln\(", 0),
        ("julia", 4.0, r"::\s*(Float64|Float32|Int|Int64|Vector|Matrix|Array|AbstractVector|AbstractMatrix|"
                       r"Real|Number|Function|Bool|String)\b", 0),
        ("julia", 3.0, r"^\s*using [A-Z]\w*(, \w+)*\s*$", _M),
        ("julia", 3.0, r"\bfor \w+ (in|=) \d*:\w+", 0),
        ("julia", 3.0, r"@(time|inbounds|views|assert|printf|show|simd|btime)\b", 0),
        ("julia", 3.0, r"\b(Vector|Matrix|Array)\{", 0),
        ("julia", 1.5, r"\.(\*|\^|/|\+|-)", 0),
        ("julia", 1.0, r"\b(zeros|ones|length|size|abs2|sqrt)\(", 0),
        ("julia", 2.0, r"\w!\(", 0),
        ("julia", 1.5, r"^\s*(for|while|if)\s+[^:{(;]*[^:{;]\s*$", _M),
        ("julia", 2.0, r"\b(Float64|Int64)\(", 0),
        # others (enough to not call them C++/Python/Java/Julia)
        ("javascript", 3.0, r"\bconsole\.log\(", 0),
        ("javascript", 2.0, r"^\s*(const|let|var) \w+\s*=", _M),
        ("javascript", 2.0, r"=>", 0),
        ("javascript", 1.0, r"^\s*function \w+\s*\([^)]*\)\s*\{", _M),
        ("rust", 4.0, r"\bfn \w+\s*(<[^>]*>)?\(", 0),
        ("rust", 3.0, r"\blet mut\b|\bprintln!\(|\bimpl\b|&mut\b|\bVec<", 0),
        ("go", 4.0, r"^\s*package main\b|\bfunc \w+\(|\bfmt\.", _M),
        ("go", 2.0, r":=", 0),
        ("fortran", 4.0, r"(?i)^\s*(program \w+|implicit none|end do|end program|integer ::|real\(\w+\))", _M),
        ("matlab", 3.0, r"\b(disp|fprintf|linspace|numel)\(", 0),
        ("matlab", 2.0, r"^\s*%", _M),
        ("matlab", 1.0, r"^\s*end\s*$", _M),
        ("r", 3.0, r"<-", 0),
        ("r", 3.0, r"\bfunction\s*\(|\blibrary\(|\bcat\(", 0),
    ]
]

FENCE_TAGS = {
    "python": "python", "py": "python", "python3": "python", "cpp": "cpp", "c++": "cpp", "cxx": "cpp", "cc": "cpp",
    "hpp": "cpp", "c": "c", "h": "c", "java": "java", "julia": "julia", "jl": "julia", "javascript": "javascript",
    "js": "javascript", "rust": "rust", "rs": "rust", "go": "go", "golang": "go", "fortran": "fortran",
    "f90": "fortran", "matlab": "matlab", "octave": "matlab", "r": "r",
}
FENCE_WEIGHT = 4.0
MIN_SCORE = 1.0
"""Below this best score the text is not called code in any language."""

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LINE = re.compile(r"[;{}=()\[\]]|^\s*(def|for|if|while|return|end|function|import|using|#include)\b")


@dataclass
class Detection:
    language: str | None
    """Best label, or None when no code was found."""
    confidence: float
    """Softmax share of the best score (0 when no code)."""
    has_code: bool
    code: str = ""
    fence_tag: str | None = None
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.language or "none"


def scores(code: str) -> dict[str, float]:
    """Evidence score per label for a piece of code (no fence handling)."""
    out = dict.fromkeys(LABELS, 0.0)
    for lang, weight, pattern in _FEATURES:
        n = len(pattern.findall(code))
        if n:
            out[lang] += weight * math.log1p(n)
    return out


def extract_code(text: str) -> tuple[str, str | None]:
    """(code, fence tag) from model output: fenced blocks (an unterminated last fence counts — generations are cut
    off), else the lines that look like code when they are a sizeable share of the text."""
    blocks = _FENCE.findall(text)
    if blocks:
        tags = [FENCE_TAGS.get(tag.lower()) for tag, _ in blocks if tag]
        return "\n".join(body for _, body in blocks), next((t for t in tags if t), None)
    lines = [line for line in text.splitlines() if line.strip()]
    code_lines = [line for line in lines if _CODE_LINE.search(line)]
    if len(code_lines) >= 2 and len(code_lines) >= 0.3 * len(lines):
        return "\n".join(lines), None
    return "", None


def classify(code: str, fence_tag: str | None = None) -> Detection:
    """Label a piece of code (``fence_tag`` adds ``FENCE_WEIGHT`` to that language)."""
    found = scores(code)
    if fence_tag in found:
        found[fence_tag] += FENCE_WEIGHT
    best = max(found, key=found.get)
    if found[best] < MIN_SCORE:
        return Detection(None, 0.0, False, code, fence_tag, found)
    z = sum(math.exp(s - found[best]) for s in found.values())
    return Detection(best, 1.0 / z, True, code, fence_tag, found)


def identify(text: str) -> Detection:
    """Language of the code in a model's answer (fenced or bare); ``language=None`` when there is no code."""
    code, tag = extract_code(text)
    if not code.strip():
        return Detection(None, 0.0, False, "", tag, dict.fromkeys(LABELS, 0.0))
    return classify(code, tag)


def _prefix_balanced(code: str) -> bool:
    """Brackets never close more than they opened (the code may be cut off, so unclosed brackets are fine)."""
    depth = {"(": 0, "[": 0, "{": 0}
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|//[^\n]*|#[^\n]*', "", code):
        if char in depth:
            depth[char] += 1
        elif char in pairs:
            depth[pairs[char]] -= 1
            if depth[pairs[char]] < 0:
                return False
    return True


def is_valid_code(text: str, language: str, *, min_confidence: float = 0.6) -> bool:
    """Heuristic "valid code in ``language``": code was found, its *content* (ignoring the fence tag) is identified
    as ``language`` with at least ``min_confidence``, and its brackets are prefix-balanced. Generations are cut at a
    token budget, so compiling is not a usable test; this checks "is well-formed-looking code in that language"."""
    code, _ = extract_code(text)
    if not code.strip():
        return False
    found = classify(code)
    return found.language == language and found.confidence >= min_confidence and _prefix_balanced(code)
