"""Needle in a haystack (NIAH), single- and multi-needle, with an offline exact/fuzzy judge.

A needle sentence ("The special magic number for <city> is <7 digits>.") is placed at a sentence boundary at a given
depth (fraction of the haystack) inside filler text from ``workbench.data`` (Wikipedia by default); the model is
asked for the number. ``run_grid`` sweeps context lengths x depths x trials, optionally with pause markers inserted
into the haystack (the "pause prompt" condition). ``distractors`` adds needle sentences for *other* keys with other
numbers (spread evenly through the haystack): the model must bind the asked key to its number, not just copy the only
seven-digit number in sight — the single-needle task is at ceiling for SmolLM2 up to 4k tokens.
"""

from __future__ import annotations

import difflib
import logging
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch
from tqdm import tqdm

from probes.pause.insert import PauseConfig, insert_pauses
from workbench.chat import render_prompt

if TYPE_CHECKING:
    from workbench.models import LoadedModel

logger = logging.getLogger(__name__)

KEYS = ("Lisbon", "Nairobi", "Osaka", "Quito", "Reykjavik", "Tbilisi", "Hanoi", "Dakar", "Oslo", "Lima", "Perth",
        "Havana", "Tunis", "Riga", "Accra", "Bogota", "Zagreb", "Seoul", "Cairo", "Denver", "Manila", "Kyiv")
NEEDLE = "The special magic number for {key} is {value}."
QUESTION = "What is the special magic number for {key}? Answer with the number only."
MULTI_QUESTION = "What are the special magic numbers for {keys}? Answer with the numbers only."
ANSWER_BUDGET = 24  # new tokens generated per question


@dataclass
class NiahCase:
    length: int
    depth: float
    needles: list[tuple[str, str]]
    haystack: str
    question: str
    prompt: str = ""
    n_tokens: int = 0
    extra: dict = field(default_factory=dict)


def haystack_tokens(tokenizer, texts: Sequence[str], n_tokens: int, seed: int) -> list[int]:
    """``n_tokens`` filler tokens from a seeded start inside the concatenated ``texts``."""
    if n_tokens < 1:
        raise ValueError(f"haystack needs >= 1 token, got {n_tokens}")
    rng = random.Random(seed)
    order = list(texts)
    rng.shuffle(order)
    ids: list[int] = []
    for text in order:
        doc = tokenizer(text, add_special_tokens=False)["input_ids"]
        start = rng.randrange(0, max(1, len(doc) - n_tokens)) if not ids else 0
        ids += doc[start:start + n_tokens - len(ids)]
        if len(ids) >= n_tokens:
            return ids
    raise ValueError(f"the filler texts hold fewer than {n_tokens} tokens; give more text or a shorter length")


def place(haystack: str, sentence: str, depth: float) -> tuple[str, int]:
    """Insert ``sentence`` at the sentence boundary closest before ``depth`` (0..1) of ``haystack``; return text and
    the character offset of the sentence."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be within [0, 1], got {depth}")
    target = int(len(haystack) * depth)
    if depth >= 1.0:
        cut = len(haystack)
    else:
        bounds = [m.end() for m in re.finditer(r"[.!?]\s", haystack[:target + 1])]
        cut = bounds[-1] if bounds else 0
    left, right = haystack[:cut].rstrip(), haystack[cut:].lstrip()
    text = (left + " " if left else "") + sentence + (" " + right if right else "")
    return text, (len(left) + 1 if left else 0)


@dataclass(frozen=True)
class NeedleTemplate:
    needle: str = NEEDLE
    question: str = QUESTION
    multi_question: str = MULTI_QUESTION
    keys: tuple[str, ...] = KEYS


def make_case(lm: "LoadedModel", texts: Sequence[str], length: int, depth: float, *, seed: int = 0,
              n_needles: int = 1, distractors: int = 0, pause: PauseConfig | None = None,
              template: NeedleTemplate = NeedleTemplate()) -> NiahCase:
    """One NIAH prompt of about ``length`` tokens (before pauses) with ``n_needles`` needles; the first at ``depth``,
    the others spread evenly after it (wrapping around); plus ``distractors`` needles for keys that are not asked."""
    if n_needles < 1 or distractors < 0 or n_needles + distractors > len(template.keys):
        raise ValueError(f"need 1 <= n_needles and 0 <= distractors with n_needles + distractors <= "
                         f"{len(template.keys)} keys; got {n_needles} and {distractors}")
    rng = random.Random(seed * 7919 + int(depth * 1000) + length)
    keys = rng.sample(template.keys, n_needles + distractors)
    values = [str(rng.randrange(1_000_000, 9_999_999)) for _ in keys]
    needles = list(zip(keys[:n_needles], values[:n_needles]))
    decoys = list(zip(keys[n_needles:], values[n_needles:]))
    keys = keys[:n_needles]
    question = template.question.format(key=keys[0]) if n_needles == 1 else template.multi_question.format(
        keys=", ".join(keys[:-1]) + " and " + keys[-1])
    tok = lm.tokenizer
    overhead = len(tok(render_prompt(tok, "\n\n" + question), add_special_tokens=False)["input_ids"])
    needle_tokens = sum(len(tok(" " + template.needle.format(key=k, value=v), add_special_tokens=False)
                            ["input_ids"]) for k, v in needles + decoys)
    filler = length - overhead - needle_tokens
    if filler < 16:
        raise ValueError(f"length {length} leaves no room for a haystack (prompt overhead is "
                         f"{overhead + needle_tokens} tokens); use a longer length")
    haystack = tok.decode(haystack_tokens(tok, texts, filler, seed=seed * 31 + length))
    if pause is not None:  # pauses first, so no marker ever splits a needle sentence
        haystack = insert_pauses(haystack, tok, pause)
    for i, (key, value) in enumerate(decoys):  # decoys first, evenly spread; the real needles then go at their depth
        haystack, _ = place(haystack, template.needle.format(key=key, value=value), (i + 0.5) / len(decoys))
    for i, (key, value) in enumerate(needles):
        at = depth + i / n_needles  # the later needles wrap around past the end; 1.0 itself stays the end
        at = at - 1.0 if at > 1.0 + 1e-6 else min(at, 1.0)
        haystack, _ = place(haystack, template.needle.format(key=key, value=value), at)
    prompt = render_prompt(tok, haystack + "\n\n" + question)
    n_tokens = len(tok(prompt, add_special_tokens=False)["input_ids"])
    check_context(lm, n_tokens + ANSWER_BUDGET)
    return NiahCase(length, depth, needles, haystack, question, prompt, n_tokens,
                    extra={"needle_template": template.needle, "distractors": decoys})


def check_context(lm: "LoadedModel", n_tokens: int) -> None:
    context = int(getattr(lm.config, "max_position_embeddings", 0) or 0)
    if context and n_tokens > context:
        raise ValueError(f"a {n_tokens}-token input is longer than {lm.name}'s context of {context} tokens; "
                         "use a shorter length")


def judge(response: str, value: str) -> tuple[float, float]:
    """(exact, fuzzy): exact is 1 if the digits appear verbatim; fuzzy is the best similarity ratio between the value
    and any digit run in the response (1.0 for exact, partial credit for near misses)."""
    runs = re.findall(r"\d[\d,]*", response)
    runs = [r.replace(",", "") for r in runs]
    if value in runs or value in response.replace(",", ""):
        return 1.0, 1.0
    fuzzy = max((difflib.SequenceMatcher(None, value, r).ratio() for r in runs), default=0.0)
    return 0.0, round(fuzzy, 4)


@torch.no_grad()
def answer(lm: "LoadedModel", prompt: str, max_new_tokens: int = ANSWER_BUDGET) -> str:
    ids = lm.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(lm.device)
    if ids.shape[1] == 0:
        raise ValueError("empty prompt")
    check_context(lm, ids.shape[1] + max_new_tokens)
    out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    return lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def score_case(lm: "LoadedModel", case: NiahCase) -> dict:
    response = answer(lm, case.prompt)
    scores = [judge(response, value) for _, value in case.needles]
    decoys = case.extra.get("distractors", [])
    return {"length": case.length, "depth": case.depth, "n_tokens": case.n_tokens, "response": response[:80],
            "exact": sum(s[0] for s in scores) / len(scores), "fuzzy": sum(s[1] for s in scores) / len(scores),
            "decoy": float(any(judge(response, value)[0] for _, value in decoys))}


def depths_grid(n: int = 10) -> list[float]:
    """``n`` depths evenly from 1/n to 1.0 (10 -> 0.1, 0.2, ..., 1.0)."""
    return [round((i + 1) / n, 4) for i in range(n)]


def run_grid(lm: "LoadedModel", texts: Sequence[str], lengths: Sequence[int], depths: Sequence[float],
             trials: int | dict[int, int] = 1, *, pause: PauseConfig | None = None, n_needles: int = 1,
             distractors: int = 0, seed: int = 0, progress: bool = True) -> dict:
    """Mean exact/fuzzy score per (length, depth): ``{"exact": {L: {d: x}}, "fuzzy": ..., "records": [...]}``.

    ``trials`` may differ per length (fewer at long lengths). Same seeds -> same haystacks and needles in every
    condition, so base and pause grids differ only by the pauses.
    """
    records = []
    jobs = [(L, d, t) for L in lengths for d in depths
            for t in range(trials[L] if isinstance(trials, dict) else trials)]
    for length, depth, trial in tqdm(jobs, disable=not progress, desc="niah"):
        case = make_case(lm, texts, length, depth, seed=seed + trial, n_needles=n_needles, distractors=distractors,
                         pause=pause)
        records.append({**score_case(lm, case), "trial": trial})
    grid: dict = {"exact": {}, "fuzzy": {}}
    for metric in ("exact", "fuzzy"):
        for length in lengths:
            grid[metric][str(length)] = {}
            for depth in depths:
                vals = [r[metric] for r in records if r["length"] == length and r["depth"] == depth]
                grid[metric][str(length)][str(depth)] = round(sum(vals) / len(vals), 4) if vals else None
    grid["records"] = records
    return grid
