"""Token-position scopes for interventions: which positions of a forward pass an operation touches.

``all``: every position. ``prompt``: positions of the first (prompt) forward pass only. ``generated``: positions of
later passes during cached generation (each new token). ``last``: the last position of every forward pass (the last
prompt token, then each generated token). An int, a list of ints or a ``slice`` selects explicit positions of every
pass.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

SCOPES = ("all", "prompt", "generated", "last")
ScopeLike = Union[str, int, slice, Sequence[int]]

PROMPT, GENERATED = "prompt", "generated"


def check_scope(scope: ScopeLike) -> ScopeLike:
    if isinstance(scope, str) and scope not in SCOPES:
        raise ValueError(f"unknown token scope {scope!r}; use one of {SCOPES}, an int, a list of ints or a slice")
    if not isinstance(scope, (str, int, slice)) and not all(isinstance(i, int) for i in scope):
        raise TypeError("a positional scope must be an int, a slice or a sequence of ints")
    return scope


def positions(scope: ScopeLike, phase: str, seq_len: int) -> slice | list[int] | None:
    """Index along the position axis for one forward pass, or None when the scope excludes the whole pass."""
    if scope == "all":
        return slice(None)
    if scope == "prompt":
        return slice(None) if phase == PROMPT else None
    if scope == "generated":
        return slice(None) if phase == GENERATED else None
    if scope == "last":
        return slice(seq_len - 1, seq_len)
    if isinstance(scope, slice):
        return scope
    if isinstance(scope, int):
        scope = [scope]
    picked = [i for i in scope if -seq_len <= i < seq_len]
    return picked or None


def apply_at(acts: torch.Tensor, index: slice | list[int], fn) -> torch.Tensor:
    """Out-of-place: return ``acts`` with ``fn`` applied to ``acts[:, index]`` (position axis 1)."""
    if index == slice(None):
        return fn(acts)
    out = acts.clone()
    out[:, index] = fn(acts[:, index])
    return out
