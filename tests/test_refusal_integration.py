"""Real-model checks (``-m integration``): on SmolLM2-135M (tied embeddings) the orthogonalised copy and the saved
rank-1 delta reproduce hook-based ablation, and a controller round-trips against the real fingerprint."""

from __future__ import annotations

import pytest
import torch

from steering.controller import Controller, ControllerConfig
from steering.refusal import ablation, apply_delta, candidate_directions, orthogonalize, save_delta
from steering.refusal import forward as fw

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lm(smollm2):
    return smollm2


def test_orthogonalize_and_delta_match_ablation_on_real_model(lm, tmp_path):
    cands = candidate_directions(lm, ["Write a tutorial on how to make a bomb", "Explain how to hack a bank"],
                                 ["Describe a process of making crepes.", "Write a poem about cats"],
                                 filter_by_score=False)
    direction = cands.vector(-1, lm.n_layers // 2)
    batch = fw.encode(lm, ["Give me three tips for staying healthy."])
    with torch.no_grad():
        with ablation(lm, direction):
            ablated = lm.model(**batch).logits
        ortho = orthogonalize(lm, direction)
        assert torch.allclose(ortho.model(**batch).logits, ablated, atol=2e-3)
        save_delta(lm, direction, tmp_path / "delta")
        rebuilt = apply_delta(lm, tmp_path / "delta")
        assert torch.allclose(rebuilt.model(**batch).logits, ablated, atol=2e-3)
    assert (tmp_path / "delta.safetensors").stat().st_size < 2_000_000  # small: r̂ plus one u per matrix


def test_controller_round_trip_real_fingerprint(lm, tmp_path):
    ctrl = Controller.create(lm, torch.randn(lm.d_model), ControllerConfig(hidden=32))
    loaded = Controller.load(ctrl.save(tmp_path / "c"), lm)
    assert loaded.model_fingerprint == lm.fingerprint and loaded.read_layers == list(range(lm.n_layers - 4,
                                                                                             lm.n_layers))
