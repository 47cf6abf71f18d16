"""Evaluate refusal interventions: greedy, batched, chat-templated generation on held-out prompt sets, judged for
refusal, plus KL(base || condition) of the first answer token on harmless prompts (Arditi et al.'s KL metric).

A *condition* is a model (the base model or an orthogonalised copy), an optional context-manager factory for hook
interventions, and an optional WAS controller. ``evaluate`` returns, per condition, ``{set}_refusal`` and ``n`` for
each prompt set, ``harmless_kl`` and generation throughput.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ContextManager, Sequence

import torch
from torch import Tensor

from steering.refusal import forward as fw
from steering.refusal.judge import RefusalJudge

if TYPE_CHECKING:
    from steering.controller import Controller
    from workbench.models import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class Generations:
    texts: list[str]
    first_logits: Tensor | None
    """[n, vocab] logits of the first answer token (only when asked for)."""
    new_tokens: int
    seconds: float
    scales: list[float] = field(default_factory=list)
    """Controller scale s per prompt (empty without a controller)."""

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("nan")


@torch.no_grad()
def generate(lm: "LoadedModel", prompts: Sequence[str], *, max_new_tokens: int = 24, batch_size: int = 16,
             controller: "Controller | None" = None, keep_logits: bool = False,
             fixed_length: bool = False) -> Generations:
    """Greedy generation in length-sorted batches (less padding); results come back in the input order.

    ``fixed_length`` forces exactly ``max_new_tokens`` per prompt (for throughput comparisons).
    """
    prompts = list(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str | None] = [None] * len(prompts)
    logits: list[Tensor | None] = [None] * len(prompts)
    scales: list[float] = [float("nan")] * len(prompts)
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id,
                  return_dict_in_generate=True, output_logits=keep_logits)
    if fixed_length:
        kwargs["min_new_tokens"] = max_new_tokens
    new_tokens, start = 0, time.perf_counter()
    for chunk in fw.batches(order, batch_size):
        batch = fw.encode(lm, [prompts[i] for i in chunk])
        if controller is not None:
            out, decision = controller.generate_batch(lm, batch, **kwargs)
            for i, s in zip(chunk, decision.scale_B.tolist()):
                scales[i] = s
        else:
            out = lm.model.generate(**batch, **kwargs)
        answer_ids = out.sequences[:, batch["input_ids"].shape[1]:]
        new_tokens += answer_ids.numel()
        for row, i in enumerate(chunk):
            texts[i] = lm.tokenizer.decode(answer_ids[row], skip_special_tokens=True)
            if keep_logits:
                logits[i] = out.logits[0][row].float().cpu()
    seconds = time.perf_counter() - start
    first = torch.stack(logits) if keep_logits and prompts else None  # type: ignore[arg-type]
    return Generations(texts, first, new_tokens, seconds, scales if controller is not None else [])  # type: ignore


@dataclass
class Condition:
    name: str
    model: "LoadedModel | None" = None
    """None = the base model."""
    context: Callable[["LoadedModel"], ContextManager] | None = None
    controller: "Controller | None" = None


def evaluate(lm: "LoadedModel", conditions: Sequence[Condition], prompt_sets: dict[str, Sequence[str]], *,
             judge: RefusalJudge | None = None, max_new_tokens: int = 24, batch_size: int = 16,
             kl_set: str = "harmless", examples: int = 2,
             on_result: Callable[[str, dict], None] | None = None) -> dict:
    """Run every condition on every prompt set; ``on_result(name, row)`` after each condition.

    The first condition is the KL reference (normally "base"), so its ``harmless_kl`` is 0 by construction.
    """
    judge = judge or RefusalJudge()
    if kl_set not in prompt_sets:
        raise ValueError(f"kl_set {kl_set!r} is not one of the prompt sets {sorted(prompt_sets)}")
    results: dict[str, dict] = {}
    reference: Tensor | None = None
    for cond in conditions:
        model = cond.model or lm
        start = time.perf_counter()
        row: dict = {"n": {}, "examples": {}}
        ctx = cond.context(model) if cond.context is not None else contextlib.nullcontext()
        with ctx:
            for set_name, prompts in prompt_sets.items():
                gens = generate(model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                controller=cond.controller, keep_logits=set_name == kl_set)
                row[f"{set_name}_refusal"] = judge.rate(gens.texts)
                if judge.mode == "substring" and judge.calibrated:  # secondary verdict, same answers
                    row[f"{set_name}_refusal_classifier"] = float(sum(judge.classify(gens.texts, prompts)) /
                                                                  len(prompts))
                row["n"][set_name] = len(prompts)
                row["examples"][set_name] = [t[:120] for t in gens.texts[:examples]]
                if gens.scales:
                    row[f"{set_name}_mean_scale"] = float(sum(gens.scales) / len(gens.scales))
                if set_name == kl_set:
                    if reference is None:
                        reference = gens.first_logits
                    row[f"{kl_set}_kl"] = float(fw.kl_div(reference, gens.first_logits).mean())
                row.setdefault("tokens_per_second", {})[set_name] = gens.tokens_per_second
                log.info("%s / %s: refusal %.3f (n=%d, %.1fs)", cond.name, set_name, row[f"{set_name}_refusal"],
                         len(prompts), gens.seconds)
        row["seconds"] = round(time.perf_counter() - start, 1)
        results[cond.name] = row
        if on_result:
            on_result(cond.name, row)
    return results
