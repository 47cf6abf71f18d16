"""Evaluate an inverter against its baselines on held-out or out-of-distribution spans.

Baselines read the *same* state: an untrained adapter (same architecture and seed, no training) and a logit-lens
readout (final norm + unembedding of the state; its top-n tokens, most probable first, as the "reconstruction").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from probes.rep2text.inverter import Inverter
from probes.rep2text.metrics import bag_f1, bleu, rouge1, rouge_l, token_recovery

if TYPE_CHECKING:
    from workbench.models import LoadedModel

METRICS = ("token_recovery", "bag_f1", "rouge1", "rougeL", "bleu", "embed_cosine")


@torch.no_grad()
def logit_lens_readout(lm: "LoadedModel", states_ND: Tensor, n_tokens: int) -> list[list[int]]:
    """Top-``n_tokens`` tokens of ``unembed(final_norm(state))`` per state, most probable first."""
    states_ND = states_ND.to(lm.device, lm.dtype)
    logits_NV = lm.unembed(lm.final_norm(states_ND.unsqueeze(1))).squeeze(1)
    return logits_NV.topk(n_tokens, dim=-1).indices.tolist()


@torch.no_grad()
def _mean_embedding(lm: "LoadedModel", ids: Sequence[int]) -> Tensor:
    weight_VD = lm.embed.weight
    if not ids:
        return torch.zeros(weight_VD.shape[1], device=weight_VD.device)
    return weight_VD[torch.tensor(list(ids), device=weight_VD.device)].float().mean(0)


def score(decoder: "LoadedModel", preds: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]) -> dict[str, float]:
    """Mean of every metric over pairs of (predicted, reference) decoder-token lists."""
    if len(preds) != len(refs) or not refs:
        raise ValueError(f"need equally many predictions and references, got {len(preds)} and {len(refs)}")
    tok = decoder.tokenizer
    totals = dict.fromkeys(METRICS, 0.0)
    for pred, ref in zip(preds, refs):
        pred_text, ref_text = tok.decode(list(pred), skip_special_tokens=True), tok.decode(list(ref))
        totals["token_recovery"] += token_recovery(pred, ref)
        totals["bag_f1"] += bag_f1(list(pred), list(ref))
        totals["rouge1"] += rouge1(pred_text, ref_text)
        totals["rougeL"] += rouge_l(pred_text, ref_text)
        totals["bleu"] += bleu(pred_text, ref_text)
        totals["embed_cosine"] += float(torch.nn.functional.cosine_similarity(
            _mean_embedding(decoder, pred), _mean_embedding(decoder, ref), dim=0))
    return {k: round(v / len(refs), 4) for k, v in totals.items()}


def evaluate(inverter: Inverter, spans: Sequence[Sequence[int]], *, states: Tensor | None = None,
             baselines: bool = True, batch_size: int = 16, n_examples: int = 3) -> dict:
    """Metrics of ``inverter`` on ``spans`` (target ids); with ``baselines``, also untrained adapter and logit lens."""
    if not spans:
        raise ValueError("no evaluation spans given")
    if states is None:
        states = inverter.states(spans)
    refs = inverter.decoder_targets(spans)
    max_new = max(len(r) for r in refs) + 2

    def run(model: Inverter) -> list[list[int]]:
        preds: list[list[int]] = []
        for start in range(0, len(refs), batch_size):
            preds += model.generate_ids(states[start:start + batch_size], max_new)
        return preds

    preds = run(inverter)
    tok = inverter.decoder.tokenizer
    result: dict = {"n": len(refs), **score(inverter.decoder, preds, refs),
                    "examples": [{"input": tok.decode(r), "output": tok.decode(p, skip_special_tokens=True)}
                                 for r, p in list(zip(refs, preds))[:n_examples]]}
    if baselines:
        untrained = Inverter(inverter.target, inverter.decoder, inverter.cfg)  # fresh init, same seed
        result["untrained_adapter"] = score(inverter.decoder, run(untrained), refs)
        lens = logit_lens_readout(inverter.target, states, max(len(r) for r in refs))
        lens = [ids[:len(r)] for ids, r in zip(lens, refs)]
        lens = inverter.decoder_targets(lens)
        result["logit_lens"] = score(inverter.decoder, lens, refs)
    return result
