"""Generation under a steering condition and the language shares of the answers."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Callable, ContextManager

from steering.gact import langid


def generate(lm, prompts: list[str], *, steer: Callable[[], ContextManager] | None = None, max_new_tokens: int = 56,
             batch_size: int = 16, fixed_length: bool = False) -> tuple[list[str], float, int]:
    """Batched greedy answers; returns (texts, seconds, generated tokens). ``fixed_length`` forces every sequence to
    ``max_new_tokens`` (for tokens/s comparisons)."""
    texts, tokens, start = [], 0, time.perf_counter()
    extra = {"min_new_tokens": max_new_tokens} if fixed_length else {}
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i:i + batch_size]
        with (steer() if steer else contextlib.nullcontext()):
            out = lm.generate(batch, max_new_tokens=max_new_tokens, **extra)
        texts += out
        tokens += len(batch) * max_new_tokens if fixed_length else sum(
            len(lm.tokenizer.encode(t, add_special_tokens=False)) for t in out)
    return texts, time.perf_counter() - start, tokens


def summarize(texts: list[str], target: str) -> dict:
    """Share of each language (``none`` = no code found), target rate, and valid-target-code rate."""
    if not texts:
        raise ValueError("summarize needs at least one generated text")
    labels = [langid.identify(t).label for t in texts]
    counts = Counter(labels)
    n = len(texts)
    return {"n": n, "target_rate": counts[target] / n,
            "valid_rate": sum(langid.is_valid_code(t, target) for t in texts) / n,
            "no_code_rate": counts["none"] / n,
            "shares": {k: v / n for k, v in sorted(counts.items())}}
