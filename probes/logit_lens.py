"""Logit lens (nostalgebraist 2020): decode each layer's residual stream through the final norm and unembedding.

For layer l, ``logits_l = unembed(final_norm(resid_post_l))``; the last layer reproduces the model's own logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from workbench import hooks

if TYPE_CHECKING:
    from workbench.models import LoadedModel


@dataclass
class LogitLens:
    tokens: list[str]
    """Input tokens, decoded one by one."""
    top_ids: Tensor
    """[layer, pos, k] most likely next-token ids at each layer."""
    top_probs: Tensor
    """[layer, pos, k] their probabilities."""
    top_tokens: list[list[list[str]]]
    """[layer][pos][k] decoded top tokens."""
    final_token_prob: Tensor
    """[layer, pos] probability each layer gives to the final layer's top-1 token (how early the answer forms)."""


@torch.no_grad()
def decode_resid(lm: "LoadedModel", resid_LPD: Tensor) -> Tensor:
    """Next-token log-probabilities [..., vocab] from residual-stream vectors [..., d_model]."""
    normed = lm.final_norm(resid_LPD.to(device=lm.device, dtype=lm.dtype))
    return torch.log_softmax(lm.unembed(normed).float(), dim=-1)


@torch.no_grad()
def logit_lens(lm: "LoadedModel", text: str, *, top_k: int = 5, add_special_tokens: bool = True) -> LogitLens:
    """Logit lens of every layer's ``resid_post`` for one text (no chat template applied; render it first if needed)."""
    if not text:
        raise ValueError("logit_lens needs a non-empty text")
    batch = lm.tokenize([text], add_special_tokens=add_special_tokens)
    sites = [hooks.Site(layer, "resid_post").name for layer in range(lm.n_layers)]
    acts = hooks.record(lm, batch, sites)
    resid_LPD = torch.stack([acts[s][0] for s in sites])  # [layer, pos, d_model]
    logprobs_LPV = decode_resid(lm, resid_LPD)
    top_lp_LPK, top_ids_LPK = logprobs_LPV.topk(top_k, dim=-1)
    final_top_P = top_ids_LPK[-1, :, 0]
    final_prob_LP = logprobs_LPV.gather(-1, final_top_P.expand(lm.n_layers, -1).unsqueeze(-1)).squeeze(-1).exp()
    decode = lm.tokenizer.decode
    ids = batch["input_ids"][0].tolist()
    top_tokens = [[[decode([int(i)]) for i in pos] for pos in layer] for layer in top_ids_LPK.cpu().tolist()]
    return LogitLens(tokens=[decode([i]) for i in ids], top_ids=top_ids_LPK.cpu(), top_probs=top_lp_LPK.exp().cpu(),
                     top_tokens=top_tokens, final_token_prob=final_prob_LP.cpu())
