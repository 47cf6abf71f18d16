"""G-ACT experiment (issue 6): per-layer probe accuracy for ACT vs G-ACT, C++ selection rate on held-out prompts for
base / static neuron / ACT / G-ACT, valid-code rate, and tokens/s overhead of G-ACT steering vs unsteered (same run).

Every method's strength (static-neuron boost, ACT scale, G-ACT scale) is calibrated on the *validation* prompts (the
value with the highest valid-C++ rate, ties to the smaller value); the test prompts are used once, with that value.
The language identifier's own accuracy on labelled code is measured in the same run.

    .venv/bin/python bench/gact.py                  # both models, ~45 min (the committed gact.json)
    .venv/bin/python bench/gact.py --models smollm2-135m-instruct --generate smollm2-135m-instruct   # ~8 min

Writes bench/results/gact.json (merging per model). Activations are cached under the workbench cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from steering.gact import (ActConfig, GactConfig, LANGUAGES, StaticNeuron, defaults, fit_act_from_acts,
                           fit_gact_from_acts, per_layer_probe_accuracy, splits, top_neurons, variant)
from steering.gact.activations import language_samples
from steering.gact.evaluate import generate, summarize
from steering.gact.langid_eval import evaluate_langid
from workbench import atomic, paths
from workbench.models import load_model

logger = logging.getLogger("bench.gact")
RESULTS = Path(__file__).parent / "results" / "gact.json"


def cached_samples(lm, prompts, seed, tag):
    path = paths.cache_dir() / "bench-gact" / f"{lm.fingerprint}-{tag}.safetensors"
    if path.exists():
        from safetensors.torch import load_file
        t = load_file(str(path))
        langs = [LANGUAGES[i] for i in t["lang"].tolist()]
        return t["acts"], t["diffs"], langs
    acts, diffs, langs = language_samples(lm, prompts, LANGUAGES, seed=seed)
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        save_file({"acts": acts, "diffs": diffs, "lang": torch.tensor([LANGUAGES.index(x) for x in langs])}, str(tmp))
    return acts, diffs, langs


def mean(xs):
    return sum(xs) / len(xs)


def run_model(name, args):
    t0 = time.perf_counter()
    lm = load_model(name)
    train, val, test = splits()
    trX, trD, trL = cached_samples(lm, train, 0, "train")
    vaX, vaD, vaL = cached_samples(lm, val, 100, "val")
    logger.info("%s: activations in %.0fs", name, time.perf_counter() - t0)
    gact = fit_gact_from_acts(trX, trD, trL, GactConfig(k=args.k, scale=args.scales[0]), lm=lm)
    act = fit_act_from_acts(trX, trD, trL, ActConfig(k=args.k, scale=args.act_scales[0]), lm=lm)
    acc_g = gact.probe_accuracy(vaX, vaD)
    g_labels = gact.assign(vaD)
    chance_g = float(torch.bincount(g_labels, minlength=args.k).max()) / len(g_labels)
    acc_a, chance_a = per_layer_probe_accuracy((trX, trD), (vaX, vaD), args.k)
    early = list(range(min(7, lm.n_layers)))
    out = {
        "model": name, "n_layers": lm.n_layers, "k": args.k, "n_train_samples": len(trL), "n_val_samples": len(vaL),
        "gact_cluster_languages": gact.cluster_languages, "gact_cluster_sizes": gact.info["cluster_sizes"],
        "probe_acc_act": acc_a, "probe_acc_gact": acc_g, "chance_act": chance_a, "chance_gact": chance_g,
        "mean_probe_acc_act": mean(acc_a), "mean_probe_acc_gact": mean(acc_g),
        "early_layers": early, "early_probe_acc_act": mean([acc_a[i] for i in early]),
        "early_probe_acc_gact": mean([acc_g[i] for i in early]),
    }
    out["rel_gain_mean"] = out["mean_probe_acc_gact"] / out["mean_probe_acc_act"] - 1
    out["rel_gain_early"] = out["early_probe_acc_gact"] / out["early_probe_acc_act"] - 1
    logger.info("%s probe acc: ACT %.3f G-ACT %.3f (early %.3f vs %.3f)", name, out["mean_probe_acc_act"],
                out["mean_probe_acc_gact"], out["early_probe_acc_act"], out["early_probe_acc_gact"])
    if name not in args.generate:
        out["generation"] = "skipped (CPU budget); probe accuracy only"
        return out

    prompts = defaults(test[: args.n_test])
    kw = {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
    neuron = top_neurons(lm, "cpp", n=1)[0]
    makers = {
        "static_neuron": lambda v: StaticNeuron(neuron, gain=1.0, boost=v).steer(lm),
        "act": lambda v: act.steer(lm, scale=v),
        "gact": lambda v: gact.steer(lm, scale=v, refine_lr=0.0),
    }
    grids = {"static_neuron": args.neuron_boosts, "act": args.act_scales, "gact": args.scales}
    val_prompts = defaults(val[: args.n_val])
    calibration, chosen = {}, {}
    for method, grid in grids.items():
        sweep = {}
        for value in grid:
            texts, seconds, _ = generate(lm, val_prompts, steer=lambda: makers[method](value), **kw)
            r = summarize(texts, "cpp")
            sweep[str(value)] = {"target_rate": r["target_rate"], "valid_rate": r["valid_rate"],
                                 "no_code_rate": r["no_code_rate"]}
            logger.info("%s calibrate %s=%s: %s (%.0fs)", name, method, value, sweep[str(value)], seconds)
        chosen[method] = max(grid, key=lambda v: (sweep[str(v)]["valid_rate"], sweep[str(v)]["target_rate"], -v))
        calibration[method] = {"grid": list(grid), "sweep": sweep, "chosen": chosen[method]}
    sessions = []

    def gact_with_refinement():  # as configured (online refinement on); keep the session to read its probes
        sessions.append(gact.steer(lm, scale=chosen["gact"]))
        return sessions[-1]

    conditions = {
        "base": None,
        "static_neuron": lambda: makers["static_neuron"](chosen["static_neuron"]),
        "act": lambda: makers["act"](chosen["act"]),
        "gact": gact_with_refinement,
    }
    rates, samples = {}, {}
    for cond, steer in conditions.items():
        texts, seconds, _ = generate(lm, prompts, steer=steer, **kw)
        rates[cond] = summarize(texts, "cpp")
        samples[cond] = texts[:3]
        logger.info("%s %s: %s (%.0fs)", name, cond, rates[cond], seconds)
    asked = generate(lm, [variant(p, "cpp") for p in test[: args.n_test]], **kw)[0]
    rates["asked_for_cpp"] = summarize(asked, "cpp")
    refined = sessions[-1].probes if sessions else None
    out.update({
        "static_neuron": {"layer": neuron.layer, "index": neuron.index, "score": neuron.score,
                          "boost": chosen["static_neuron"]},
        "calibration": {**calibration, "n_val_prompts": len(val_prompts),
                        "rule": "highest valid-C++ rate on validation prompts, ties to the smaller value"},
        "act_layer": act.layer, "act_scale": chosen["act"], "gact_inject_layers": gact.inject_layers,
        "gact_scale": chosen["gact"], "gact_positions": gact.config.positions,
        "gact_refine": {"lr": gact.config.refine_lr, "on": gact.config.refine_on}, "n_test_prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "target_rate": {c: r["target_rate"] for c, r in rates.items()},
        "valid_rate": {c: r["valid_rate"] for c, r in rates.items()},
        "language_shares": {c: r["shares"] for c, r in rates.items()},
        "samples": samples,
    })
    if refined is not None:
        out["probe_acc_gact_refined"] = refined.accuracy(vaX, g_labels)
        out["mean_probe_acc_gact_refined"] = mean(out["probe_acc_gact_refined"])
    # overhead: fixed-length generation, unsteered vs G-ACT (with refinement), interleaved, same prompts
    timing = defaults(test[: args.batch_size])
    speeds = {"base": [], "gact": []}
    for _ in range(args.timing_rounds):
        for cond, steer in (("base", None), ("gact", lambda: gact.steer(lm, scale=chosen["gact"]))):
            _, seconds, tokens = generate(lm, timing, steer=steer, max_new_tokens=32, batch_size=args.batch_size,
                                          fixed_length=True)
            speeds[cond].append(tokens / seconds)
    out["tok_per_s"] = {c: max(v) for c, v in speeds.items()}
    out["overhead_ratio"] = out["tok_per_s"]["gact"] / out["tok_per_s"]["base"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--generate", nargs="*", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                        help="G-ACT scales tried on validation prompts")
    parser.add_argument("--act-scales", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, 16.0])
    parser.add_argument("--neuron-boosts", type=float, nargs="+", default=[10.0, 20.0, 40.0, 80.0])
    parser.add_argument("--n-val", type=int, default=16, help="validation prompts for strength calibration")
    parser.add_argument("--n-test", type=int, default=30)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--timing-rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("paper", {"model": "LLaMA-3.2-3B", "rel_gain_mean": 0.15, "rel_gain_early_layers_0_6": 0.615})
    results.setdefault("models", {})
    try:
        results["langid"] = evaluate_langid().as_dict()
        logger.info("language identifier accuracy %.3f on %d labelled snippets", results["langid"]["accuracy"],
                    results["langid"]["n"])
    except FileNotFoundError as err:
        results["langid"] = {"skipped": str(err)}
    for name in args.models:
        results["models"][name] = run_model(name, args)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(RESULTS, results)
        logger.info("wrote %s", RESULTS)


if __name__ == "__main__":
    main()
