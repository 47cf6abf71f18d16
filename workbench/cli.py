"""``workbench`` command line. Each capability registers its own subcommands from its own module.

A module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, adding one or more subcommands whose parsers set
``func`` (called with the parsed args). Modules that are not present yet are skipped.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = (
    "workbench.commands",      # data, model, store, hooks
    "saes.cli",                # sae train|eval
    "steering.refusal_cli",    # refusal direction|eval|controller
    "steering.gact_cli",       # gact fit|eval|steer
    "probes.cli",              # rep2text, pause
    "steering.export_cli",     # export
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Interpretability and steering workbench")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue  # capability not installed in this checkout
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, IndexError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
