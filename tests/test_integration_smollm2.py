"""Real-model checks on SmolLM2-135M-Instruct (marked integration; ~20 s on 2 cores)."""

import pytest
import torch

from workbench import hooks
from workbench.models import load_model

pytestmark = pytest.mark.integration

PROMPTS = ["The capital of France is", "Steering vectors change what a model writes."]


def test_smollm2_parity_with_hf_and_transformerlens(smollm2):
    from transformer_lens.model_bridge.sources.transformers import boot

    batch = smollm2.tokenize(PROMPTS)
    sites = [f"blocks.{layer}.hook_{kind}" for layer in (0, 10, 29) for kind in ("resid_pre", "attn_out",
                                                                                   "mlp_out", "resid_post")]
    acts = hooks.record(smollm2, batch, sites)
    with torch.no_grad():
        hidden = smollm2.model(**batch, output_hidden_states=True).hidden_states
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(acts["blocks.10.hook_resid_post"][valid], hidden[11][valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(acts["blocks.10.hook_resid_pre"][valid], hidden[10][valid], atol=1e-5, rtol=0)

    other = load_model("smollm2-135m-instruct", device="cpu")  # the bridge wraps its own copy
    bridge = boot("smollm2", hf_model=other.model, tokenizer=other.tokenizer, device="cpu")
    _, cache = bridge.run_with_cache(batch["input_ids"], attention_mask=batch["attention_mask"],
                                     names_filter=lambda name: name in sites)
    for name in sites:
        ours, theirs = acts[name][valid], cache[name][valid]
        # within 1e-5 of the activation scale (late-layer residuals reach |x| ~ 1e4, where float32 spacing is 1e-3)
        assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max(), name


def test_smollm2_steering_changes_generation_and_cleans_up(smollm2):
    batch = smollm2.tokenize(["I love", "I hate"])
    acts = hooks.record(smollm2, batch, ["resid_post.12"])["blocks.12.hook_resid_post"][:, -1]
    direction = acts[0] - acts[1]
    base = smollm2.generate("Tell me about your day.", max_new_tokens=12)
    with hooks.steer(smollm2, "resid_post.12", direction, scale=8.0):
        steered = smollm2.generate("Tell me about your day.", max_new_tokens=12)
    again = smollm2.generate("Tell me about your day.", max_new_tokens=12)
    assert steered != base and again == base
