"""The FAST vs BT experiment's summary and plots on fake numbers (the real run is bench-scale, not a unit test)."""

from __future__ import annotations

import json

from saes.experiments.fast_vs_bt import REGIMES, summarize, write_plots


def fake_results():
    out = {}
    for layer, scale in (("layer_6", 1.0), ("layer_15", 2.0)):
        out[layer] = {r: {"mse": scale * (i + 1), "special_mse": scale * (3 - i), "log2_special_mse": 0.0,
                          "log2_content_mse": 0.0, "log2_mse": 0.0, "fvu": 0.5, "ce_score": 0.9, "l0": 10.0}
                      for i, r in enumerate(REGIMES)}
    return out


def test_summary_compares_special_mse(tmp_path):
    summary = summarize(fake_results())
    assert summary["layer_6"]["fast_beats_btf_special_mse"] and summary["layer_6"]["fast_beats_btp_special_mse"]
    assert not summary["layer_15"]["fast_beats_btf_mse"]
    json.dumps(summary)
    write_plots(fake_results(), tmp_path / "plot.html")
    assert (tmp_path / "plot.html").read_text().count("FAST") >= 1


def test_combine_merges_architectures(tmp_path):
    from saes.experiments.fast_vs_bt import ExperimentConfig, combine
    cfg = ExperimentConfig(run_dir=str(tmp_path / "run"), out_json=str(tmp_path / "out.json"))
    (tmp_path / "run").mkdir()
    for arch in ("standard", "topk"):
        payload = {"results": fake_results(), "summary": summarize(fake_results()), "config": {"architecture": arch},
                   "timings": {}, "budget_tokens_per_sae": 1}
        (tmp_path / "run" / f"results_{arch}.json").write_text(json.dumps(payload))
    out = json.loads(combine(cfg).read_text())
    assert out["config"]["architecture"] == "standard" and set(out["by_architecture"]) == {"standard", "topk"}
    assert (tmp_path / "out.html").read_text().count("<div") >= 2


def test_user_corpora_replace_the_offline_demo(tmp_path):
    """--chat-data/--text-data feed every regime and the held-out set; train and held-out share no conversation."""
    from saes.experiments.fast_vs_bt import ExperimentConfig, _examples, chat_corpus
    chats = [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"a{i}"}]}
             for i in range(50)]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(c) for c in chats))
    (tmp_path / "docs.txt").write_text("\n".join(f"document {i}" for i in range(7)))
    cfg = ExperimentConfig(chat_data=str(tmp_path / "chat.jsonl"), text_data=str(tmp_path / "docs.txt"),
                           heldout_conversations=3)
    ex = _examples(cfg)
    assert sorted(ex["BT(P)"]) == sorted(f"document {i}" for i in range(7))
    assert ex["FAST"] == ex["BT(F)"] and len(ex["FAST"]) == 40 and len(ex["heldout"]) == 3
    train_q = {c[0]["content"] for c in ex["FAST"]}
    assert not train_q & {c[0]["content"] for c in ex["heldout"]}
    assert chat_corpus(cfg)[0] == ex["FAST"]  # deterministic split
