"""G-ACT, ACT and static-neuron steering on the tiny model: shapes, invariants, scoping, storage, bad input."""

import threading

import pytest
import torch

from steering.gact import (Act, ActConfig, Gact, GactConfig, LANGUAGES, PROMPTS, StaticNeuron, fit_act_from_acts,
                           fit_gact, fit_gact_from_acts, fit_probes, kmeans, last_token_acts, per_layer_probe_accuracy,
                           splits, top_neurons, variant)
from steering.gact.evaluate import generate, summarize
from workbench import hooks
from workbench.models import tiny_model


@pytest.fixture(scope="session")
def lm():
    return tiny_model()


@pytest.fixture(scope="session")
def fitted(lm):
    prompts = list(PROMPTS[:6])
    return fit_gact(lm, prompts, GactConfig(k=3, inject_layers=[0], scale=2.0), batch_size=8)


# ---- prompts ---------------------------------------------------------------------------------------------------------
def test_prompts_are_many_distinct_and_language_free():
    assert len(PROMPTS) >= 120 and len(set(PROMPTS)) == len(PROMPTS)
    names = ("python", "c++", "java", "julia", "fortran", "matlab", "numpy")
    assert not [p for p in PROMPTS if any(n in p.lower() for n in names)]
    train, val, test = splits()
    assert not set(train) & set(test) and not set(val) & set(test) and len(test) >= 30
    assert variant("Do X.", "cpp").startswith("Do X.") and "C++" in variant("Do X.", "cpp")
    with pytest.raises(ValueError, match="unknown language"):
        variant("Do X.", "cobol")


# ---- k-means and probes ----------------------------------------------------------------------------------------------
def test_kmeans_separates_blobs_and_is_deterministic():
    torch.manual_seed(0)
    pts = torch.cat([torch.randn(20, 3) + 10, torch.randn(20, 3) - 10])
    a, b = kmeans(pts, 2, seed=1), kmeans(pts, 2, seed=1)
    assert torch.equal(a.labels_N, b.labels_N)
    assert len(set(a.labels_N[:20].tolist())) == 1 and a.labels_N[0] != a.labels_N[-1]


def test_kmeans_reseeds_empty_cluster():
    pts = torch.tensor([[0.0], [0.1], [0.2], [10.0]])
    init = torch.tensor([[0.1], [5.0], [100.0]])  # the third centroid attracts no point
    result = kmeans(pts, 3, init_KD=init)
    assert result.n_reseeded >= 1
    assert torch.bincount(result.labels_N, minlength=3).min() >= 1


def test_kmeans_too_few_distinct_points():
    with pytest.raises(ValueError, match="distinct points"):
        kmeans(torch.zeros(5, 3), 2)


def test_probe_step_reduces_loss_and_single_class_fallback():
    torch.manual_seed(0)
    x = torch.randn(40, 2, 8)
    y = (x[:, 0, 0] > 0).long()
    probes = fit_probes(x, y, 2)
    assert probes.accuracy(x, y)[0] > 0.8
    h, t = torch.randn(4, 8), torch.tensor([1, 1, 1, 1])
    first = probes.step(1, h, t, lr=0.5)
    assert probes.step(1, h, t, lr=0.5) < first
    constant = fit_probes(x, torch.zeros(40, dtype=torch.long), 3)
    assert (constant.proba(0, x[:, 0]).argmax(-1) == 0).all()


# ---- G-ACT ------------------------------------------------------------------------------------------------------------
def test_fit_shapes_and_probe_accuracy(lm, fitted):
    gact, acts, diffs, langs = fitted
    n = 6 * len(LANGUAGES)
    assert acts.shape == diffs.shape == (n, lm.n_layers, lm.d_model) and len(langs) == n
    assert gact.vectors_LKD.shape == (lm.n_layers, 3, lm.d_model)
    assert sum(gact.info["cluster_sizes"]) == n and min(gact.info["cluster_sizes"]) >= 1
    assert len(gact.target_clusters) >= 1
    acc = gact.probe_accuracy(acts, diffs)
    assert len(acc) == lm.n_layers and all(0 <= a <= 1 for a in acc)


def test_steer_adds_chosen_vector_only_at_injection_layers(lm, fitted):
    gact = fitted[0]
    text = ["Solve the heat equation."]
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(lm.n_layers)]
    base = hooks.record(lm, text, sites)
    with gact.steer(lm, layers=[1], refine_lr=0.0) as session:
        steered = hooks.record(lm, text, sites)
    assert torch.equal(base[sites[0]], steered[sites[0]])  # layer 0 untouched
    k = session.target_B[0]
    assert k in gact.target_clusters
    expected = base[sites[1]].clone()
    expected[:, -1] += 2.0 * gact.vectors_LKD[1, k]  # positions="last": only the last position of the pass
    torch.testing.assert_close(steered[sites[1]], expected)


def test_steer_zero_scale_is_identity_and_hooks_removed(lm, fitted):
    gact = fitted[0]
    ids = lm.tokenize(["Estimate pi."])
    before = lm.model(**ids).logits
    with gact.steer(lm, scale=0.0):
        same = lm.model(**ids).logits
    torch.testing.assert_close(before, same)
    with gact.steer(lm, scale=5.0):
        changed = lm.model(**ids).logits
    assert not torch.allclose(before, changed)
    torch.testing.assert_close(lm.model(**ids).logits, before)  # nothing left behind


def test_online_refinement_touches_session_copy_only(lm, fitted):
    gact = fitted[0]
    original = gact.probes.W_LKD.clone()
    with gact.steer(lm, refine_lr=0.5) as session:
        lm.generate(["Compute a histogram."], max_new_tokens=4)
    assert session.losses and len(session.choices) == 1
    assert torch.equal(gact.probes.W_LKD, original)
    assert not torch.equal(session.probes.W_LKD, original)
    assert torch.equal(gact.with_probes(session.probes).probes.W_LKD, session.probes.W_LKD)


def test_refinement_steps_on_prompt_passes_only_by_default(lm, fitted):
    import dataclasses

    gact = fitted[0]
    with gact.steer(lm, refine_lr=0.1) as prompt_only:
        lm.generate(["Compute a histogram."], max_new_tokens=4)
    assert len(prompt_only.losses) == gact.n_layers  # one step per layer, on the prompt pass
    every = gact.with_probes(gact.probes)
    every.config = dataclasses.replace(gact.config, refine_on="all")
    with every.steer(lm, refine_lr=0.1) as all_passes:
        lm.generate(["Compute a histogram."], max_new_tokens=4)
    assert len(all_passes.losses) > gact.n_layers
    with pytest.raises(ValueError, match="refine_on"):
        dataclasses.replace(gact.config, refine_on="sometimes")


def test_steering_is_thread_scoped(lm, fitted):
    gact = fitted[0]
    ids = lm.tokenize(["Fit a line."])
    base = lm.model(**ids).logits
    seen = {}
    ready, done = threading.Event(), threading.Event()

    def other():
        ready.wait()
        seen["other"] = lm.model(**ids).logits
        done.set()

    worker = threading.Thread(target=other)
    worker.start()
    with gact.steer(lm, scale=5.0):
        ready.set()
        done.wait(10)
    worker.join()
    torch.testing.assert_close(seen["other"], base)


def test_save_load_round_trip_and_wrong_model(lm, fitted, tmp_path):
    gact = fitted[0]
    gact.save(tmp_path / "g")
    loaded = Gact.load(tmp_path / "g", lm)
    assert torch.equal(loaded.vectors_LKD, gact.vectors_LKD) and loaded.cluster_languages == gact.cluster_languages
    assert loaded.config == gact.config
    wider = tiny_model(d_model=32)
    with pytest.raises(ValueError, match="d_model=64"):
        Gact.load(tmp_path / "g", wider)
    other = tiny_model(seed=1)
    with pytest.raises(ValueError, match="fingerprint"):
        loaded.steer(other)
    Gact.load(tmp_path / "g", other, strict=False)
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        Gact.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="kind"):
        Act.load(tmp_path / "g")


def test_fit_errors():
    acts = torch.randn(8, 2, 4)
    with pytest.raises(ValueError, match="target"):
        fit_gact_from_acts(acts, acts, ["python"] * 8, GactConfig(k=2))
    with pytest.raises(ValueError, match="same samples"):
        fit_gact_from_acts(acts, acts, ["cpp"] * 7, GactConfig(k=2))
    with pytest.raises(ValueError, match="distinct points"):
        fit_gact_from_acts(acts, torch.zeros(8, 2, 4), ["cpp"] * 8, GactConfig(k=2))
    with pytest.raises(ValueError, match="target must be"):
        GactConfig(target="cobol")


def test_no_target_cluster_falls_back(caplog):
    torch.manual_seed(0)
    acts = torch.randn(12, 2, 4)
    langs = ["python"] * 5 + ["cpp"] + ["java"] * 6
    diffs = torch.cat([torch.randn(6, 2, 4) + 5, torch.randn(6, 2, 4) - 5])
    gact = fit_gact_from_acts(acts, diffs, langs, GactConfig(k=2))
    assert "cpp" not in gact.cluster_languages
    assert gact.target_clusters == [gact.info["fallback_target_cluster"]]
    assert "no cluster is mostly cpp" in caplog.text


# ---- ACT ---------------------------------------------------------------------------------------------------------------
def test_act_fit_steer_save(lm, fitted, tmp_path):
    _, acts, diffs, langs = fitted
    act = fit_act_from_acts(acts, diffs, langs, ActConfig(k=2, layer=1, scale=3.0), lm=lm)
    ids = lm.tokenize(["Sort numbers."])
    before = lm.model(**ids).logits
    with act.steer(lm):
        after = lm.model(**ids).logits
    assert not torch.allclose(before, after)
    act.save(tmp_path / "a")
    loaded = Act.load(tmp_path / "a", lm)
    assert torch.equal(loaded.vectors_KD, act.vectors_KD) and loaded.layer == 1
    accs, chance = per_layer_probe_accuracy((acts, diffs), (acts, diffs), 2)
    assert len(accs) == len(chance) == lm.n_layers


# ---- static neuron ----------------------------------------------------------------------------------------------------
def test_static_neuron_matches_manual_amplification(lm):
    neuron = top_neurons(lm, "cpp", n=3)[0]
    assert neuron.score == max(n.score for n in top_neurons(lm, "cpp", n=10))
    ids = lm.tokenize(["Hello"])
    site = f"blocks.{neuron.layer}.hook_mlp_out"
    base = hooks.record(lm, ids, [site])[site]
    with StaticNeuron(neuron, gain=1.0, boost=0.0).steer(lm):
        same = hooks.record(lm, ids, [site])[site]
    torch.testing.assert_close(base, same)
    with StaticNeuron(neuron, gain=1.0, boost=3.0).steer(lm):
        boosted = hooks.record(lm, ids, [site])[site]
    w = lm.mlp(neuron.layer).down_proj.weight[:, neuron.index]
    torch.testing.assert_close(boosted - base, (3.0 * w).expand_as(base), atol=1e-5, rtol=1e-4)


# ---- evaluation -------------------------------------------------------------------------------------------------------
def test_generate_and_summarize(lm, fitted):
    texts, seconds, tokens = generate(lm, ["Do A.", "Do B.", "Do C."], max_new_tokens=3, batch_size=2,
                                      fixed_length=True, steer=lambda: fitted[0].steer(lm))
    assert len(texts) == 3 and tokens == 9 and seconds > 0
    summary = summarize(["```cpp\n#include <vector>\nstd::vector<int> v;\n```", "no code at all"], "cpp")
    assert summary["target_rate"] == 0.5 and summary["no_code_rate"] == 0.5 and summary["valid_rate"] == 0.5
    with pytest.raises(ValueError, match="at least one"):
        summarize([], "cpp")


def test_last_token_acts_rejects_empty(lm):
    with pytest.raises(ValueError, match="non-empty"):
        last_token_acts(lm, [])
