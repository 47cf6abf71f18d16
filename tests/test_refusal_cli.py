"""CLI wiring for ``workbench refusal``: parsers exist and bad combinations fail fast with a clear message."""

from __future__ import annotations

from workbench.cli import build_parser, main


def test_refusal_subcommands_registered():
    parser = build_parser()
    for action in ("direction", "eval", "controller"):
        args = parser.parse_args(["refusal", action] + (["--out", "x"] if action != "eval" else []))
        assert callable(args.func)


def test_controller_needs_exactly_one_direction(capsys):
    assert main(["refusal", "controller", "--out", "x"]) == 1
    assert "exactly one of --direction" in capsys.readouterr().err


def test_eval_needs_something_to_compare(capsys):
    assert main(["refusal", "eval"]) == 1
    assert "nothing to compare" in capsys.readouterr().err
