"""Fixed-length token spans for Rep2Text and the target model's last-token states on them.

Spans are windows of exactly ``length`` target-model tokens cut from documents of ``workbench.data`` (Wikipedia and C4
for training, held-out documents for evaluation; HumanEval code and jailbreak prompts as out-of-distribution text).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from workbench import data as wdata
from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel

SOURCES = ("wikipedia", "c4", "mixed", "code", "jailbreak")


def _documents(source: str, split: str) -> list[str]:
    if source == "code":
        return [x["prompt"] + x["canonical_solution"] for x in wdata.load_humaneval()]
    if source == "jailbreak":
        return list(wdata.load_jailbreaks())
    if source == "mixed":
        return _documents("wikipedia", split) + _documents("c4", split)
    if source not in ("wikipedia", "c4"):
        raise ValueError(f"unknown span source {source!r}; choose one of {SOURCES}")
    docs = wdata.load_wikipedia() if source == "wikipedia" else wdata.load_c4()
    train, val, test = wdata.split(docs, fractions=(0.8, 0.1, 0.1), seed=0)
    parts = {"train": train, "val": val, "test": test + val, "all": docs}
    if split not in parts:
        raise ValueError(f"unknown split {split!r}; choose train, val, test or all")
    return parts[split]


def spans_from_texts(tokenizer, texts: Sequence[str], n: int, length: int, *, seed: int = 0,
                     per_doc: int | None = None) -> list[list[int]]:
    """Up to ``n`` non-overlapping windows of ``length`` tokens, spread over ``texts`` (round robin, shuffled)."""
    if length < 1:
        raise ValueError(f"span length must be >= 1, got {length}")
    rng = random.Random(seed)
    windows_per_doc: list[list[list[int]]] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        starts = list(range(0, len(ids) - length + 1, length))
        rng.shuffle(starts)
        windows = [ids[s:s + length] for s in starts[:per_doc]]
        # skip windows that are mostly whitespace/markup: they invert trivially and say nothing
        windows = [w for w in windows if len(tokenizer.decode(w).split()) >= max(2, length // 4)]
        if windows:
            windows_per_doc.append(windows)
    rng.shuffle(windows_per_doc)
    spans: list[list[int]] = []
    depth = 0
    while len(spans) < n and any(depth < len(w) for w in windows_per_doc):
        spans.extend(w[depth] for w in windows_per_doc if depth < len(w))
        depth += 1
    return spans[:n]


def load_spans(tokenizer, n: int, length: int = 16, *, source: str = "mixed", split: str = "train",
               seed: int = 0) -> list[list[int]]:
    """``n`` spans of ``length`` target tokens (token ids) from ``source``; train/test splits share no document."""
    texts = _documents(source, split)
    spans = spans_from_texts(tokenizer, texts, n, length, seed=seed)
    if len(spans) < n:
        raise ValueError(f"only {len(spans)} spans of {length} tokens in {source}/{split}; ask for fewer")
    return spans


def check_ids(lm: "LoadedModel", ids_NL: Tensor) -> None:
    """Raise a clear error for empty inputs or inputs longer than the model's context window."""
    if ids_NL.ndim != 2 or ids_NL.shape[0] == 0 or ids_NL.shape[1] == 0:
        raise ValueError(f"need a non-empty [batch, pos] batch of token ids, got shape {tuple(ids_NL.shape)}; "
                         "empty text cannot be inverted")
    context = int(getattr(lm.config, "max_position_embeddings", 0) or 0)
    if context and ids_NL.shape[1] > context:
        raise ValueError(f"input of {ids_NL.shape[1]} tokens is longer than {lm.name}'s context of {context} tokens; "
                         "truncate or split it")


def as_id_batch(lm: "LoadedModel", inputs: Sequence[str] | Sequence[Sequence[int]] | Tensor) -> list[list[int]]:
    """Texts or token-id lists -> list of token-id lists (no special tokens); empty inputs raise."""
    if isinstance(inputs, Tensor):
        return inputs.tolist()
    if isinstance(inputs, str):
        inputs = [inputs]
    out = []
    for item in inputs:
        ids = lm.tokenizer(item, add_special_tokens=False)["input_ids"] if isinstance(item, str) else list(item)
        if not ids:
            raise ValueError("empty text cannot be inverted: every input needs at least one token")
        out.append(ids)
    if not out:
        raise ValueError("no inputs given")
    return out


@torch.no_grad()
def last_token_states(lm: "LoadedModel", spans: Sequence[Sequence[int]] | Sequence[str], layers: Sequence[int], *,
                      batch_size: int = 16) -> dict[int, Tensor]:
    """Last-token ``resid_post`` states of ``lm`` at each of ``layers`` -> {layer: float32 [n, d_model] on CPU}.

    One forward per batch serves all layers (it stops after the deepest one). Spans of unequal length are left-padded
    so the last position is always the last real token.
    """
    id_lists = as_id_batch(lm, spans)
    layers = sorted({lm.check_layer(layer) for layer in layers})
    out: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    pad = lm.tokenizer.pad_token_id or 0
    for start in range(0, len(id_lists), batch_size):
        chunk = id_lists[start:start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids_NL = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in chunk])
        mask_NL = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in chunk])
        check_ids(lm, ids_NL)
        pos_NL = (mask_NL.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift the real tokens' positions
        acts = hooks.record(lm, {"input_ids": ids_NL, "attention_mask": mask_NL, "position_ids": pos_NL},
                            [f"resid_post.{layer}" for layer in layers], to_cpu=True)
        for layer in layers:
            out[layer].append(acts[f"blocks.{layer}.hook_resid_post"][:, -1].float())
    return {layer: torch.cat(chunks) for layer, chunks in out.items()}
