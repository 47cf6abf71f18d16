"""Invariants of hook sites and interventions on the tiny model."""

import threading

import pytest
import torch

from tests.conftest import assert_no_hooks
from workbench import hooks
from workbench.hooks.nnsight_backend import record_nnsight
from workbench.models import tiny_model

ALL_KINDS = ["resid_pre", "attn_out", "mlp_out", "resid_post"]


@pytest.fixture(scope="module")
def batch(tiny):
    return tiny.tokenize(["The quick brown fox", "hi there"])


def _sites(lm):
    return [hooks.Site(layer, kind) for layer in range(lm.n_layers) for kind in ALL_KINDS]


def test_site_names_parse_every_spelling(tiny):
    canonical = hooks.parse_site("blocks.1.hook_resid_post", tiny)
    assert hooks.parse_site("resid_post.1", tiny) == canonical
    assert hooks.parse_site(("resid_post", -1), tiny) == canonical
    assert hooks.parse_site("blocks.0.attn.hook_pattern").kind == "attn_pattern"
    with pytest.raises(ValueError, match="resid_post"):
        hooks.parse_site("blocks.0.hook_nope")
    with pytest.raises(IndexError, match="0..1"):
        hooks.parse_site("resid_post.7", tiny)


def test_record_matches_hf_hidden_states(tiny, batch):
    with torch.no_grad():
        hidden = tiny.model(**batch, output_hidden_states=True).hidden_states
    acts = hooks.record(tiny, batch, _sites(tiny))
    for layer in range(tiny.n_layers):
        torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_pre"], hidden[layer], atol=1e-5, rtol=0)
    torch.testing.assert_close(acts["blocks.0.hook_resid_post"], hidden[1], atol=1e-5, rtol=0)
    # transformers reports the last layer after the final norm
    torch.testing.assert_close(tiny.final_norm(acts["blocks.1.hook_resid_post"]), hidden[2], atol=1e-5, rtol=0)
    # residual bookkeeping: post = pre + attn_out + mlp_out
    for layer in range(tiny.n_layers):
        total = sum(acts[f"blocks.{layer}.hook_{k}"] for k in ("resid_pre", "attn_out", "mlp_out"))
        torch.testing.assert_close(total, acts[f"blocks.{layer}.hook_resid_post"], atol=1e-5, rtol=0)


def test_record_matches_transformerlens_bridge(batch):
    from transformer_lens.model_bridge.sources.transformers import boot

    ours, theirs = tiny_model(seed=0), tiny_model(seed=0)  # the bridge wraps its own copy
    bridge = boot("tiny", hf_model=theirs.model, tokenizer=theirs.tokenizer, device="cpu")
    _, cache = bridge.run_with_cache(batch["input_ids"], attention_mask=batch["attention_mask"])
    sites = _sites(ours) + [hooks.Site(layer, "attn_pattern") for layer in range(ours.n_layers)]
    acts = hooks.record(ours, batch, sites)
    valid = batch["attention_mask"].bool()
    for name, value in acts.items():
        if value.ndim == 3:
            torch.testing.assert_close(value[valid], cache[name][valid], atol=1e-5, rtol=0, msg=name)
        else:  # patterns: compare rows of real (non-padding) query positions
            for row in range(value.shape[0]):
                q = valid[row]
                torch.testing.assert_close(value[row][:, q][:, :, q], cache[name][row][:, q][:, :, q], atol=1e-5,
                                           rtol=0, msg=name)


def test_record_matches_nnsight(tiny, batch):
    sites = _sites(tiny)
    ours = hooks.record(tiny, batch, sites)
    theirs = record_nnsight(tiny, batch, sites)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=0)


def test_patterns_are_causal_distributions(tiny, batch):
    pattern = hooks.record(tiny, batch, ["blocks.1.attn.hook_pattern"])["blocks.1.attn.hook_pattern"]
    assert pattern.shape[:2] == (2, tiny.config.num_attention_heads)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    assert torch.triu(pattern[0], diagonal=1).abs().max() == 0


def test_record_stops_after_deepest_site(tiny, batch):
    calls = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, layer in enumerate(tiny.layers)]
    lm_head_calls = []
    handles.append(tiny.unembed.register_forward_hook(lambda *a: lm_head_calls.append(1)))
    try:
        hooks.record(tiny, batch, ["resid_post.0"])
        assert calls == [0] and not lm_head_calls
        calls.clear()
        hooks.record(tiny, batch, ["resid_post.0"], stop_early=False)
        assert calls == [0, 1] and lm_head_calls
    finally:
        for h in handles:
            h.remove()
    assert_no_hooks(tiny.model)


def test_steer_adds_vector_and_leaves_earlier_sites_bit_identical(tiny, batch):
    vector = torch.randn(tiny.d_model)
    clean = hooks.record(tiny, batch, _sites(tiny), stop_early=False)
    with hooks.intervene(tiny, [hooks.Add(site="resid_post.0", vector=vector, scale=2.0),
                                *[hooks.Record(site=s) for s in _sites(tiny)]]) as session:
        with torch.no_grad():
            tiny.model(**batch)
    torch.testing.assert_close(session["resid_post.0"], clean["blocks.0.hook_resid_post"] + 2.0 * vector)
    for kind in ("resid_pre", "attn_out", "mlp_out"):
        assert torch.equal(session[f"{kind}.0"], clean[f"blocks.0.hook_{kind}"])
    assert not torch.allclose(session["resid_post.1"], clean["blocks.1.hook_resid_post"])
    assert_no_hooks(tiny.model)


def test_v_minus_v_leaves_logits_unchanged(tiny, batch):
    from steering import SteeringVector

    v = SteeringVector(torch.randn(tiny.d_model), site="resid_pre.1")
    with torch.no_grad():
        clean = tiny.model(**batch).logits
        with (v - v).apply(tiny):
            same = tiny.model(**batch).logits
        with (3 * v).apply(tiny):
            moved = tiny.model(**batch).logits
    assert torch.equal(clean, same)
    assert not torch.allclose(clean, moved)


def test_ablation_removes_the_direction_everywhere(tiny, batch):
    direction = torch.randn(tiny.d_model)
    unit = direction / direction.norm()
    records = [hooks.Record(site=f"resid_post.{layer}") for layer in range(tiny.n_layers)]
    session = hooks.ablate(tiny, direction)
    with session, hooks.intervene(tiny, records), torch.no_grad():
        tiny.model(**batch)
    for rec in records:
        assert (rec.result() @ unit).abs().max() < 1e-4


def test_weights_never_change_and_hooks_go_away_on_error(tiny, batch):
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        with hooks.steer(tiny, "resid_post.0", torch.ones(tiny.d_model), scale=5.0):
            raise RuntimeError("boom")
    assert_no_hooks(tiny.model)
    handle = hooks.steer(tiny, "mlp_out.1", torch.ones(tiny.d_model)).attach()
    with torch.no_grad():
        tiny.model(**batch)
    handle.remove()
    assert_no_hooks(tiny.model)
    for key, value in tiny.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_scopes_during_generation(tiny):
    prompt = tiny.tokenize(["abc"])
    seen = []

    def spy(acts, ctx):
        seen.append((ctx.phase, acts.shape[1]))

    with hooks.apply(tiny, "resid_post.0", spy):
        tiny.model.generate(**prompt, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert seen[0] == ("prompt", prompt["input_ids"].shape[1])
    assert [phase for phase, _ in seen[1:]] == ["generated", "generated"]

    vector = torch.randn(tiny.d_model) * 10

    def generate():
        return tiny.model.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)

    base = generate()
    with hooks.steer(tiny, "resid_post.0", vector, scope="generated"):
        gen_only = generate()
    with hooks.steer(tiny, "resid_post.0", vector, scope="prompt"):
        prompt_only = generate()
    n = prompt["input_ids"].shape[1]
    # steering only generated positions cannot change the first new token (it is read from the prompt pass)
    assert gen_only[0, n] == base[0, n]
    assert not torch.equal(prompt_only, base) or not torch.equal(gen_only, base)


def test_threads_see_only_their_own_interventions(tiny):
    prompts = tiny.tokenize(["shared model"])
    vectors = {i: torch.randn(tiny.d_model) * (i + 1) for i in range(4)}

    def run(i):
        with torch.no_grad():
            if i is None:
                return tiny.model(**prompts).logits
            with hooks.steer(tiny, "resid_pre.1", vectors[i]):
                return tiny.model(**prompts).logits

    alone = {i: run(i) for i in [None, *vectors]}
    together, barrier = {}, threading.Barrier(5)

    def worker(i):
        barrier.wait()
        for _ in range(5):
            together[i] = run(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in [None, *vectors]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in alone:
        assert torch.equal(together[i], alone[i]), i
    assert_no_hooks(tiny.model)


def test_bad_vectors_and_sites_are_refused(tiny):
    with pytest.raises(ValueError, match="residual width is 64"):
        with hooks.steer(tiny, "resid_post.0", torch.ones(65)):
            pass
    with pytest.raises(ValueError, match="NaN"):
        with hooks.steer(tiny, "resid_post.0", torch.full((64,), float("nan"))):
            pass
    with pytest.raises(ValueError, match="read-only"):
        with hooks.steer(tiny, "blocks.0.attn.hook_pattern", torch.ones(64)):
            pass
    with pytest.raises(ValueError, match="token scope"):
        hooks.steer(tiny, "resid_post.0", torch.ones(64), scope="middle")
    assert_no_hooks(tiny.model)


def test_steering_vector_save_load(tmp_path, tiny):
    from steering import SteeringVector

    v = SteeringVector(torch.randn(64), site="resid_post.1", scale=3.0, scope="generated",
                       model_fingerprint=tiny.fingerprint, metadata={"method": "test"})
    v.save(tmp_path / "v")
    back = SteeringVector.load(tmp_path / "v.json")
    assert torch.equal(back.vector, v.vector) and back.site == v.site and back.scope == "generated"
    other = tiny_model(seed=9)
    with pytest.raises(ValueError, match="fingerprint"):
        back.apply(other)
    (tmp_path / "v.safetensors").write_bytes(b"garbage")
    with pytest.raises(Exception):
        SteeringVector.load(tmp_path / "v.json")
