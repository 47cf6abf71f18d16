"""SAE evaluation on held-out sequences (FAST, METHODS.md §1).

Reconstruction (from stored activations, per sequence = one held-out conversation):
- ``mse``: squared error per element, averaged over the tokens *within* each conversation, then across conversations.
  ``log2_mse = log2(mse)``.
- ``special_mse``: the same over chat-template tokens only (flag bit ``TEMPLATE``: ``<|im_start|>``, ``<|im_end|>``,
  role words, separators); ``content_mse`` over the other tokens. Each is averaged within a conversation, then over
  the conversations that have such tokens.
- ``fvu`` (fraction of variance unexplained) = sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - mean_t(x)||^2 over all
  held-out tokens; ``explained_variance = 1 - fvu``.
- ``l0``: mean number of non-zero latents per token; ``dead_frac``: fraction of latents that never fire on the set.

Language-model metrics (the SAE spliced in at its site via ``hooks.replace``):
- ``ce_score = (CE_zero - CE_sae) / (CE_zero - CE_clean)`` (1 = as good as the model, 0 = as bad as zeroing the site);
- ``kl`` = mean over tokens of KL(p_clean || p_sae).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from saes.architectures import SparseAutoencoder
from workbench import hooks
from workbench.chat import TEMPLATE


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _log2(value: float) -> float:
    return math.log2(value) if value > 0 else (float("-inf") if value == 0 else float("nan"))


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, sequences: Iterable, *, skip_first: int = 0,
                           special_bits: int = TEMPLATE, max_sequences: int | None = None) -> dict[str, float]:
    """Metrics over ``sequences`` (objects with ``.acts [n, d]`` and ``.flags [n]``, e.g. ``store.sequences()``).

    ``skip_first`` drops the first positions of each sequence (e.g. 1 to leave out an attention-sink token).
    """
    d_sae, d_in = sae.cfg.d_sae, sae.cfg.d_in
    conv_mse: list[float] = []
    conv_special: list[float] = []
    conv_content: list[float] = []
    sse = 0.0
    sum_x = torch.zeros(d_in, dtype=torch.float64)
    sum_sq = 0.0
    n_tokens = 0
    active_total = 0
    fired_F = torch.zeros(d_sae, dtype=torch.bool)
    for i, seq in enumerate(sequences):
        if max_sequences is not None and i >= max_sequences:
            break
        x_ND = seq.acts[skip_first:].float().to(sae.device)
        if x_ND.shape[0] == 0:
            continue
        if x_ND.shape[1] != d_in:
            raise ValueError(f"held-out activations have width {x_ND.shape[1]}, the SAE expects d_in={d_in}")
        if not torch.isfinite(x_ND).all():
            raise ValueError(f"sequence {getattr(seq, 'seq_id', i)} has NaN/inf activations")
        out = sae(x_ND)
        err_N = (out.sae_out_BD - x_ND).pow(2).mean(-1).double().cpu()
        special_N = (seq.flags[skip_first:].to(torch.int64) & special_bits) != 0
        conv_mse.append(err_N.mean().item())
        if special_N.any():
            conv_special.append(err_N[special_N].mean().item())
        if (~special_N).any():
            conv_content.append(err_N[~special_N].mean().item())
        sse += err_N.sum().item() * d_in
        x64 = x_ND.double().cpu()
        sum_x += x64.sum(0)
        sum_sq += x64.pow(2).sum().item()
        n_tokens += x_ND.shape[0]
        active = out.feature_acts_BF > 0
        active_total += int(active.sum())
        fired_F |= active.any(0).cpu()
    if n_tokens == 0:
        raise ValueError("no held-out tokens to evaluate on (empty store?)")
    sst = sum_sq - sum_x.pow(2).sum().item() / n_tokens
    mse = _mean(conv_mse)
    special, content = _mean(conv_special), _mean(conv_content)
    return {"mse": mse, "log2_mse": _log2(mse), "special_mse": special, "content_mse": content,
            "log2_special_mse": _log2(special), "log2_content_mse": _log2(content),
            "fvu": sse / sst, "explained_variance": 1 - sse / sst, "l0": active_total / n_tokens,
            "dead_frac": float((~fired_F).float().mean()), "n_sequences": len(conv_mse), "n_tokens": n_tokens}


def _pad(seqs: Sequence[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = s.long()
        mask[row, :len(s)] = 1
    return ids, mask


def _token_ce(logits_BPV: Tensor, ids_BP: Tensor, mask_BP: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token next-token CE over real (non-pad) targets, and the target mask; shapes [B, P-1]."""
    logp = F.log_softmax(logits_BPV[:, :-1].float(), dim=-1)
    ce = -logp.gather(-1, ids_BP[:, 1:, None]).squeeze(-1)
    return ce, mask_BP[:, 1:].bool() & mask_BP[:, :-1].bool()


@torch.no_grad()
def spliced_lm_metrics(lm, saes: Mapping[str, tuple[SparseAutoencoder, str]], token_seqs: Sequence[Tensor], *,
                       batch_size: int = 8, scope: hooks.ScopeLike = "all") -> dict[str, dict[str, float]]:
    """CE-loss score and KL for several SAEs at once: ``saes = {name: (sae, site)}``.

    ``scope`` picks the positions the SAE (and the zero ablation) replace, e.g. ``slice(1, None)`` to leave the
    attention-sink token at position 0 untouched when the SAE was trained without it.

    The clean forward is shared by all SAEs and the zero-ablated forward by all SAEs at the same site, which is
    what makes evaluating a whole regime x layer grid affordable on a CPU.
    """
    if not token_seqs:
        raise ValueError("spliced_lm_metrics needs at least one token sequence")
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    sites = sorted({hooks.parse_site(site, lm).name for _, site in saes.values()})
    sums: dict[str, dict[str, float]] = {n: {"ce_sae": 0.0, "kl": 0.0} for n in saes}
    zero_ce: dict[str, float] = {s: 0.0 for s in sites}
    clean_total = 0.0
    n_targets = 0
    for start in range(0, len(token_seqs), batch_size):
        ids, mask = _pad(token_seqs[start:start + batch_size], pad_id)
        ids, mask = ids.to(lm.device), mask.to(lm.device)
        clean_logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        ce_clean, valid = _token_ce(clean_logits, ids, mask)
        logp_clean = F.log_softmax(clean_logits[:, :-1].float(), dim=-1)
        del clean_logits
        clean_total += ce_clean[valid].sum().item()
        n_targets += int(valid.sum())
        for site in sites:
            with hooks.replace(lm, site, lambda a: torch.zeros_like(a), scope=scope):
                logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            zero_ce[site] += _token_ce(logits, ids, mask)[0][valid].sum().item()
        for name, (sae, site) in saes.items():
            with hooks.replace(lm, site, sae.reconstruct, scope=scope):
                logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            ce, _ = _token_ce(logits, ids, mask)
            logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
            kl = (logp_clean.exp() * (logp_clean - logp)).sum(-1)
            sums[name]["ce_sae"] += ce[valid].sum().item()
            sums[name]["kl"] += kl[valid].sum().item()
    ce_clean = clean_total / n_targets
    results = {}
    for name, (_, site) in saes.items():
        ce_zero = zero_ce[hooks.parse_site(site, lm).name] / n_targets
        ce_sae = sums[name]["ce_sae"] / n_targets
        results[name] = {"ce_clean": ce_clean, "ce_sae": ce_sae, "ce_zero": ce_zero,
                         "ce_score": (ce_zero - ce_sae) / (ce_zero - ce_clean) if ce_zero != ce_clean else float("nan"),
                         "ce_delta": ce_sae - ce_clean, "kl": sums[name]["kl"] / n_targets, "n_targets": n_targets}
    return results


def evaluate_sae(sae: SparseAutoencoder, store, site: str | None = None, *, lm=None, ce_sequences: int = 16,
                 skip_first: int = 0, max_sequences: int | None = None) -> dict[str, float]:
    """All metrics for one SAE on a held-out store; the LM metrics need ``lm`` (the store's model).

    ``skip_first`` positions are left out of the reconstruction metrics and are not replaced in the LM metrics."""
    if store.d_model != sae.cfg.d_in:
        raise ValueError(f"the store holds d_model={store.d_model} activations, the SAE expects d_in={sae.cfg.d_in}")
    metrics = reconstruction_metrics(sae, store.sequences(site), skip_first=skip_first, max_sequences=max_sequences)
    if lm is not None and ce_sequences > 0:
        if lm.fingerprint != store.fingerprint:
            raise ValueError("the model passed is not the one the store was recorded on (fingerprint mismatch)")
        seqs = [s.token_ids for _, s in zip(range(ce_sequences), store.sequences(site))]
        scope = slice(skip_first, None) if skip_first else "all"
        metrics.update(spliced_lm_metrics(lm, {"sae": (sae, site or store.sites[0])}, seqs, scope=scope)["sae"])
    return metrics
