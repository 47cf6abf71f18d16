import pytest
import torch

from workbench.models import CATALOG, load_model, tiny_model, wrap_model
from workbench.models.fingerprint import fingerprint


def test_tiny_model_facts(tiny):
    assert tiny.n_layers == 2 and tiny.d_model == 64
    assert tiny.has_chat_template
    assert len(tiny.fingerprint) == 16
    batch = tiny.tokenize(["hello", "a longer text"])
    assert batch["input_ids"].shape[0] == 2
    assert tiny.model(**batch).logits.shape[-1] == len(tiny.tokenizer)


def test_fingerprint_is_dtype_stable_and_weight_sensitive():
    lm = tiny_model(seed=3)
    as_bf16 = tiny_model(seed=3)
    as_bf16.model.to(torch.bfloat16)
    assert fingerprint(lm.model, lm.config) == fingerprint(as_bf16.model, as_bf16.config)
    changed = tiny_model(seed=3)
    with torch.no_grad():
        changed.layers[1].mlp.down_proj.weight[0, 0] += 0.5
    assert fingerprint(changed.model, changed.config) != lm.fingerprint
    assert tiny_model(seed=4).fingerprint != lm.fingerprint


def test_local_folder_round_trip(tmp_path, tiny):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, device="cpu")
    assert loaded.fingerprint == tiny.fingerprint
    batch = tiny.tokenize(["same logits"])
    torch.testing.assert_close(loaded.model(**batch).logits, tiny.model(**batch).logits)


def test_bad_names_and_layers(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(IndexError, match="0..1"):
        tiny.check_layer(5)
    assert tiny.check_layer(-1) == 1
    with pytest.raises(ValueError, match="float32"):
        load_model("tiny", dtype="float8")


def test_wrap_model_uses_the_given_objects(tiny):
    wrapped = wrap_model(tiny.model, tiny.tokenizer, name="mine")
    assert wrapped.model is tiny.model and wrapped.fingerprint == tiny.fingerprint


def test_catalog_has_the_three_offline_models():
    assert {"smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m"} <= set(CATALOG)
    for spec in CATALOG.values():
        assert len(spec.sha256) == 64 and spec.chunks


@pytest.mark.integration
def test_smollm2_loads_from_cache_with_recorded_fingerprint(smollm2):
    from workbench.models.fingerprint import fingerprint as compute

    assert (smollm2.n_layers, smollm2.d_model) == (30, 576)
    assert smollm2.fingerprint == compute(smollm2.model, smollm2.config)
    out = smollm2.generate("What is the capital of France?", max_new_tokens=8)
    assert isinstance(out[0], str) and out[0].strip()
