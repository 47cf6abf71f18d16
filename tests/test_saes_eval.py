"""SAE evaluation, feature inspection, scoring and intervention on the tiny model and a tiny chat store."""

from __future__ import annotations

import math

import pytest
import torch

from saes.architectures import SparseAutoencoder
from saes.config import SAEConfig, TrainConfig
from saes.evaluate import evaluate_sae, reconstruction_metrics, spliced_lm_metrics
from saes.features import inspect_features, sample_live_features
from saes.intervention import special_token_sweep
from saes.scoring import LLMJudgeScorer, OfflineProxyScorer, score_features
from saes.trainer import train_sae
from workbench.models import tiny_model
from workbench.store import StoreConfig, harvest

SITE = "blocks.1.hook_resid_post"


def conversations(n: int, seed: int = 0):
    words = ["apple", "river", "stone", "cloud", "green", "seven", "quick", "table"]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pick = lambda k: " ".join(words[i] for i in torch.randint(len(words), (k,), generator=gen).tolist())  # noqa
        out.append([{"role": "user", "content": pick(4)}, {"role": "assistant", "content": pick(6)}])
    return out


@pytest.fixture(scope="session")
def lm():
    return tiny_model()


@pytest.fixture(scope="session")
def stores(lm, tmp_path_factory):
    root = tmp_path_factory.mktemp("sae_stores")
    cfg = dict(sites=[SITE], block_size=64, max_tokens=100_000, batch_size=8, shard_tokens=2048)
    train = harvest(lm, conversations(120), root / "train", StoreConfig(formatting="sequence", **cfg), progress=False)
    held = harvest(lm, conversations(16, seed=1), root / "held", StoreConfig(formatting="sequence", **cfg),
                   progress=False)
    return train, held


@pytest.fixture(scope="session")
def trained(stores):
    train, _ = stores
    cfg = SAEConfig(d_in=64, d_sae=256, architecture="topk", k=8)
    tc = TrainConfig(total_tokens=512 * 12, batch_size=512, lr=3e-3, lr_end=3e-4, init_batches=2)
    return train_sae(train.batches(SITE, batch_size=512, buffer_tokens=2048, epochs=3), cfg, tc, progress=False).sae


def identity_sae(d: int) -> SparseAutoencoder:
    """relu(x) - relu(-x) = x: a perfect reconstruction with d_sae = 2d."""
    sae = SparseAutoencoder(SAEConfig(d_in=d, d_sae=2 * d))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def zero_sae(d: int) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=d, d_sae=8))
    with torch.no_grad():
        for p in sae.parameters():
            p.zero_()
    return sae


def test_perfect_and_zero_sae_bound_the_scores(lm, stores):
    _, held = stores
    seqs = [s.token_ids for s in held.sequences(SITE)][:6]
    res = spliced_lm_metrics(lm, {"id": (identity_sae(64), SITE), "zero": (zero_sae(64), SITE)}, seqs, batch_size=4)
    assert res["id"]["ce_score"] == pytest.approx(1.0, abs=1e-4)
    assert res["id"]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert res["zero"]["ce_score"] == pytest.approx(0.0, abs=1e-6)
    rec = reconstruction_metrics(identity_sae(64), held.sequences(SITE))
    assert rec["mse"] < 1e-10 and rec["fvu"] < 1e-10
    rec0 = reconstruction_metrics(zero_sae(64), held.sequences(SITE))
    assert rec0["fvu"] > 1.0 and rec0["dead_frac"] == 1.0 and rec0["l0"] == 0


def test_trained_sae_metrics_are_consistent(lm, stores, trained):
    _, held = stores
    m = evaluate_sae(trained, held, SITE, lm=lm, ce_sequences=8)
    for key in ("mse", "log2_mse", "special_mse", "content_mse", "fvu", "l0", "dead_frac", "ce_score", "kl"):
        assert math.isfinite(m[key]), key
    assert m["log2_mse"] == pytest.approx(math.log2(m["mse"]))
    assert 0 < m["fvu"] < 1 and m["l0"] <= 8 and 0 <= m["dead_frac"] <= 1
    assert min(m["special_mse"], m["content_mse"]) <= m["mse"] * 1.5  # mse mixes the two per conversation
    assert m["kl"] >= 0


def test_eval_bad_inputs(lm, stores):
    _, held = stores
    with pytest.raises(ValueError, match="d_model=64"):
        evaluate_sae(SparseAutoencoder(SAEConfig(d_in=32, d_sae=64)), held, SITE)
    with pytest.raises(ValueError, match="no held-out tokens"):
        reconstruction_metrics(identity_sae(64), [])


def test_feature_report_and_scorers(lm, stores, trained):
    _, held = stores
    report = inspect_features(trained, held.sequences(SITE), top_k=5)
    assert report.n_tokens == held.n_tokens
    assert torch.all(report.hist_FB.sum(1) == (report.density_F * report.n_tokens).round().long())
    live = sample_live_features(report, n=10)
    assert live and all(report.density_F[f] > 0 for f in live)
    data = report.to_json(live, tokenizer=lm.tokenizer)
    feat = data["features"][0]
    ctxs = feat["top_contexts"]
    assert ctxs and ctxs[0]["activation"] == pytest.approx(feat["max"])
    assert [c["activation"] for c in ctxs] == sorted((c["activation"] for c in ctxs), reverse=True)
    proxy = score_features(OfflineProxyScorer(), data["features"])
    assert proxy["is_proxy"] and 1 <= proxy["mean"] <= 5
    judge = score_features(LLMJudgeScorer(lambda prompt: "Score: 4"), data["features"][:2])
    assert not judge["is_proxy"] and judge["top_range_frac"] == 1.0


def test_special_token_sweep(lm, trained):
    out = special_token_sweep(lm, trained, SITE, ["hello there", "apple river"], ["green stone"], alphas=(0, 50),
                              max_new_tokens=4)
    assert 0 <= out["feature"] < 256 and len(out["runs"]) == 2
    baseline = lm.generate(["green stone"], max_new_tokens=4)
    assert out["runs"][0]["generations"] == baseline  # alpha 0 changes nothing


def test_cli_train_and_eval(stores, tmp_path, capsys):
    from workbench.cli import main
    train, held = stores
    out = tmp_path / "sae"
    args = ["sae", "train", "--store", str(train.folder), "--out", str(out), "--architecture", "jumprelu",
            "--expansion", "2", "--tokens", "2048", "--batch-size", "256", "--lr", "1e-3"]
    assert main(args) == 0
    assert (out / "cfg.json").exists() and (out / "workbench.json").exists()
    assert main(args) == 1  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    metrics_path = tmp_path / "m.json"
    assert main(["sae", "eval", "--sae", str(out), "--store", str(held.folder), "--out", str(metrics_path),
                 "--features-out", str(tmp_path / "f.json")]) == 0
    assert metrics_path.exists() and (tmp_path / "f.json").exists()


def test_pipeline_bad_stores(stores, tmp_path):
    from saes.io import save_sae
    from saes.config import SAEMeta
    from saes.evaluate import evaluate_sae
    from saes.io import load_sae
    from saes.pipeline import train_from_store
    train, held = stores
    tc = TrainConfig(total_tokens=1 << 20, batch_size=1 << 18)
    with pytest.raises(ValueError, match="only"):  # tiny store
        train_from_store(held, SAEConfig(d_in=64, d_sae=128), tc, tmp_path / "a")
    with pytest.raises(ValueError, match="d_in=32"):  # width mismatch
        train_from_store(held, SAEConfig(d_in=32, d_sae=128), TrainConfig(total_tokens=512, batch_size=256),
                         tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    path = save_sae(identity_sae(64), tmp_path / "other", SAEMeta(model_fingerprint="ffffffffffffffff"))
    with pytest.raises(ValueError, match="fingerprint"):  # SAE from another model than the store
        load_sae(path, expect_fingerprint=held.fingerprint)
    with pytest.raises(KeyError, match="not in this store"):
        evaluate_sae(identity_sae(64), held, "blocks.0.hook_resid_post")
