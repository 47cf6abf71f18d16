"""``workbench refusal direction|eval|controller``.

    workbench refusal direction --model qwen2.5-coder-0.5b-instruct --out runs/refusal/direction --delta
    workbench refusal controller --model qwen2.5-coder-0.5b-instruct --direction runs/refusal/direction.json \\
        --out runs/refusal/controller
    workbench refusal eval --model qwen2.5-coder-0.5b-instruct --direction runs/refusal/direction.json \\
        --controller runs/refusal/controller.json --out runs/refusal/eval.json
"""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="offline model name or folder")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--seed", type=int, default=0, help="data split seed")


def _setup(args):
    import torch

    from workbench import data
    from workbench.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    data.fetch()
    return load_model(args.model)


def cmd_direction(args) -> int:
    from steering.refusal import SelectConfig, candidate_directions, save_delta, select_direction
    from steering.refusal.datasets import refusal_splits

    lm = _setup(args)
    splits = refusal_splits(args.n_train, args.n_val, seed=args.seed)
    cands = candidate_directions(lm, splits.harmful_train, splits.harmless_train, batch_size=args.batch_size)
    sel = select_direction(lm, cands, splits.harmful_val, splits.harmless_val,
                           SelectConfig(layer_stride=args.layer_stride, batch_size=args.batch_size))
    path = cands.to_steering_vector(sel.position, sel.layer, passed_rules=sel.passed_rules).save(args.out)
    summary = {"direction": str(path), **sel.summary()}
    if args.delta:
        info = save_delta(lm, sel.direction, f"{args.out}_delta", layer=sel.layer, position=sel.position)
        summary["delta"] = str(info.path)
        summary["delta_bytes"] = info.bytes
    print(json.dumps(summary, indent=2))
    return 0


def cmd_controller(args) -> int:
    from steering.controller import ControllerConfig
    from steering.controller_train import calibrate_strength, fit_controller
    from steering.refusal import load_direction, phrase_directions
    from steering.refusal.datasets import refusal_splits

    if bool(args.direction) == bool(args.phrase):
        raise ValueError("pass exactly one of --direction PATH (Arditi direction) or --phrase (phrase direction)")
    lm = _setup(args)
    directions = phrase_directions(lm) if args.phrase else load_direction(args.direction, lm).vector
    splits = refusal_splits(args.n_train, args.n_val, seed=args.seed)
    cfg = ControllerConfig(read_k=args.read_k, strength=args.strength or 4.0)
    ctrl = fit_controller(lm, directions, splits.harmful_train, splits.harmless_train, cfg,
                          batch_size=args.batch_size, direction="phrase" if args.phrase else str(args.direction))
    if not args.strength:
        calibrate_strength(lm, ctrl, splits.harmless_val, batch_size=args.batch_size)
    path = ctrl.save(args.out)
    print(json.dumps({"controller": str(path), "strength": ctrl.config.strength, **ctrl.metadata["training"]},
                     indent=2))
    return 0


def cmd_eval(args) -> int:
    from steering.controller import Controller
    from steering.refusal import Condition, RefusalJudge, ablation, addition, evaluate, load_direction, orthogonalize
    from steering.refusal.datasets import refusal_splits
    from workbench import atomic

    if not args.direction and not args.controller:
        raise ValueError("nothing to compare with the base model: pass --direction and/or --controller")
    lm = _setup(args)
    splits = refusal_splits(n_test_harmful=args.n_harmful, n_jailbreak=args.n_jailbreak,
                            n_test_harmless=args.n_harmless, seed=args.seed)
    conditions = [Condition("base")]
    if args.direction:
        vector = load_direction(args.direction, lm)
        layer = int(vector.metadata.get("layer", vector.site.split(".")[1]))
        conditions += [Condition("ablation", context=lambda m: ablation(m, vector.vector)),
                       Condition("addition", context=lambda m: addition(m, vector.vector, layer, 1.0)),
                       Condition("orthogonalized", model=orthogonalize(lm, vector.vector))]
    if args.controller:
        ctrl = Controller.load(args.controller, lm)
        conditions += [Condition("constant", context=lambda m: ctrl.constant(m, 0.5)),
                       Condition("was", controller=ctrl)]
    judge = RefusalJudge(mode="substring", max_chars=400)
    judge.calibrate()
    sets = {"harmful": splits.harmful_test, "jailbreak": splits.jailbreak_test, "harmless": splits.harmless_test}
    results = evaluate(lm, conditions, sets, judge=judge, max_new_tokens=args.max_new_tokens,
                       batch_size=args.batch_size)
    report = {"model": lm.name, "model_fingerprint": lm.fingerprint, "judge": judge.report.as_dict(),
              "conditions": results}
    if args.out:
        atomic.write_json(args.out, report)
    print(json.dumps({k: {m: v for m, v in row.items() if m.endswith(("refusal", "kl"))}
                      for k, row in results.items()}, indent=2))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("refusal", help="refusal direction, interventions and the WAS controller")
    sub = parser.add_subparsers(dest="refusal_command", metavar="ACTION", required=True)

    p = sub.add_parser("direction", help="find and select Arditi's refusal direction; save it (+ rank-1 delta)")
    _common(p)
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-val", type=int, default=16)
    p.add_argument("--layer-stride", type=int, default=2)
    p.add_argument("--out", required=True, help="output path (writes .json + .safetensors)")
    p.add_argument("--delta", action="store_true", help="also export the rank-1 weight delta (<out>_delta)")
    p.set_defaults(func=cmd_direction)

    p = sub.add_parser("controller", help="train a WAS controller (harmful 1 / harmless 0) and save it")
    _common(p)
    p.add_argument("--direction", help="saved refusal direction (.json) from `refusal direction`")
    p.add_argument("--phrase", action="store_true", help="use the refusal-vs-compliance phrase direction instead")
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-val", type=int, default=16)
    p.add_argument("--read-k", type=int, default=4)
    p.add_argument("--strength", type=float, default=0.0, help="patch strength (0 = calibrate on validation)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_controller)

    p = sub.add_parser("eval", help="refusal rates and harmless KL for base / interventions / controller")
    _common(p)
    p.add_argument("--direction", help="saved refusal direction (.json)")
    p.add_argument("--controller", help="saved WAS controller (.json)")
    p.add_argument("--n-harmful", type=int, default=40)
    p.add_argument("--n-jailbreak", type=int, default=30)
    p.add_argument("--n-harmless", type=int, default=40)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--out", help="write the full results JSON here")
    p.set_defaults(func=cmd_eval)
