import json

import pytest

from workbench.cli import main


def test_model_list_and_sites(capsys):
    assert main(["model", "list"]) == 0
    assert "smollm2-135m-instruct" in capsys.readouterr().out
    assert main(["sites", "--model", "tiny"]) == 0
    lines = capsys.readouterr().out.split()
    assert "blocks.1.hook_resid_post" in lines and len(lines) == 2 * 5


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["model", "fetch", "no-such-model"]) == 1
    assert "offline models are" in capsys.readouterr().err


@pytest.mark.integration
def test_store_harvest_and_info(tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["store", "harvest", str(out), "--model", "tiny", "--sites", "resid_post.1", "--dataset", "c4",
                 "--max-tokens", "2000", "--block-size", "64"]) == 0
    assert main(["store", "info", str(out), "--verify"]) == 0
    summary = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert summary["complete"] and summary["n_tokens"] >= 2000 and summary["sites"] == ["blocks.1.hook_resid_post"]
