"""``workbench gact`` parses and runs end to end on the tiny model (load_model patched to return it)."""

import json

import pytest

from workbench import cli
from workbench.models import tiny_model


@pytest.fixture()
def tiny(monkeypatch):
    lm = tiny_model()
    monkeypatch.setattr("workbench.models.load_model", lambda *a, **k: lm)
    return lm


def test_fit_eval_steer(tiny, tmp_path, capsys):
    out = tmp_path / "g"
    assert cli.main(["gact", "fit", "--model", "tiny", "--out", str(out), "--k", "2", "--n-prompts", "4",
                     "--layers", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["n_train"] == 16
    assert cli.main(["gact", "eval", "--model", "tiny", "--steerer", str(out), "--n", "2",
                     "--max-new-tokens", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"target", "base", "gact"} and report["base"]["n"] == 2
    assert cli.main(["gact", "steer", "Sum an array.", "--model", "tiny", "--steerer", str(out),
                     "--max-new-tokens", "2"]) == 0
    assert "[language:" in capsys.readouterr().out


def test_missing_steerer_is_a_clear_error(tiny, tmp_path, capsys):
    assert cli.main(["gact", "steer", "x", "--steerer", str(tmp_path / "nope")]) == 1
    assert "cfg.json" in capsys.readouterr().err
