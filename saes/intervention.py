"""FAST's special-token intervention: steer with the feature most active on the assistant header.

1. Over ``prompts`` (FAST: 1,000), render each as a user turn plus the generation prompt, encode with the SAE at its
   site, take each latent's max activation over the assistant-header tokens (flag ``ASSISTANT_HEADER``), average over
   prompts, and pick the argmax.
2. For each alpha in a sweep (FAST: 0..200), add ``alpha * d_f`` to the residual stream at the site (``d_f`` = that
   latent's decoder row scaled to unit norm, so alpha is in units of activation norm) and generate greedily.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from saes.architectures import SparseAutoencoder
from workbench import hooks
from workbench.chat import ASSISTANT_HEADER, encode_chat

logger = logging.getLogger(__name__)


@torch.no_grad()
def header_feature_activity(lm, sae: SparseAutoencoder, site: str, prompts: Sequence[str], *,
                            batch_size: int = 8) -> torch.Tensor:
    """Mean over prompts of each latent's max activation on the assistant-header tokens: ``[d_sae]``."""
    if not prompts:
        raise ValueError("need at least one prompt")
    encs = [encode_chat(lm.tokenizer, [{"role": "user", "content": p}], add_generation_prompt=True) for p in prompts]
    total_F = torch.zeros(sae.cfg.d_sae)
    n_used = 0
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(encs), batch_size):
        chunk = encs[start:start + batch_size]
        length = max(len(e) for e in chunk)
        ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(chunk):
            ids[row, :len(e)] = torch.tensor(e.input_ids)
            mask[row, :len(e)] = 1
        acts = hooks.record(lm, {"input_ids": ids, "attention_mask": mask}, [site])
        acts_BPD = next(iter(acts.values())).float()
        for row, e in enumerate(chunk):
            header = torch.tensor(e.flags) & ASSISTANT_HEADER
            pos = header.nonzero().flatten()
            if len(pos) == 0:
                continue
            total_F += sae.encode(acts_BPD[row, pos].to(sae.device)).max(0).values.cpu()
            n_used += 1
    if n_used == 0:
        raise ValueError("no prompt had assistant-header tokens; does the tokenizer have a chat template?")
    return total_F / n_used


def special_token_sweep(lm, sae: SparseAutoencoder, site: str, discover_prompts: Sequence[str],
                        test_prompts: Sequence[str], alphas: Sequence[float] = (0, 25, 50, 100, 150, 200), *,
                        feature: int | None = None, max_new_tokens: int = 32, scope: str = "all",
                        batch_size: int = 8) -> dict[str, Any]:
    """Find the assistant-header feature (unless given) and generate for every alpha. Returns a JSON-able dict."""
    activity_F = header_feature_activity(lm, sae, site, discover_prompts, batch_size=batch_size)
    if feature is None:
        feature = int(activity_F.argmax())
    direction = sae.W_dec[feature].detach().float()
    direction = direction / direction.norm().clamp_min(1e-8)
    runs = []
    for alpha in alphas:
        with hooks.steer(lm, site, direction.to(lm.device, lm.dtype), scale=float(alpha), scope=scope):
            outs = lm.generate(list(test_prompts), max_new_tokens=max_new_tokens)
        runs.append({"alpha": float(alpha), "generations": outs})
        logger.info("alpha %s: %r", alpha, outs[0][:80] if outs else "")
    top = activity_F.topk(min(5, len(activity_F)))
    return {"site": hooks.parse_site(site, lm).name, "feature": feature,
            "feature_header_activity": float(activity_F[feature]),
            "top_header_features": [{"feature": int(i), "activity": float(v)} for v, i in zip(top.values, top.indices)],
            "n_discover_prompts": len(discover_prompts), "prompts": list(test_prompts), "scope": scope,
            "max_new_tokens": max_new_tokens, "runs": runs}
