"""Insert pause markers into long inputs (pause-tuning, METHODS §5).

A pause is either a text marker (``"<PAUSE>"`` by default, or a longer "stop and absorb" phrase) or a new special
token added to a *copy* of the model (``with_pause_token``). Markers go every ``every_n_tokens`` tokens (snapped to
the next whitespace so no word is split) and/or at paragraph ends (blank lines).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from workbench.models import LoadedModel

DEFAULT_MARKER = "<PAUSE>"
ABSORB_PHRASE = "<PAUSE> Stop and absorb what you have read so far before continuing. </PAUSE>"


@dataclass
class PauseConfig:
    marker: str = DEFAULT_MARKER
    """Text inserted at each pause (for a special token, the token's string)."""
    every_n_tokens: int | None = 400
    """Insert a pause after about this many tokens (None: no periodic pauses). The paper uses ~400-450."""
    at_paragraphs: bool = False
    """Also insert a pause at every paragraph end (a blank line)."""

    def __post_init__(self) -> None:
        if not self.marker.strip():
            raise ValueError("pause marker must be non-empty text, e.g. '<PAUSE>'")
        if self.every_n_tokens is not None and self.every_n_tokens < 1:
            raise ValueError(f"every_n_tokens must be >= 1 or None, got {self.every_n_tokens}")
        if self.every_n_tokens is None and not self.at_paragraphs:
            raise ValueError("choose where pauses go: every_n_tokens and/or at_paragraphs=True")


def _cut_points_every_n(text: str, tokenizer, every_n: int) -> list[int]:
    """Character offsets (at whitespace) after roughly every ``every_n`` tokens."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    cuts: list[int] = []
    for i in range(every_n, len(offsets), every_n):
        char = offsets[i - 1][1]
        match = re.compile(r"\s").search(text, char)
        if match is None:
            break
        if not cuts or match.start() > cuts[-1]:
            cuts.append(match.start())
    return cuts


def insert_pauses(text: str, tokenizer, cfg: PauseConfig | None = None) -> str:
    """``text`` with ``cfg.marker`` inserted at the configured boundaries (never at the very end)."""
    cfg = cfg or PauseConfig()
    if not text.strip():
        raise ValueError("cannot insert pauses into empty text")
    cuts = set()
    if cfg.every_n_tokens is not None:
        cuts.update(_cut_points_every_n(text, tokenizer, cfg.every_n_tokens))
    if cfg.at_paragraphs:
        cuts.update(m.start() for m in re.finditer(r"\n\s*\n", text) if text[m.end():].strip())
    pieces, last = [], 0
    for cut in sorted(cuts):
        pieces.append(text[last:cut].rstrip(" "))
        last = cut
    pieces.append(text[last:])
    return f" {cfg.marker}".join(pieces)


def find_subsequence(ids: Sequence[int], pattern: Sequence[int]) -> list[int]:
    """Start indices of every occurrence of ``pattern`` in ``ids``."""
    n = len(pattern)
    if n == 0:
        raise ValueError("empty pattern")
    return [i for i in range(len(ids) - n + 1) if list(ids[i:i + n]) == list(pattern)]


def marker_positions(ids: Sequence[int], tokenizer, marker: str = DEFAULT_MARKER) -> list[int]:
    """Token positions covered by ``marker`` in ``ids`` (tries the leading-space and bare tokenisations)."""
    positions: set[int] = set()
    for variant in (" " + marker, marker):
        pattern = tokenizer(variant, add_special_tokens=False)["input_ids"]
        for start in find_subsequence(ids, pattern):
            positions.update(range(start, start + len(pattern)))
    return sorted(positions)


def with_pause_token(lm: "LoadedModel", token: str = "<|pause|>") -> "LoadedModel":
    """A copy of ``lm`` whose tokenizer has ``token`` as a new special token (embedding = mean of all embeddings).

    The caller's model and tokenizer are left untouched. Fingerprint changes (the vocabulary grew).
    """
    from workbench.models import wrap_model

    tokenizer = copy.deepcopy(lm.tokenizer)
    if token in tokenizer.get_vocab():
        raise ValueError(f"{token!r} is already in {lm.name}'s vocabulary; pick a new token string")
    tokenizer.add_special_tokens({"additional_special_tokens": [token]})
    model = copy.deepcopy(lm.model)
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        tables = (model.get_input_embeddings(), model.get_output_embeddings())
        for emb in {id(m): m for m in tables if m is not None}.values():  # tied tables once
            emb.weight[old:] = emb.weight[:old].mean(0, keepdim=True)
    return wrap_model(model, tokenizer, name=f"{lm.name}+pause")
