"""``workbench rep2text ...`` and ``workbench pause ...`` subcommands (argparse; registered by workbench.cli)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m-instruct", help="target model name or path")


def _load(name: str):
    from workbench.models import load_model

    return load_model(name)


def _emit(obj, out: str | None) -> None:
    from workbench import atomic

    if out:
        atomic.write_json(out, obj)
        logger.info("wrote %s", out)
    else:
        json.dump(obj, sys.stdout, indent=2)
        sys.stdout.write("\n")


# ---- rep2text ------------------------------------------------------------------------------------------------------
def _r2t_train(args) -> int:
    from probes.rep2text import Rep2TextConfig, load_spans, train
    from workbench import data as wdata

    wdata.fetch()
    target = _load(args.model)
    decoder = _load(args.decoder) if args.decoder else target
    spans = load_spans(target.tokenizer, args.n_train, args.span_tokens, source=args.source, split="train")
    cfg = Rep2TextConfig(layer=args.layer, n_soft_tokens=args.soft_tokens, span_tokens=args.span_tokens,
                         decoder_mode=args.decoder_mode, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    inverter = train(target, decoder, spans, cfg, out_dir=args.out, max_seconds=args.max_seconds)
    logger.info("trained %d/%d steps into %s", inverter.train_steps, cfg.steps, args.out)
    return 0


def _r2t_eval(args) -> int:
    from probes.rep2text import Inverter, evaluate, load_spans
    from workbench import data as wdata

    wdata.fetch()
    target = _load(args.model)
    decoder = _load(args.decoder) if args.decoder else target
    inverter = Inverter.load(args.inverter, target, decoder)
    spans = load_spans(target.tokenizer, args.n, args.length, source=args.source,
                       split="test" if args.source in ("wikipedia", "c4", "mixed") else "all", seed=1)
    _emit(evaluate(inverter, spans, baselines=not args.no_baselines), args.out)
    return 0


def _r2t_invert(args) -> int:
    from probes.rep2text import Inverter

    target = _load(args.model)
    decoder = _load(args.decoder) if args.decoder else target
    inverter = Inverter.load(args.inverter, target, decoder)
    for text, out in zip(args.text, inverter.invert(args.text)):
        print(f"{text!r} -> {out!r}")
    return 0


# ---- pause ---------------------------------------------------------------------------------------------------------
def _pause_cfg(args):
    from probes.pause import PauseConfig

    return PauseConfig(marker=args.marker, every_n_tokens=args.every, at_paragraphs=args.paragraphs)


def _haystack(name: str) -> list[str]:
    from workbench import data as wdata

    wdata.fetch()
    loaders = {"wikipedia": wdata.load_wikipedia, "c4": wdata.load_c4}
    if name not in loaders:
        raise ValueError(f"unknown haystack {name!r}; choose one of {sorted(loaders)}")
    return loaders[name]()


def _pause_insert(args) -> int:
    from probes.pause import insert_pauses

    text = Path(args.file).read_text() if args.file else sys.stdin.read()
    sys.stdout.write(insert_pauses(text, _load(args.model).tokenizer, _pause_cfg(args)))
    return 0


def _pause_niah(args) -> int:
    from probes.pause import depths_grid, load_pause_lora, run_grid

    lm = _load(args.model)
    if args.lora:
        lm = load_pause_lora(args.lora, lm)
    grid = run_grid(lm, _haystack(args.haystack), args.lengths, depths_grid(args.depths), args.trials,
                    pause=_pause_cfg(args) if args.every or args.paragraphs else None, n_needles=args.needles,
                    distractors=args.distractors)
    _emit(grid, args.out)
    return 0


def _pause_attention(args) -> int:
    from probes.pause import case_attention, make_case

    lm = _load(args.model)
    cfg = _pause_cfg(args) if args.every or args.paragraphs else None
    case = make_case(lm, _haystack(args.haystack), args.length, args.depth, pause=cfg)
    res = case_attention(lm, case, cfg.marker if cfg else None)
    _emit({k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in res.items()}, args.out)
    return 0


def _pause_tune(args) -> int:
    from probes.pause import TuneConfig, pause_tune, synthetic_examples

    lm = _load(args.model)
    cfg = TuneConfig(steps=args.steps, rank=args.rank, lr=args.lr, pause=_pause_cfg(args),
                     lengths=tuple(args.lengths), distractors=args.distractors)
    examples = synthetic_examples(lm, _haystack("c4"), args.steps, cfg)
    _, summary = pause_tune(lm, examples, cfg, out_dir=args.out)
    logger.info("pause LoRA in %s; final loss %s", args.out, summary["losses"][-1])
    return 0


def _pause_args(p: argparse.ArgumentParser, every_default: int | None = 400) -> None:
    p.add_argument("--marker", default="<PAUSE>")
    p.add_argument("--every", type=int, default=every_default, help="pause every N tokens")
    p.add_argument("--paragraphs", action="store_true", help="also pause at paragraph ends")


def register(subparsers) -> None:
    r2t = subparsers.add_parser("rep2text", help="Rep2Text: invert hidden states into text")
    rsub = r2t.add_subparsers(dest="rep2text_command", required=True)
    p = rsub.add_parser("train", help="train an adapter (checkpointed; rerun to resume)")
    _model_args(p)
    p.add_argument("--decoder", default=None, help="decoder model (default: the target)")
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--span-tokens", type=int, default=16)
    p.add_argument("--source", default="mixed", choices=["wikipedia", "c4", "mixed"])
    p.add_argument("--soft-tokens", type=int, default=8)
    p.add_argument("--decoder-mode", default="frozen", choices=["frozen", "lora"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-seconds", type=float, default=None)
    p.set_defaults(func=_r2t_train)
    p = rsub.add_parser("eval", help="metrics and baselines on held-out or OOD spans")
    _model_args(p)
    p.add_argument("--decoder", default=None)
    p.add_argument("--inverter", required=True)
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--source", default="mixed", choices=["wikipedia", "c4", "mixed", "code", "jailbreak"])
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_r2t_eval)
    p = rsub.add_parser("invert", help="reconstruct texts from their hidden states")
    _model_args(p)
    p.add_argument("--decoder", default=None)
    p.add_argument("--inverter", required=True)
    p.add_argument("text", nargs="+")
    p.set_defaults(func=_r2t_invert)

    pause = subparsers.add_parser("pause", help="pause tokens: insertion, NIAH, attention, pause-tuning")
    psub = pause.add_subparsers(dest="pause_command", required=True)
    p = psub.add_parser("insert", help="insert pause markers into a text file (or stdin)")
    _model_args(p)
    _pause_args(p)
    p.add_argument("--file", default=None)
    p.set_defaults(func=_pause_insert)
    p = psub.add_parser("niah", help="needle-in-a-haystack grid (pauses if --every/--paragraphs)")
    _model_args(p)
    _pause_args(p, every_default=None)
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--depths", type=int, default=10)
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--needles", type=int, default=1)
    p.add_argument("--distractors", type=int, default=0, help="needles for keys that are not asked about")
    p.add_argument("--haystack", default="wikipedia")
    p.add_argument("--lora", default=None, help="a pause LoRA folder from `pause tune`")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_pause_niah)
    p = psub.add_parser("attention", help="attention mass on the needle and pause tokens per layer and head")
    _model_args(p)
    _pause_args(p, every_default=None)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--depth", type=float, default=0.5)
    p.add_argument("--haystack", default="wikipedia")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_pause_attention)
    p = psub.add_parser("tune", help="LoRA pause-tuning on synthetic long-context QA")
    _model_args(p)
    _pause_args(p)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lengths", type=int, nargs="+", default=[384, 512, 768],
                   help="context lengths of the synthetic examples (tokens, sampled uniformly)")
    p.add_argument("--distractors", type=int, default=0, help="decoy needles in every training context")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_pause_tune)
