"""Disjoint prompt splits for refusal experiments (harmful: AdvBench + HarmBench; harmless: Alpaca without input;
jailbreaks: short in-the-wild templates, each followed by a held-out HarmBench request)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from workbench import data


@dataclass
class RefusalSplits:
    harmful_train: list[str]
    harmful_val: list[str]
    harmful_test: list[str]
    harmless_train: list[str]
    harmless_val: list[str]
    harmless_test: list[str]
    jailbreak_test: list[str]

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def refusal_splits(n_train: int = 64, n_val: int = 16, n_test_harmful: int = 40, n_jailbreak: int = 30,
                   n_test_harmless: int = 40, max_jailbreak_chars: int = 800, seed: int = 0) -> RefusalSplits:
    """Train/val from AdvBench; the harmful test set is half AdvBench (held out), half HarmBench (another source)."""
    advbench = [x["prompt"] for x in data.load_advbench()]
    harmbench = list(data.load_harmbench())
    alpaca = [x["instruction"].strip() for x in data.load_alpaca() if not (x.get("input") or "").strip()]
    adv_train, adv_val, adv_test = data.split(advbench, (0.6, 0.2, 0.2), seed=seed)
    harmless_train, harmless_val, harmless_test = data.split(alpaca, (0.6, 0.2, 0.2), seed=seed)
    rng = random.Random(seed)
    harmbench = harmbench[:]
    rng.shuffle(harmbench)
    n_adv = n_test_harmful // 2
    harmful_test = adv_test[:n_adv] + harmbench[: n_test_harmful - n_adv]
    requests = harmbench[n_test_harmful - n_adv:]
    templates = [t for t in data.load_jailbreaks() if len(t) <= max_jailbreak_chars]
    rng.shuffle(templates)
    if n_jailbreak > min(len(templates), len(requests)):
        raise ValueError(f"only {min(len(templates), len(requests))} jailbreak prompts available; lower n_jailbreak")
    jailbreaks = [f"{t.strip()}\n\n{r}" for t, r in zip(templates[:n_jailbreak], requests)]
    for name, have, want in (("harmful train", adv_train, n_train), ("harmful val", adv_val, n_val),
                             ("harmless train", harmless_train, n_train), ("harmless val", harmless_val, n_val),
                             ("harmless test", harmless_test, n_test_harmless)):
        if len(have) < want:
            raise ValueError(f"{name}: asked for {want} prompts but the split holds {len(have)}")
    return RefusalSplits(adv_train[:n_train], adv_val[:n_val], harmful_test, harmless_train[:n_train],
                         harmless_val[:n_val], harmless_test[:n_test_harmless], jailbreaks)
