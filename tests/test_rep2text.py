"""Rep2Text on the tiny model: metrics, adapter, training/resume, save/load, baselines and bad input."""

from __future__ import annotations

import pytest
import torch

from probes.rep2text import Inverter, Rep2TextAdapter, Rep2TextConfig, evaluate, last_token_states, train
from probes.rep2text.data import spans_from_texts
from probes.rep2text.evaluate import logit_lens_readout
from probes.rep2text.metrics import bag_f1, bleu, bleu_tokens, lcs_length, rouge1, rouge_l, token_recovery
from probes.rep2text.train import batch_indices
from workbench.models import tiny_model

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank today.",
         "A stitch in time saves nine, and a penny saved is a penny earned.",
         "Colourless green ideas sleep furiously under the old oak tree at night."]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def lm():
    return tiny_model()  # its own instance: these tests add tokens / adapters


@pytest.fixture(scope="session")
def spans(lm):
    return spans_from_texts(lm.tokenizer, TEXTS, 8, 12, seed=0)


def small_cfg(**kw) -> Rep2TextConfig:
    base = dict(layer=1, n_soft_tokens=2, d_hidden=32, steps=6, batch_size=4, lr=1e-2, checkpoint_every=2)
    return Rep2TextConfig(**{**base, **kw})


# ---- metrics -------------------------------------------------------------------------------------------------------
def test_metrics_identity_and_disjoint():
    ref = "the cat sat on the mat"
    assert rouge1(ref, ref) == rouge_l(ref, ref) == bleu(ref, ref) == 1.0
    assert rouge1("dogs bark loudly", ref) == rouge_l("dogs bark loudly", ref) == 0.0
    assert token_recovery([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert token_recovery([1, 9, 3], [1, 2, 3, 4]) == 0.5
    assert bag_f1([3, 2, 1], [1, 2, 3]) == 1.0 and bag_f1([], [1]) == 0.0
    assert lcs_length("abcbdab", "bdcaba") == 4
    assert rouge_l("the mat sat", ref) < rouge1("the mat sat", ref)  # order matters for L only
    with pytest.raises(ValueError):
        token_recovery([1], [])


def test_bleu_matches_nltk():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    smooth = nltk_bleu.SmoothingFunction().method1
    pairs = [("the cat is on the mat today".split(), "the cat sat on the mat today".split()),
             ("a b c d e f g h".split(), "a b x d e y g h z".split()),
             ("one two three four five".split(), "five four three two one".split())]
    for hyp, ref in pairs:
        ours = bleu_tokens(hyp, ref)
        theirs = nltk_bleu.sentence_bleu([ref], hyp, smoothing_function=smooth)
        assert ours == pytest.approx(theirs, abs=1e-9)


# ---- adapter -------------------------------------------------------------------------------------------------------
def test_adapter_shape_and_scale():
    adapter = Rep2TextAdapter(d_in=16, d_out=24, n_soft_tokens=3, d_hidden=8, embed_rms=0.5)
    soft = adapter(torch.randn(5, 16) * 100)
    assert soft.shape == (5, 3, 24)
    assert torch.allclose(soft.pow(2).mean(-1).sqrt(), torch.full((5, 3), 0.5), atol=1e-3)
    with pytest.raises(ValueError, match="expects states"):
        adapter(torch.randn(5, 17))


def test_config_validates():
    with pytest.raises(ValueError):
        Rep2TextConfig(layer=0, decoder_mode="full")
    with pytest.raises(ValueError, match="soft"):
        Rep2TextConfig(layer=0, prompt="no placeholder")


# ---- data ----------------------------------------------------------------------------------------------------------
def test_spans_have_exact_length(lm, spans):
    assert spans and all(len(s) == 12 for s in spans)
    assert batch_indices(10, 4, 3, 0) == batch_indices(10, 4, 3, 0)
    epoch = sum((batch_indices(10, 5, s, 0) for s in range(2)), [])
    assert sorted(epoch) == list(range(10))


def test_states_shape_and_bad_input(lm, spans):
    states = last_token_states(lm, spans, [0, -1])
    assert set(states) == {0, 1} and states[1].shape == (len(spans), lm.d_model)
    # left padding: a short span in a batch with a long one gives the same state as alone
    short, long_ = spans[0][:5], spans[1]
    together = last_token_states(lm, [short, long_], [1])[1]
    alone = last_token_states(lm, [short], [1])[1]
    assert torch.allclose(together[0], alone[0], atol=1e-4)
    with pytest.raises(ValueError, match="empty"):
        last_token_states(lm, [""], [1])
    with pytest.raises(ValueError, match="context"):
        last_token_states(lm, [[5] * 600], [1])
    with pytest.raises(IndexError):
        last_token_states(lm, spans, [7])


# ---- training ------------------------------------------------------------------------------------------------------
def test_train_reduces_loss_and_leaves_decoder_alone(lm, spans):
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    flags = [p.requires_grad for p in lm.model.parameters()]
    inverter = train(lm, lm, spans[:4], small_cfg(steps=25), progress=False)
    assert inverter.losses[-1] < inverter.losses[0]
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert [p.requires_grad for p in lm.model.parameters()] == flags
    assert all(p.grad is None for p in lm.model.parameters())


def test_resume_matches_uninterrupted(lm, spans, tmp_path):
    cfg = small_cfg(steps=6)
    full = train(lm, lm, spans, cfg, out_dir=tmp_path / "full", progress=False)
    part = train(lm, lm, spans, cfg, out_dir=tmp_path / "part", progress=False, max_seconds=0.0)
    assert part.train_steps == 1 and not (tmp_path / "part" / "cfg.json").exists()
    resumed = train(lm, lm, spans, cfg, out_dir=tmp_path / "part", progress=False)
    assert resumed.train_steps == 6 and (tmp_path / "part" / "cfg.json").exists()
    for k, v in full.trainable_state().items():
        assert torch.allclose(v, resumed.trainable_state()[k], atol=1e-6), k


def test_save_load_roundtrip_and_wrong_model(lm, spans, tmp_path):
    inverter = train(lm, lm, spans, small_cfg(), out_dir=tmp_path, progress=False)
    loaded = Inverter.load(tmp_path, lm)
    states = inverter.states(spans[:3])
    assert loaded.generate_ids(states, 5) == inverter.generate_ids(states, 5)
    other = tiny_model(seed=1)
    with pytest.raises(ValueError, match="fingerprint"):
        Inverter.load(tmp_path, other)
    with pytest.raises(FileNotFoundError):
        Inverter.load(tmp_path / "nope", lm)


def test_lora_mode_trains_a_copy(lm, spans, tmp_path):
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    inverter = train(lm, lm, spans, small_cfg(decoder_mode="lora", lora_rank=2), out_dir=tmp_path, progress=False)
    assert any(k.startswith("lora.") for k in inverter.trainable_state())
    assert set(lm.model.state_dict()) == set(before)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    loaded = Inverter.load(tmp_path, lm)
    states = inverter.states(spans[:2])
    assert loaded.generate_ids(states, 4) == inverter.generate_ids(states, 4)


def test_evaluate_and_baselines(lm, spans):
    inverter = train(lm, lm, spans, small_cfg(steps=2), progress=False)
    result = evaluate(inverter, spans[:3])
    for key in ("token_recovery", "rouge1", "rougeL", "bleu", "bag_f1", "embed_cosine"):
        assert 0.0 <= result[key] <= 1.0 or key == "embed_cosine"
        assert key in result["untrained_adapter"] and key in result["logit_lens"]
    lens = logit_lens_readout(lm, inverter.states(spans[:2]), 4)
    assert len(lens) == 2 and all(len(x) == 4 for x in lens)
    assert isinstance(inverter.invert(["hello there"])[0], str)
    with pytest.raises(ValueError, match="empty"):
        inverter.invert([""])


def test_separate_decoder_model(lm, spans, tmp_path):
    decoder = tiny_model(d_model=32, seed=2)
    inverter = train(lm, decoder, spans, small_cfg(steps=2), out_dir=tmp_path, progress=False)
    assert inverter.adapter.d_in == lm.d_model and inverter.adapter.d_out == decoder.d_model
    assert Inverter.load(tmp_path, lm, decoder).cfg.layer == 1
    with pytest.raises(ValueError, match="decoder model"):
        Inverter.load(tmp_path, lm, lm)


@pytest.mark.integration
def test_smollm2_states_and_untrained_inverter():
    from workbench import data as wdata
    from workbench.models import load_model
    from probes.rep2text import load_spans

    wdata.fetch()
    real = load_model("smollm2-135m-instruct")
    spans = load_spans(real.tokenizer, 4, 16, source="wikipedia", split="test")
    assert all(len(s) == 16 for s in spans)
    states = last_token_states(real, spans, [6, 12])
    assert states[12].shape == (4, real.d_model) and torch.isfinite(states[12]).all()
    inverter = Inverter(real, real, Rep2TextConfig(layer=12))
    assert torch.isfinite(inverter.loss(states[12][:2], spans[:2]))
    with pytest.raises(ValueError, match="context"):
        last_token_states(real, [[100] * 9000], [1])
