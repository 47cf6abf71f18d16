"""WAS controller on the tiny model: the patch reaches every weighted layer, zero scale is exactly a no-op,
training separates labels, and save/load refuses foreign or corrupt files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from steering.controller import Controller, ControllerConfig, WASNet, patch_ops
from steering.controller_train import fit_controller, train
from steering.refusal import forward as fw
from tests.conftest import assert_no_hooks
from workbench import hooks
from workbench.models import tiny_model

N_LAYERS = 4


@pytest.fixture(scope="module")
def lm():
    return tiny_model(n_layers=N_LAYERS, d_model=64, seed=0)


def _controller(lm, steer_layers=None, directions=None, **cfg) -> Controller:
    torch.manual_seed(1)
    directions = torch.randn(64) if directions is None else directions
    config = ControllerConfig(read_k=2, hidden=16, steer_layers=steer_layers, **cfg)
    return Controller.create(lm, directions, config)


def _set_scale(ctrl: Controller, logit: float) -> None:
    """Make the MLP output a constant scale logit (weights then sigmoid(bias) = 0.5 per layer)."""
    torch.nn.init.zeros_(ctrl.net.net[2].weight)
    torch.nn.init.zeros_(ctrl.net.net[2].bias)
    ctrl.net.net[2].bias.data[0] = logit


def test_patch_reaches_every_weighted_layer(lm):
    """resid_post_l with the patch at layers {0..l} = resid_post_l with the patch at {0..l-1} + s·w_l·strength·d_l
    at the last position — for every weighted layer l. (The public code's hook order patched only the last.)"""
    batch = fw.encode(lm, ["tell me about cats", "hi"])
    layers = list(range(N_LAYERS))
    torch.manual_seed(0)
    dirs_LD = torch.nn.functional.normalize(torch.randn(N_LAYERS, 64), dim=-1)  # a different direction per layer
    coeff_BL = torch.tensor([[0.3, 0.5, 0.7, 0.9], [1.0, 0.2, 0.4, 0.6]])
    strength = 3.0
    sites = [hooks.Site(layer, "resid_post") for layer in layers]

    def resid_with_patch_at(upto: int) -> dict:
        ops = patch_ops(lm, layers[:upto], dirs_LD[:upto], strength, lambda: coeff_BL[:, :upto])
        with hooks.intervene(lm, ops), hooks.recording(lm, sites) as rec:
            with torch.no_grad():
                lm.model(**batch)
        return {s.layer: rec[s] for s in sites}

    for layer in layers:
        before, after = resid_with_patch_at(layer), resid_with_patch_at(layer + 1)
        expected = coeff_BL[:, layer, None] * strength * dirs_LD[layer]
        assert torch.allclose(after[layer][:, -1] - before[layer][:, -1], expected, atol=1e-5), layer
        assert torch.equal(after[layer][:, :-1], before[layer][:, :-1])  # only the last position


def test_patch_applies_at_every_generation_step_and_layer(lm):
    ctrl = _controller(lm)
    _set_scale(ctrl, 30.0)  # s ≈ 1, w = 0.5
    batch = fw.encode(lm, ["tell me about cats"])
    seen: list[tuple[int, int]] = []
    original = ctrl.ops

    def spy_ops(lm_, coeff):
        ops = original(lm_, coeff)
        for op in ops:
            inner = op.fn
            op.fn = (lambda f, layer: (lambda a, c: (seen.append((layer, a.shape[1])), f(a, c))[1]))(inner,
                                                                                                      op.site.layer)
        return ops

    ctrl.ops = spy_ops  # type: ignore[method-assign]
    ctrl.generate_batch(lm, batch, max_new_tokens=4, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    # 4 forwards (the recomputed last prompt token + 3 cached steps), each through every weighted layer
    assert sorted(seen) == sorted((layer, 1) for layer in range(N_LAYERS) for _ in range(4))


def test_zero_scale_generation_is_exactly_plain_generation(lm):
    ctrl = _controller(lm)
    _set_scale(ctrl, -40.0)  # s ≈ 4e-18
    batch = fw.encode(lm, ["hello there", "bake a cake please"])
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = lm.model.generate(**batch, **kw)
    controlled, decision = ctrl.generate_batch(lm, batch, **kw)
    assert_no_hooks(lm.model)  # nothing outlives the call
    assert torch.equal(plain, controlled)
    assert decision.scale_B.max() < 1e-10
    _set_scale(ctrl, 40.0)
    ctrl.config.strength = 50.0
    steered, _ = ctrl.generate_batch(lm, batch, **kw)
    assert not torch.equal(plain, steered)


def test_constant_zero_is_identity(lm):
    ctrl = _controller(lm)
    batch = fw.encode(lm, ["hello"])
    with torch.no_grad():
        base = lm.model(**batch).logits
        with ctrl.constant(lm, 0.0):
            assert torch.equal(lm.model(**batch).logits, base)
        with ctrl.constant(lm, 0.5):
            assert not torch.allclose(lm.model(**batch).logits, base)
        assert torch.equal(lm.model(**batch).logits, base)  # nothing outlives the block


def test_training_separates_labels():
    ctrl = Controller(net=WASNet(2 * 8, 3, 32), config=ControllerConfig(read_k=2, hidden=32, epochs=200),
                      read_layers=[2, 3], steer_layers=[0, 1, 2],
                      directions_LD=torch.eye(8)[:3], model_fingerprint="x", d_model=8)
    torch.manual_seed(0)
    pos, neg = torch.randn(20, 2, 8) + 2.0, torch.randn(20, 2, 8) - 2.0
    history = train(ctrl, pos, neg)
    assert history["train_accuracy"] == 1.0
    assert abs(history["mean_weight"] - 0.5) < 0.1
    out = ctrl.predict(torch.cat([pos, neg]))
    assert out.scale_B[:20].min() > 0.5 > out.scale_B[20:].max()


def test_fit_on_model_and_round_trip(lm, tmp_path):
    ctrl = fit_controller(lm, torch.randn(N_LAYERS, 64), ["make a bomb", "hack a bank"], ["bake a cake", "a poem"],
                          ControllerConfig(read_k=2, hidden=16, epochs=20), batch_size=2, direction="phrase")
    path = ctrl.save(tmp_path / "ctrl")
    meta = json.loads(path.read_text())
    assert meta["model_fingerprint"] == lm.fingerprint and meta["metadata"]["direction"] == "phrase"
    loaded = Controller.load(path, lm)
    acts = torch.randn(3, 2, 64)
    assert torch.equal(loaded.predict(acts).scale_B, ctrl.predict(acts).scale_B)
    assert torch.allclose(loaded.directions_LD, ctrl.directions_LD, atol=1e-6)


def test_load_refuses_foreign_wrong_width_and_nonfinite(lm, tmp_path):
    ctrl = _controller(lm)
    path = ctrl.save(tmp_path / "ctrl")
    with pytest.raises(ValueError, match="fingerprint"):
        Controller.load(path, tiny_model(n_layers=N_LAYERS, d_model=64, seed=1))
    with pytest.raises(ValueError, match="width"):
        Controller.load(path, tiny_model(n_layers=N_LAYERS, d_model=32, seed=0))
    tensors = load_file(str(tmp_path / "ctrl.safetensors"))
    tensors["directions"][0, 0] = float("inf")
    save_file(tensors, str(tmp_path / "ctrl.safetensors"))
    with pytest.raises(ValueError, match="NaN or inf"):
        Controller.load(path, lm)
    with pytest.raises(FileNotFoundError):
        Controller.load(tmp_path / "missing", lm)


def test_bad_directions_and_config(lm):
    with pytest.raises(ValueError, match="expected"):
        Controller.create(lm, torch.randn(32), ControllerConfig(read_k=2, hidden=8))
    with pytest.raises(ValueError, match="zeros"):
        Controller.create(lm, torch.zeros(64), ControllerConfig(read_k=2, hidden=8))
    with pytest.raises(ValueError, match="read_k"):
        Controller.create(lm, torch.randn(64), ControllerConfig(read_k=N_LAYERS + 1, hidden=8))
    with pytest.raises(ValueError):
        ControllerConfig(steer_layers=())


# ---- hooks-only application (what a deployed bundle uses) -----------------------------------------------------------
def _random_decisions(ctrl: Controller) -> None:
    """A controller whose scale and weights differ per prompt (random MLP, large output layer)."""
    torch.manual_seed(3)
    torch.nn.init.normal_(ctrl.net.net[2].weight, std=2.0)
    ctrl.config.strength = 20.0


def test_live_session_generates_exactly_like_generate_batch(lm):
    """Hooks-only control (decision read in a nested unsteered pass) = the cache-crop path of generate_batch: same
    decisions, same greedy tokens, and it really steers (differs from the plain model)."""
    ctrl = _controller(lm)
    _random_decisions(ctrl)
    batch = fw.encode(lm, ["tell me about cats", "how do I make a bomb at home"])
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    reference, decision = ctrl.generate_batch(lm, batch, **kw)
    with torch.no_grad():
        plain = lm.model.generate(**batch, **kw)
        with ctrl.session(lm) as live:
            steered = lm.model.generate(**batch, **kw)
    assert_no_hooks(lm.model)
    assert len(live.decisions) == 1  # one prompt pass; the cached steps reuse its decision
    assert torch.allclose(live.decisions[0].coeff_BL, decision.coeff_BL, atol=1e-6)
    assert torch.equal(steered, reference)
    assert not torch.equal(steered, plain)


def test_live_session_patch_reaches_every_layer_in_a_plain_forward(lm):
    ctrl = _controller(lm)
    _random_decisions(ctrl)
    batch = fw.encode(lm, ["hello there"])
    sites = [hooks.Site(layer, "resid_post") for layer in range(N_LAYERS)]
    plain = hooks.record(lm, batch, sites)
    recorders = [hooks.Record(site=s) for s in sites]
    with torch.no_grad(), ctrl.session(lm) as live, hooks.intervene(lm, recorders):
        lm.model(**batch)
    coeff_L = live.decisions[0].coeff_BL[0]
    # other active sessions see the nested read pass too (stopped after the last read layer), then the main pass
    assert [len(r.chunks) for r in recorders] == [2] * N_LAYERS
    for i, (site, rec) in enumerate(zip(sites, recorders)):
        assert torch.equal(rec.chunks[0], plain[site.name])  # the read pass is unsteered
        steered = rec.chunks[-1]
        delta = steered[0, -1] - plain[site.name][0, -1]
        if i == 0:  # first weighted layer: exactly the patch, nothing upstream changed
            assert torch.allclose(delta, coeff_L[0] * 20.0 * ctrl.directions_LD[0], atol=1e-4)
        assert delta.norm() > 1e-3, f"layer {i} not steered"
        assert torch.equal(steered[0, :-1], plain[site.name][0, :-1])  # only the last position


def test_controller_bundle_load_into_plain_model(lm, tmp_path):
    from steering import export as ex
    from steering.bundle import Bundle
    from steering.controller_bundle import controller_bundle

    ctrl = _controller(lm)
    _random_decisions(ctrl)
    bundle = controller_bundle(ctrl, lm, eval={"harmful_refusal": 0.5})
    ex.export(bundle, tmp_path / "ctrl")
    assert not (tmp_path / "ctrl" / ex.GGUF_NAME).exists()  # llama.cpp cannot run a controller
    with pytest.raises(ValueError, match="can only add"):
        ex.export_gguf(bundle, tmp_path / "x.gguf")
    loaded = Bundle.load(tmp_path / "ctrl")
    assert loaded.ops[0].operation == "controller" and loaded.eval == {"harmful_refusal": 0.5}
    batch = fw.encode(lm, ["tell me about cats", "hack a bank"])
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    reference, _ = ctrl.generate_batch(lm, batch, **kw)
    with torch.no_grad(), ex.load_into(lm.model, tmp_path / "ctrl", strict=False):  # the bare HF model
        steered = lm.model.generate(**batch, **kw)
    assert torch.equal(steered, reference)
    assert_no_hooks(lm.model)
    with torch.no_grad(), ex.load_into(lm, loaded, scale=0.0):  # scale multiplies the strength
        assert torch.equal(lm.model.generate(**batch, **kw), lm.model.generate(**batch, **kw))


def test_controller_bundle_rejects_bad_tensors(lm):
    from steering.bundle import Bundle
    from steering.controller_bundle import controller_bundle

    bundle = controller_bundle(_controller(lm), lm)
    manifest = bundle.manifest()
    bad = dict(bundle.tensors)
    bad["op0.directions"] = bad["op0.directions"][:2]
    manifest["tensors"]["op0.directions"]["shape"] = list(bad["op0.directions"].shape)
    with pytest.raises(ValueError, match="expected"):
        Bundle.from_manifest(manifest, bad)
    manifest = bundle.manifest()
    del manifest["operations"][0]["params"]["net_tensors"]
    with pytest.raises(ValueError, match="net_tensors"):
        Bundle.from_manifest(manifest, dict(bundle.tensors)).apply(lm, strict=False).attach()
    assert_no_hooks(lm.model)
