"""Chat-template rendering that remembers which tokens the template added.

FAST-style SAE evaluation needs per-token flags: special tokens (``<|im_start|>``), template text (role words,
newlines, an injected default system prompt) versus message content, and the assistant header. We render with the
tokenizer's own chat template, then locate each message's content in the rendered string and use the fast
tokenizer's character offsets to flag every token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from transformers import PreTrainedTokenizerBase

# Token flag bits (stored as uint8 per token in activation stores).
SPECIAL = 1
"""A tokenizer special token such as ``<|im_start|>``."""
TEMPLATE = 2
"""Any token the chat template added: special tokens, role words, separators, injected system text."""
ASSISTANT = 4
"""Content of an assistant message."""
ASSISTANT_HEADER = 8
"""Template tokens directly before assistant content (e.g. ``<|im_start|>assistant\\n``)."""

Message = dict[str, str]


@dataclass(frozen=True)
class ChatEncoding:
    text: str
    input_ids: list[int]
    flags: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def _require_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template (a base model?); use packed/plain formatting instead, "
                         "or set tokenizer.chat_template")


def render_prompt(tokenizer: PreTrainedTokenizerBase, user_text: str, system: str | None = None) -> str:
    """One user turn rendered with the chat template and the assistant generation prompt."""
    _require_template(tokenizer)
    messages: list[Message] = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user_text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_chat(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], *,
                add_generation_prompt: bool = False, max_length: int | None = None) -> ChatEncoding:
    """Render ``messages`` with the chat template and flag every token (see the bit constants above)."""
    _require_template(tokenizer)
    if not messages:
        raise ValueError("encode_chat needs at least one message")
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    # Character spans of each message's content, found left to right in the rendered text.
    spans: list[tuple[int, int, str]] = []
    cursor = 0
    for message in messages:
        content = message["content"]
        if not content:
            continue
        start = text.find(content, cursor)
        if start < 0:  # template rewrote the content (e.g. stripped it); fall back to a stripped search
            start = text.find(content.strip(), cursor)
            content = content.strip()
        if start < 0:
            continue
        spans.append((start, start + len(content), message["role"]))
        cursor = start + len(content)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    offsets: list[tuple[int, int]] = enc["offset_mapping"]
    special_ids = set(tokenizer.all_special_ids)
    flags: list[int] = []
    span_index = 0
    for token_id, (start, end) in zip(ids, offsets):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        flag = 0
        in_content = (span_index < len(spans) and spans[span_index][0] <= start and end <= spans[span_index][1]
                      and end > start)
        if token_id in special_ids:
            flag |= SPECIAL | TEMPLATE
        elif not in_content:
            flag |= TEMPLATE
        if in_content and spans[span_index][2] == "assistant":
            flag |= ASSISTANT
        flags.append(flag)
    _mark_assistant_headers(tokenizer, ids, flags, add_generation_prompt)
    if max_length is not None:
        ids, flags = ids[:max_length], flags[:max_length]
    return ChatEncoding(text=text, input_ids=ids, flags=flags)


def _mark_assistant_headers(tokenizer: PreTrainedTokenizerBase, ids: list[int], flags: list[int],
                            add_generation_prompt: bool) -> None:
    """Flag the run of template tokens right before each assistant content block (and the final generation prompt)."""
    n = len(ids)
    for i in range(n):
        starts_block = flags[i] & ASSISTANT and (i == 0 or not flags[i - 1] & ASSISTANT)
        if starts_block or (add_generation_prompt and i == n - 1 and flags[i] & TEMPLATE):
            j = i - 1 if starts_block else i
            # walk back over template tokens up to and including the previous special token
            while j >= 0 and flags[j] & TEMPLATE:
                flags[j] |= ASSISTANT_HEADER
                if flags[j] & SPECIAL:
                    break
                j -= 1


def describe_flags(flag: int) -> str:
    names = [name for bit, name in ((SPECIAL, "special"), (TEMPLATE, "template"), (ASSISTANT, "assistant"),
                                    (ASSISTANT_HEADER, "assistant_header")) if flag & bit]
    return "|".join(names) or "content"
