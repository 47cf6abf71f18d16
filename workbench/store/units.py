"""Turn examples into the rows ("units") a store records: packed blocks or one sequence per example.

A unit carries token ids and per-token flags (see ``workbench.chat``). Plain-text examples get ``SPECIAL`` on
special tokens only; chat examples (lists of messages) get the full template flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from transformers import PreTrainedTokenizerBase

from workbench.chat import SPECIAL, TEMPLATE, encode_chat

Example = str | Sequence[dict]


@dataclass(frozen=True)
class Unit:
    index: int
    """Row number in the store (``seq_ids`` in shards)."""
    input_ids: list[int]
    flags: list[int]


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example) -> tuple[list[int], list[int]]:
    if isinstance(example, str):
        ids = tokenizer(example, add_special_tokens=True)["input_ids"]
        special = set(tokenizer.all_special_ids)
        return ids, [SPECIAL | TEMPLATE if i in special else 0 for i in ids]
    if isinstance(example, (list, tuple)) and all(isinstance(m, dict) for m in example):
        enc = encode_chat(tokenizer, example)
        return enc.input_ids, enc.flags
    raise TypeError(f"an example is a string or a list of chat messages, got {type(example).__name__}")


def sequence_units(tokenizer: PreTrainedTokenizerBase, examples: Iterable[Example], block_size: int) -> Iterator[Unit]:
    """One unit per example, truncated at ``block_size`` tokens; empty examples are skipped (index still counts)."""
    for index, example in enumerate(examples):
        ids, flags = encode_example(tokenizer, example)
        if ids:
            yield Unit(index, ids[:block_size], flags[:block_size])


def packed_units(tokenizer: PreTrainedTokenizerBase, examples: Iterable[Example], block_size: int) -> Iterator[Unit]:
    """Concatenate examples (EOS-separated when the tokenizer does not add one) and cut into full blocks."""
    eos = tokenizer.eos_token_id
    buffer_ids: list[int] = []
    buffer_flags: list[int] = []
    index = 0
    for example in examples:
        ids, flags = encode_example(tokenizer, example)
        if eos is not None and (not ids or ids[-1] != eos) and isinstance(example, str):
            ids, flags = ids + [eos], flags + [SPECIAL | TEMPLATE]
        buffer_ids.extend(ids)
        buffer_flags.extend(flags)
        while len(buffer_ids) >= block_size:
            yield Unit(index, buffer_ids[:block_size], buffer_flags[:block_size])
            index += 1
            del buffer_ids[:block_size], buffer_flags[:block_size]
    # the last partial block is dropped, as in block training


def units(tokenizer: PreTrainedTokenizerBase, examples: Iterable[Example], formatting: str,
          block_size: int) -> Iterator[Unit]:
    make = packed_units if formatting == "packed" else sequence_units
    return make(tokenizer, examples, block_size)
