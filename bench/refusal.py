"""Refusal experiment (issue 5): on an instruction model that refuses (default Qwen2.5-Coder-0.5B-Instruct), find
Arditi's refusal direction, train a WAS controller, and compare on held-out prompts with greedy decoding:
base, direction ablation, activation addition, weight orthogonalisation, constant-strength steering, WAS controller.

Writes ``bench/results/refusal.json`` (partial results after every condition) and artifacts under
``runs/refusal/`` (git-ignored). Also measures ``controller_overhead_ratio`` = generation time with the controller
÷ without, same prompts, fixed length, in this run.

    .venv/bin/python bench/refusal.py                   # ~15 min on 2 CPU cores
    .venv/bin/python bench/refusal.py --model smollm2-135m-instruct --n-train 16 ...   # smoke run
    .venv/bin/python bench/refusal.py --throughput-only   # re-measure the overhead with the saved controller
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from steering.controller import ControllerConfig
from steering.controller_train import calibrate_strength, fit_controller
from steering.refusal import (Condition, RefusalJudge, SelectConfig, ablation, addition, candidate_directions,
                              evaluate, generate, orthogonalize, phrase_directions, save_delta, select_direction)
from steering.refusal.datasets import refusal_splits
from workbench import atomic, data
from workbench.models import load_model

log = logging.getLogger("bench.refusal")


NOTES = [
    "harmful test = half held-out AdvBench, half HarmBench; jailbreak = in-the-wild templates of <= max_jailbreak_chars "
    "characters, each followed by a held-out HarmBench request; harmless = held-out Alpaca instructions without input",
    "refusal = substring judge (primary). *_refusal_classifier = PyRIT-calibrated classifier, which also counts "
    "answers that do not echo the prompt's words as refusals; it is unreliable on 20-token answers and on long "
    "jailbreak prompts, so treat it as secondary",
    "harmless_kl = KL(base || condition) of the first answer token on the harmless test prompts",
    "addition = +1 x unnormalised direction at the selected layer's block input, all positions",
    "constant = the controller's patch with s*w_l fixed at 0.5 on every steered layer (what the controller does on a "
    "confidently harmful prompt with w at the regulariser's centre); strength calibrated on harmless validation prompts",
    "was_phrase = the same controller recipe on the refusal-vs-compliance phrase direction, with its own strength "
    "calibrated by the same rule",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-val", type=int, default=16)
    p.add_argument("--n-test-harmful", type=int, default=40)
    p.add_argument("--n-jailbreak", type=int, default=30)
    p.add_argument("--n-test-harmless", type=int, default=40)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-jailbreak-chars", type=int, default=800)
    p.add_argument("--layer-stride", type=int, default=2)
    p.add_argument("--n-prefilter", type=int, default=8)
    p.add_argument("--prefilter-k", type=int, default=4)
    p.add_argument("--prefilter-kl", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure KL in the first selection pass so candidates that pass the KL rule are "
                        "checked first (without it, the best bypassers on Qwen all fail KL < 0.1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--conditions", default="base,ablation,addition,orthogonalized,constant,was",
                   help="comma-separated subset; add was_phrase for the phrase-direction controller")
    p.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds")
    p.add_argument("--throughput-only", action="store_true",
                   help="only re-measure controller_overhead_ratio with the saved controller (updates --out)")
    p.add_argument("--out", default="bench/results/refusal.json")
    p.add_argument("--artifacts", default="runs/refusal")
    return p.parse_args(argv)


def measure_overhead(lm, ctrl, probe: list[str], args: argparse.Namespace) -> dict:
    """Generation tokens/s without and with the controller, same prompts, fixed length, ``--rounds`` alternating
    rounds (ABBA order, so drifting machine load hits both sides); the ratio is the median of per-round ratios."""
    generate(lm, probe[:2], max_new_tokens=2)  # warm-up
    plain_tps, ctrl_tps = [], []
    for i in range(args.rounds):
        for with_ctrl in ((False, True) if i % 2 == 0 else (True, False)):
            gens = generate(lm, probe, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            fixed_length=True, controller=ctrl if with_ctrl else None)
            (ctrl_tps if with_ctrl else plain_tps).append(gens.tokens_per_second)
    ratios = sorted(p / c for p, c in zip(plain_tps, ctrl_tps))
    return {"throughput": {"plain_tokens_per_s": plain_tps, "controller_tokens_per_s": ctrl_tps,
                           "n_prompts": len(probe), "max_new_tokens": args.max_new_tokens, "rounds": args.rounds,
                           "torch_threads": torch.get_num_threads()},
            "controller_overhead_ratio": ratios[len(ratios) // 2]}


def throughput_only(args: argparse.Namespace) -> int:
    """Re-measure ``controller_overhead_ratio`` with the saved controller; update only those keys."""
    from steering.controller import Controller

    lm = load_model(args.model)
    ctrl = Controller.load(Path(args.artifacts) / "controller", lm)
    splits = refusal_splits(args.n_train, args.n_val, args.n_test_harmful, args.n_jailbreak, args.n_test_harmless,
                            max_jailbreak_chars=args.max_jailbreak_chars)
    result = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    result.update(measure_overhead(lm, ctrl, splits.harmless_test[: args.batch_size], args))
    result["throughput"]["measured_separately"] = True
    atomic.write_json(args.out, result)
    log.info("controller_overhead_ratio %.3f", result["controller_overhead_ratio"])
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.throughput_only:
        return throughput_only(args)
    t0 = time.perf_counter()
    out_path, art = Path(args.out), Path(args.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    data.fetch()
    lm = load_model(args.model)
    splits = refusal_splits(args.n_train, args.n_val, args.n_test_harmful, args.n_jailbreak, args.n_test_harmless,
                             max_jailbreak_chars=args.max_jailbreak_chars)
    result: dict = {"model": lm.name, "model_fingerprint": lm.fingerprint, "n_layers": lm.n_layers,
                    "counts": splits.counts(), "max_new_tokens": args.max_new_tokens, "decoding": "greedy",
                    "chat_template": True, "torch_threads": torch.get_num_threads(), "host": platform.node(),
                    "judge_primary": "substring (JailbreakBench/Arditi list, anywhere in the answer)",
                    "args": vars(args), "notes": NOTES}

    def save() -> None:
        result["elapsed_s"] = round(time.perf_counter() - t0, 1)
        atomic.write_json(out_path, result)

    judge = RefusalJudge(mode="substring", max_chars=400)
    result["judge"] = judge.calibrate().as_dict()

    # 1. Arditi direction: candidates on train, selection on validation.
    t = time.perf_counter()
    cands = candidate_directions(lm, splits.harmful_train, splits.harmless_train, batch_size=args.batch_size)
    sel = select_direction(lm, cands, splits.harmful_val, splits.harmless_val,
                           SelectConfig(layer_stride=args.layer_stride, prefilter_k=args.prefilter_k,
                                        n_prefilter=args.n_prefilter, prefilter_kl=args.prefilter_kl,
                                        batch_size=args.batch_size))
    result["direction"] = {**sel.summary(), "n_harmful_kept": cands.n_harmful, "n_harmless_kept": cands.n_harmless,
                           "seconds": round(time.perf_counter() - t, 1),
                           "candidates": [s.__dict__ for s in sel.scores]}
    cands.to_steering_vector(sel.position, sel.layer, passed_rules=sel.passed_rules).save(art / "direction")
    delta = save_delta(lm, sel.direction, art / "orthogonalize_delta", layer=sel.layer, position=sel.position)
    result["delta_file_bytes"] = delta.bytes
    save()

    # 2. WAS controller on the train prompts (harmful 1, harmless 0); strength calibrated on validation.
    t = time.perf_counter()
    ctrl = fit_controller(lm, sel.direction, splits.harmful_train, splits.harmless_train, ControllerConfig(),
                          batch_size=args.batch_size, direction="arditi")
    strength, sweep = calibrate_strength(lm, ctrl, splits.harmless_val, batch_size=args.batch_size)
    ctrl.save(art / "controller")
    result["controller"] = {"strength": strength, "strength_sweep": sweep, "training": ctrl.metadata["training"],
                            "read_layers": ctrl.read_layers, "n_steer_layers": len(ctrl.steer_layers),
                            "constant_coeff": 0.5, "seconds": round(time.perf_counter() - t, 1)}
    wanted = args.conditions.split(",")
    phrase_ctrl = None
    if "was_phrase" in wanted:
        phrase = phrase_directions(lm)
        phrase_ctrl = fit_controller(lm, phrase, splits.harmful_train, splits.harmless_train,
                                     ControllerConfig(), batch_size=args.batch_size, direction="phrase")
        phrase_strength, phrase_sweep = calibrate_strength(lm, phrase_ctrl, splits.harmless_val,
                                                           batch_size=args.batch_size)
        phrase_ctrl.save(art / "controller_phrase")
        result["controller"]["phrase"] = {"strength": phrase_strength, "strength_sweep": phrase_sweep,
                                          "training": phrase_ctrl.metadata["training"]}
    save()

    # 3. Throughput: the same prompts, fixed length, with and without the controller.
    result.update(measure_overhead(lm, ctrl, splits.harmless_test[: args.batch_size], args))
    save()

    # 4. Conditions.
    orth = orthogonalize(lm, sel.direction) if "orthogonalized" in wanted else None
    all_conditions = {
        "base": Condition("base"),
        "ablation": Condition("ablation", context=lambda m: ablation(m, sel.direction)),
        "addition": Condition("addition", context=lambda m: addition(m, sel.direction, sel.layer, 1.0)),
        "orthogonalized": Condition("orthogonalized", model=orth),
        "constant": Condition("constant", context=lambda m: ctrl.constant(m, 0.5)),
        "was": Condition("was", controller=ctrl),
        "was_phrase": Condition("was_phrase", controller=phrase_ctrl),
    }
    sets = {"harmful": splits.harmful_test, "jailbreak": splits.jailbreak_test, "harmless": splits.harmless_test}
    unknown = [name for name in wanted if name not in all_conditions]
    if unknown or wanted[0] != "base":
        raise SystemExit(f"conditions must start with base (the KL reference); unknown: {unknown}; "
                         f"choose from {sorted(all_conditions)}")
    result["conditions"] = {}

    def on_result(name: str, row: dict) -> None:
        result["conditions"][name] = row
        save()

    evaluate(lm, [all_conditions[name] for name in wanted], sets, judge=judge, max_new_tokens=args.max_new_tokens,
             batch_size=args.batch_size, on_result=on_result)
    log.info("wrote %s in %.0fs", out_path, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
