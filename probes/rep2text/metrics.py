"""Reconstruction metrics, small and dependency-free: position-wise token recovery, bag-of-tokens F1, ROUGE-1/L
(Lin 2004, F-measure with beta=1) and sentence BLEU (Papineni et al. 2002; up to 4-grams, brevity penalty, zero
n-gram precisions smoothed with epsilon=0.1 as in Chen & Cherry 2014 "method 1"). All return values in [0, 1]."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the unit for ROUGE and BLEU).

    Punctuation counts as a token, unlike Google's rouge-score (alphanumeric only); this credits readouts that emit
    frequent punctuation, so compare ROUGE across methods here, not digit-for-digit with papers."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def token_recovery(pred: Sequence[int], ref: Sequence[int]) -> float:
    """Fraction of reference positions whose token the prediction reproduces at the same position."""
    if not ref:
        raise ValueError("reference is empty")
    return sum(1 for p, r in zip(pred, ref) if p == r) / len(ref)


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def bag_f1(pred: Sequence, ref: Sequence) -> float:
    """F1 of the multiset overlap (order ignored)."""
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return _f1(overlap, len(pred), len(ref))


def rouge1(pred: str, ref: str) -> float:
    return bag_f1(words(pred), words(ref))


def lcs_length(a: Sequence, b: Sequence) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    p, r = words(pred), words(ref)
    return _f1(lcs_length(p, r), len(p), len(r))


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_tokens(pred: Sequence[str], ref: Sequence[str], max_n: int = 4, epsilon: float = 0.1) -> float:
    """Sentence BLEU of token lists (uniform weights over 1..max_n grams)."""
    if not pred or not ref:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        pred_n = _ngrams(pred, n)
        total = sum(pred_n.values())
        if total == 0:  # prediction shorter than n: that order contributes nothing (as in nltk)
            return 0.0
        match = sum((pred_n & _ngrams(ref, n)).values())
        log_precision += math.log((match if match else epsilon) / total) / max_n
    brevity = 1.0 if len(pred) > len(ref) else math.exp(1 - len(ref) / len(pred))
    return brevity * math.exp(log_precision)


def bleu(pred: str, ref: str, max_n: int = 4) -> float:
    return bleu_tokens(words(pred), words(ref), max_n=max_n)
