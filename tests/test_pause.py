"""Pause-token analysis on the tiny model: insertion, NIAH construction and judge, attention mass, LoRA tuning."""

from __future__ import annotations

import re

import pytest
import torch

from probes.pause import (PauseConfig, TuneConfig, attention_mass, case_attention, depths_grid, insert_pauses, judge,
                          load_pause_lora, make_case, marker_positions, pause_tune, run_grid, synthetic_examples,
                          with_pause_token)
from probes.pause import plots
from probes.pause.niah import place
from workbench.models import tiny_model

TEXTS = ["The river runs north past the mill. Birds fly south in winter. The old bridge creaks at night. " * 20,
         "Mountains are tall and cold. Valleys are green and low. Farmers plant wheat in spring. " * 20]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def lm():
    return tiny_model()  # its own instance: these tests add tokens / adapters


def test_insert_every_n_is_reversible(lm):
    text = TEXTS[0][:900]
    out = insert_pauses(text, lm.tokenizer, PauseConfig(every_n_tokens=100))
    n_tokens = len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert out.count("<PAUSE>") == pytest.approx(n_tokens // 100, abs=1)
    assert out.replace(" <PAUSE>", "") == text
    assert not out.endswith("<PAUSE>")


def test_insert_at_paragraphs(lm):
    text = "First paragraph here.\n\nSecond one.\n\nThird."
    out = insert_pauses(text, lm.tokenizer, PauseConfig(marker="[P]", every_n_tokens=None, at_paragraphs=True))
    assert out.count("[P]") == 2 and out.replace(" [P]", "") == text


def test_insert_bad_input(lm):
    with pytest.raises(ValueError, match="empty"):
        insert_pauses("   ", lm.tokenizer)
    with pytest.raises(ValueError):
        PauseConfig(every_n_tokens=None, at_paragraphs=False)
    with pytest.raises(ValueError):
        PauseConfig(marker=" ")


def test_marker_positions(lm):
    text = insert_pauses(TEXTS[1][:400], lm.tokenizer, PauseConfig(every_n_tokens=50))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    pos = marker_positions(ids, lm.tokenizer)
    marker_len = len(lm.tokenizer(" <PAUSE>", add_special_tokens=False)["input_ids"])
    assert len(pos) == text.count("<PAUSE>") * marker_len


def test_with_pause_token_copies(lm):
    vocab = len(lm.tokenizer)
    new = with_pause_token(lm, "<|pause|>")
    assert len(new.tokenizer) == vocab + 1 and len(lm.tokenizer) == vocab
    assert len(new.tokenizer("<|pause|>", add_special_tokens=False)["input_ids"]) == 1
    assert new.model.get_input_embeddings().weight.shape[0] == vocab + 1
    assert lm.model.get_input_embeddings().weight.shape[0] == vocab
    with pytest.raises(ValueError, match="already"):
        with_pause_token(new, "<|pause|>")


def test_place_and_judge():
    hay = "One sentence. Two sentence. Three sentence. Four."
    start, _ = place(hay, "NEEDLE.", 0.0)
    end, _ = place(hay, "NEEDLE.", 1.0)
    assert start.startswith("NEEDLE.") and end.endswith("NEEDLE.")
    assert place(hay, "NEEDLE.", 0.5)[0].replace("NEEDLE. ", "") == hay
    assert judge("The number is 1234567.", "1234567") == (1.0, 1.0)
    assert judge("1,234,567", "1234567") == (1.0, 1.0)
    exact, fuzzy = judge("It is 1234568", "1234567")
    assert exact == 0.0 and 0.8 < fuzzy < 1.0
    assert judge("no idea", "1234567") == (0.0, 0.0)
    assert depths_grid(10) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    with pytest.raises(ValueError):
        place(hay, "x", 1.5)


def test_make_case_length_and_errors(lm):
    case = make_case(lm, TEXTS, 300, 0.5, seed=3)
    assert abs(case.n_tokens - 300) <= 8
    assert f"{case.needles[0][1]}." in case.prompt
    paused = make_case(lm, TEXTS, 300, 0.5, seed=3, pause=PauseConfig(every_n_tokens=64))
    assert paused.needles == case.needles and "<PAUSE>" in paused.prompt
    multi = make_case(lm, TEXTS, 400, 0.2, n_needles=3)
    assert len(multi.needles) == 3 and all(v in multi.prompt for _, v in multi.needles)
    for depth in depths_grid(15):  # 1/3 + 2/3 rounds past 1.0: the last needle must wrap, not fail
        wrapped = make_case(lm, TEXTS, 400, depth, n_needles=3)
        assert all(v in wrapped.prompt for _, v in wrapped.needles)
    with pytest.raises(ValueError, match="context"):
        make_case(lm, TEXTS, 2000, 0.5)
    with pytest.raises(ValueError, match="longer length"):
        make_case(lm, TEXTS, 40, 0.5)


def test_distractor_needles(lm):
    from probes.pause.niah import judge

    case = make_case(lm, TEXTS, 400, 0.5, seed=1, distractors=4)
    decoys = case.extra["distractors"]
    asked_key, asked_value = case.needles[0]
    assert len(decoys) == 4 and asked_key not in {k for k, _ in decoys}
    assert asked_key in case.question and not any(k in case.question for k, _ in decoys)
    for key, value in [*decoys, *case.needles]:  # every needle sentence is in the haystack, intact
        assert f"The special magic number for {key} is {value}." in case.haystack
    assert abs(case.n_tokens - 400) <= 8  # decoys are budgeted like needles
    plain = make_case(lm, TEXTS, 400, 0.5, seed=1)
    assert plain.extra["distractors"] == [] and plain.needles[0][0] in plain.question
    assert judge(f"It is {decoys[0][1]}.", asked_value)[0] == 0.0
    with pytest.raises(ValueError, match="distractors"):
        make_case(lm, TEXTS, 400, 0.5, distractors=100)


def test_run_grid_structure(lm):
    grid = run_grid(lm, TEXTS, [200], [0.5, 1.0], 1, progress=False)
    assert set(grid["exact"]["200"]) == {"0.5", "1.0"}
    assert all(0.0 <= v <= 1.0 for v in grid["fuzzy"]["200"].values())
    assert len(grid["records"]) == 2


def test_attention_mass_invariants(lm):
    ids = torch.tensor(lm.tokenizer(TEXTS[0][:300], add_special_tokens=False)["input_ids"])
    n = ids.numel()
    mass = attention_mass(lm, ids, {"all": range(n), "first": [0], "rest": range(1, n)}, queries=[n - 2, n - 1])
    assert mass["all"].shape == (lm.n_layers, lm.config.num_attention_heads)
    assert torch.allclose(mass["all"], torch.ones_like(mass["all"]), atol=1e-4)
    assert torch.allclose(mass["first"] + mass["rest"], mass["all"], atol=1e-5)
    with pytest.raises(ValueError, match="context"):
        attention_mass(lm, torch.zeros(600, dtype=torch.long), {"a": [0]}, [1])


def test_case_attention_with_pauses(lm):
    cfg = PauseConfig(every_n_tokens=64)
    case = make_case(lm, TEXTS, 300, 0.5, pause=cfg)
    res = case_attention(lm, case, cfg.marker)
    assert res["n_pause_tokens"] > 0 and res["uniform_pause"] > 0
    assert ((res["needle"] >= 0) & (res["needle"] <= 1 + 1e-5)).all()
    assert res["pause"].sum() > 0


def test_pause_tune_roundtrip(lm, tmp_path):
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cfg = TuneConfig(steps=2, rank=2, lr=1e-2, lengths=(160,), pause=PauseConfig(every_n_tokens=64))
    examples = synthetic_examples(lm, TEXTS, 2, cfg)
    assert all(a.isdigit() and a in p for p, a in examples)
    tuned, summary = pause_tune(lm, examples, cfg, out_dir=tmp_path, progress=False)
    assert summary["steps_done"] == 2 and summary["base_fingerprint"] == lm.fingerprint
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    loaded = load_pause_lora(tmp_path, lm)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, tuned.model(ids).logits, atol=1e-5)
        assert not torch.allclose(loaded.model(ids).logits, lm.model(ids).logits, atol=1e-6)
    with pytest.raises(ValueError, match="fingerprint"):
        load_pause_lora(tmp_path, tiny_model(seed=1))


def test_tuning_examples_with_decoys_ask_for_one_of_several_codes(lm):
    cfg = TuneConfig(steps=3, lengths=(470,), distractors=3, pause=PauseConfig(every_n_tokens=200))
    for prompt, answer in synthetic_examples(lm, TEXTS, 3, cfg):
        codes = re.findall(r"access code for the \w+ vault is (\d+)", prompt)
        assert len(codes) == 4 and answer in codes  # the asked code plus 3 decoys
    with pytest.raises(ValueError, match="distractors"):
        TuneConfig(distractors=40)


def test_plots_build():
    grid = {"512": {"0.1": 1.0, "0.5": 0.0}, "1024": {"0.1": 0.5, "0.5": None}}
    assert len(plots.niah_heatmap(grid).data) == 1
    assert len(plots.depth_curves({"base": grid}).data) == 2
    assert len(plots.mass_by_layer({"needle": [0.1, 0.2]}, reference={"needle": 0.05}).data) == 1
    assert len(plots.mass_heatmap([[0.1, 0.2], [0.3, 0.4]]).data) == 1


def test_cli_registers():
    from workbench.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["pause", "niah", "--lengths", "512", "--every", "256"])
    assert args.func.__name__ == "_pause_niah" and args.every == 256
    args = parser.parse_args(["rep2text", "train", "--layer", "3", "--out", "x"])
    assert args.func.__name__ == "_r2t_train"


@pytest.mark.integration
def test_smollm2_niah_case_and_context_error():
    from workbench import data as wdata
    from workbench.models import load_model

    wdata.fetch()
    real = load_model("smollm2-135m-instruct")
    hay = wdata.load_wikipedia()
    case = make_case(real, hay, 512, 0.5, pause=PauseConfig(every_n_tokens=256))
    assert abs(case.n_tokens - 512) <= 12 and case.prompt.count("<PAUSE>") >= 1
    with pytest.raises(ValueError, match="context"):
        make_case(real, hay, 9000, 0.5)
    record = run_grid(real, hay, [512], [0.5], 1, progress=False)["records"][0]
    assert record["exact"] in (0.0, 1.0)
