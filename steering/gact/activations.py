"""Residual activations at the last prompt token, at every layer — the inputs to G-ACT's clustering and probes.

Prompts are rendered as a user turn with the model's chat template (plain text when it has none), so the last token
is the end of the generation prompt: the position from which the model starts writing its answer.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from workbench import hooks
from workbench.chat import render_prompt


def render(lm, prompts: list[str]) -> list[str]:
    if lm.has_chat_template:
        return [render_prompt(lm.tokenizer, p) for p in prompts]
    return list(prompts)


def last_token_acts(lm, prompts: list[str], *, batch_size: int = 16) -> Float[Tensor, "n layers d"]:
    """``resid_post`` of every layer at the last prompt token (left padding, so position -1), float32 on CPU."""
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise ValueError("last_token_acts needs a non-empty list of non-empty prompt strings")
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(lm.n_layers)]
    texts = render(lm, prompts)
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = lm.tokenize(texts[start:start + batch_size], add_special_tokens=not lm.has_chat_template)
        acts = hooks.record(lm, batch, sites)
        chunks.append(torch.stack([acts[s][:, -1] for s in sites], dim=1).float().cpu())  # [b, layers, d]
    return torch.cat(chunks)


def differences(lm, prompts: list[str], targets: list[str], *, batch_size: int = 16
                ) -> tuple[Tensor, Tensor]:
    """(default activations [n, layers, d], target-variant − default differences [n, layers, d])."""
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} default prompts but {len(targets)} target variants; pair them one to one")
    default_NLD = last_token_acts(lm, prompts, batch_size=batch_size)
    target_NLD = last_token_acts(lm, targets, batch_size=batch_size)
    return default_NLD, target_NLD - default_NLD


def language_samples(lm, prompts: list[str], languages: tuple[str, ...], *, seed: int = 0, batch_size: int = 16
                     ) -> tuple[Tensor, Tensor, list[str]]:
    """One sample per (prompt, language): (variant activations [n*m, L, d], variant − default differences
    [n*m, L, d], language of each sample). Sample order: all prompts for languages[0], then languages[1], ..."""
    from steering.gact.prompts import defaults, variants

    default_NLD = last_token_acts(lm, defaults(prompts), batch_size=batch_size)
    acts, diffs, labels = [], [], []
    for i, language in enumerate(languages):
        variant_NLD = last_token_acts(lm, variants(prompts, language, seed=seed + i), batch_size=batch_size)
        acts.append(variant_NLD)
        diffs.append(variant_NLD - default_NLD)
        labels += [language] * len(prompts)
    return torch.cat(acts), torch.cat(diffs), labels
