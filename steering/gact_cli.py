"""``workbench gact fit|eval|steer``: fit G-ACT on the built-in prompts, measure language shares, steer one prompt."""

from __future__ import annotations

import argparse
import json
import logging

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser("gact", help="G-ACT: steer the programming language of generated code")
    sub = parser.add_subparsers(dest="gact_command", metavar="ACTION", required=True)

    fit = sub.add_parser("fit", help="fit clusters + per-layer probes on the training prompts and save them")
    fit.add_argument("--model", default="smollm2-135m-instruct")
    fit.add_argument("--out", required=True, help="output folder (cfg.json + tensors.safetensors)")
    fit.add_argument("--k", type=int, default=6, help="number of clusters")
    fit.add_argument("--target", default="cpp", help="target language: python, cpp, java, julia")
    fit.add_argument("--layers", type=int, nargs="*", default=None, help="injection layers (default: 2nd quarter)")
    fit.add_argument("--scale", type=float, default=1.0, help="steering strength")
    fit.add_argument("--refine-lr", type=float, default=0.05, help="online probe refinement step (0 = off)")
    fit.add_argument("--n-prompts", type=int, default=None, help="use only the first N training prompts")
    fit.set_defaults(func=_fit)

    ev = sub.add_parser("eval", help="language shares on held-out prompts, unsteered vs steered")
    ev.add_argument("--model", default="smollm2-135m-instruct")
    ev.add_argument("--steerer", required=True, help="folder written by `gact fit`")
    ev.add_argument("--split", choices=("val", "test"), default="test")
    ev.add_argument("--n", type=int, default=30, help="number of prompts")
    ev.add_argument("--max-new-tokens", type=int, default=56)
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--scale", type=float, default=None)
    ev.set_defaults(func=_eval)

    st = sub.add_parser("steer", help="generate one answer with G-ACT steering")
    st.add_argument("prompt")
    st.add_argument("--model", default="smollm2-135m-instruct")
    st.add_argument("--steerer", required=True)
    st.add_argument("--scale", type=float, default=None)
    st.add_argument("--max-new-tokens", type=int, default=96)
    st.set_defaults(func=_steer)


def _fit(args: argparse.Namespace) -> int:
    from steering.gact import GactConfig, fit_gact, splits
    from workbench.models import load_model

    lm = load_model(args.model)
    train = splits()[0][: args.n_prompts]
    config = GactConfig(k=args.k, target=args.target, inject_layers=args.layers, scale=args.scale,
                        refine_lr=args.refine_lr)
    gact = fit_gact(lm, train, config)[0]
    path = gact.save(args.out)
    print(json.dumps({"saved": str(path), "cluster_languages": gact.cluster_languages, **gact.info}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from steering.gact import Gact, defaults, splits
    from steering.gact.evaluate import generate, summarize
    from workbench.models import load_model

    lm = load_model(args.model)
    gact = Gact.load(args.steerer, lm)
    prompts = defaults(splits()[1 if args.split == "val" else 2][: args.n])
    kw = {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
    base = generate(lm, prompts, **kw)[0]
    steered = generate(lm, prompts, steer=lambda: gact.steer(lm, scale=args.scale), **kw)[0]
    print(json.dumps({"target": gact.config.target, "base": summarize(base, gact.config.target),
                      "gact": summarize(steered, gact.config.target)}, indent=2))
    return 0


def _steer(args: argparse.Namespace) -> int:
    from steering.gact import Gact, identify
    from workbench.models import load_model

    lm = load_model(args.model)
    gact = Gact.load(args.steerer, lm)
    with gact.steer(lm, scale=args.scale):
        text = lm.generate([args.prompt], max_new_tokens=args.max_new_tokens)[0]
    print(text)
    print(f"\n[language: {identify(text).label}]")
    return 0
