"""SmolLM2 end to end at small scale: harvest chat activations, train, save, load with SAELens, evaluate."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.integration

SITE = "blocks.3.hook_resid_post"


def test_smollm2_sae_end_to_end(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    from saes.config import SAEConfig, TrainConfig
    from saes.evaluate import evaluate_sae
    from saes.pipeline import train_from_store
    from workbench import data
    from workbench.models import load_model
    from workbench.store import StoreConfig, harvest

    torch.set_num_threads(1)
    data.fetch()
    lm = load_model("smollm2-135m-instruct")
    chats = [data.to_chat(x) for x in data.load_alpaca()[:40]]
    cfg = dict(sites=[SITE], block_size=96, max_tokens=3000)
    train = harvest(lm, chats[:30], tmp_path / "train", StoreConfig(formatting="sequence", **cfg), progress=False)
    held = harvest(lm, chats[30:36], tmp_path / "held", StoreConfig(formatting="sequence", **cfg), progress=False)
    sae_cfg = SAEConfig(d_in=lm.d_model, d_sae=2 * lm.d_model, architecture="topk", k=16)
    tc = TrainConfig(total_tokens=2048, batch_size=256, lr=1e-3, lr_end=1e-4)
    train_from_store(train, sae_cfg, tc, tmp_path / "sae", site=SITE, regime="FAST", progress=False)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"))
    assert theirs.cfg.metadata.hook_name == SITE and theirs.cfg.d_in == lm.d_model
    from saes.io import load_sae
    sae, meta = load_sae(tmp_path / "sae", expect_fingerprint=lm.fingerprint)
    m = evaluate_sae(sae, held, SITE, lm=lm, ce_sequences=2)
    assert math.isfinite(m["special_mse"]) and math.isfinite(m["content_mse"])
    assert m["ce_clean"] <= m["ce_zero"] and m["kl"] >= 0
