"""``workbench sae train`` and ``workbench sae eval``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from saes.config import ARCHITECTURES, DEAD_LATENT_METHODS, SAEConfig, TrainConfig

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    sae = subparsers.add_parser("sae", help="train and evaluate sparse autoencoders")
    sub = sae.add_subparsers(dest="sae_command", metavar="SAE_COMMAND")
    sae.set_defaults(func=lambda _args: (sae.print_help(), 2)[1])

    train = sub.add_parser("train", help="train an SAE on an activation store (saved in the SAELens layout)")
    train.add_argument("--store", required=True, help="activation store folder (workbench store harvest)")
    train.add_argument("--site", default=None, help="site in the store (default: its only site)")
    train.add_argument("--out", required=True, help="output SAE folder (cfg.json + sae_weights.safetensors)")
    train.add_argument("--architecture", choices=ARCHITECTURES, default="standard")
    train.add_argument("--expansion", type=int, default=8, help="d_sae = expansion x d_model")
    train.add_argument("--k", type=int, default=32, help="active latents for topk")
    train.add_argument("--tokens", type=int, default=1_000_000, help="training token budget")
    train.add_argument("--batch-size", type=int, default=4096)
    train.add_argument("--lr", type=float, default=7e-5)
    train.add_argument("--lr-end", type=float, default=7e-6)
    train.add_argument("--l1", type=float, default=5.0, help="L1 coefficient (standard)")
    train.add_argument("--l0", type=float, default=0.01, help="L0 coefficient (jumprelu)")
    train.add_argument("--dead", choices=DEAD_LATENT_METHODS, default="none", help="dead-latent remedy")
    train.add_argument("--checkpoint-dir", default=None, help="enables checkpoints; rerun to resume a killed run")
    train.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    train.add_argument("--regime", default="", help="free-text data regime label, e.g. FAST, BT(F), BT(P)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--overwrite", action="store_true")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate an SAE on a held-out store (and the model, for CE score / KL)")
    ev.add_argument("--sae", required=True, help="SAE folder")
    ev.add_argument("--store", required=True, help="held-out activation store (same model and site)")
    ev.add_argument("--site", default=None)
    ev.add_argument("--model", default=None, help="model name/path for CE-loss score and KL (omit to skip)")
    ev.add_argument("--ce-sequences", type=int, default=16)
    ev.add_argument("--features-out", default=None, help="write feature-inspection JSON here (for the app)")
    ev.add_argument("--out", default=None, help="write metrics JSON here")
    ev.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from saes.pipeline import train_from_store
    from workbench.store import ActivationStore

    store = ActivationStore.open(args.store)
    sae_cfg = SAEConfig(d_in=store.d_model, d_sae=args.expansion * store.d_model, architecture=args.architecture,
                        k=args.k)
    train_cfg = TrainConfig(total_tokens=args.tokens, batch_size=args.batch_size, lr=args.lr, lr_end=args.lr_end,
                            l1_coefficient=args.l1, l0_coefficient=args.l0, dead_latent_method=args.dead,
                            checkpoint_every_steps=args.checkpoint_every if args.checkpoint_dir else 0, seed=args.seed)
    result = train_from_store(store, sae_cfg, train_cfg, args.out, site=args.site, regime=args.regime,
                              checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite)
    print(json.dumps({"out": args.out, **{k: v for k, v in result.stats.items() if k != "final"}}, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from saes.evaluate import evaluate_sae
    from saes.features import inspect_features
    from saes.io import load_sae
    from workbench import atomic
    from workbench.store import ActivationStore

    store = ActivationStore.open(args.store)
    sae, meta = load_sae(args.sae, expect_fingerprint=store.fingerprint)
    site = store.site(args.site or meta.hook_name or None)
    lm = None
    if args.model:
        from workbench.models import load_model
        lm = load_model(args.model)
    metrics = evaluate_sae(sae, store, site, lm=lm, ce_sequences=args.ce_sequences if lm else 0)
    if args.features_out:
        report = inspect_features(sae, store.sequences(site))
        atomic.write_json(args.features_out, report.to_json(tokenizer=lm.tokenizer if lm else None))
    if args.out:
        atomic.write_json(Path(args.out), metrics)
    print(json.dumps(metrics, indent=2))
    return 0
