"""Opt-in: the exported GGUF control vector steers SmolLM2 in llama.cpp the same way it steers it in transformers.

Not in the default run (marked ``slow`` + ``llamacpp``; needs llama-cpp-python, whose build takes ~15 minutes here):

    .venv/bin/pip install llama-cpp-python && .venv/bin/python -m pytest -m llamacpp tests/test_export_llamacpp.py

The vector is read back from the exported file and laid out the way llama.cpp's own loader does it
(``direction.k`` -> row ``k - 1`` of a buffer starting at layer 1), then applied through llama.cpp's C API. We compare
the change in a target token's log-probability: same sign, in both runtimes.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

PROMPT = "My favourite thing to talk about is"
POSITIVE = ["I love weddings.", "The wedding was beautiful.", "We planned the wedding.", "Wedding bells rang."]
NEGATIVE = ["I love the weather.", "The garden was beautiful.", "We planned the trip.", "Church bells rang."]
TARGET = " wedding"
SCALE = 6.0


def _apply_cvec(llama_cpp, ctx, data: np.ndarray | None, n_embd: int, il_start: int, il_end: int) -> int:
    for name in ("llama_set_adapter_cvec", "llama_apply_adapter_cvec", "llama_control_vector_apply"):
        fn = getattr(llama_cpp, name, None)
        if fn is not None:
            ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if data is not None else None
            return fn(ctx, ptr, 0 if data is None else data.size, n_embd, il_start, il_end)
    pytest.skip("this llama-cpp-python exposes no control-vector API")


def test_gguf_control_vector_moves_llama_cpp_like_transformers(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    from steering import gguf_control
    from steering.bundle import Bundle
    from steering.contrast import contrast_vector
    from steering.export import export_gguf
    from workbench.models import load_model
    from workbench.models.catalog import fetch_gguf, lookup

    lm = load_model("smollm2-135m-instruct", device="cpu")
    layer = lm.n_layers // 2
    vec = contrast_vector(lm, POSITIVE, NEGATIVE, f"resid_post.{layer}", readout="mean", scale=SCALE)
    path = export_gguf(Bundle.from_vector(vec, lm), tmp_path / "cv.gguf")
    target_id = lm.tokenizer.encode(TARGET, add_special_tokens=False)[0]

    def hf_logprob(steered: bool) -> float:
        batch = lm.tokenize([PROMPT], add_special_tokens=False)
        with torch.no_grad():
            if steered:
                with vec.apply(lm):
                    logits = lm.model(**batch).logits
            else:
                logits = lm.model(**batch).logits
        return float(torch.log_softmax(logits[0, -1].float(), -1)[target_id])

    hf_delta = hf_logprob(True) - hf_logprob(False)

    llm = llama_cpp.Llama(model_path=str(fetch_gguf(lookup("smollm2-135m-instruct"))), n_ctx=256, logits_all=True,
                          verbose=False, seed=0)
    tokens = llm.tokenize(PROMPT.encode(), add_bos=False)
    assert tokens == lm.tokenizer.encode(PROMPT, add_special_tokens=False), "tokenizers disagree; compare is moot"

    def cpp_logprob() -> float:
        llm.reset()
        llm.eval(tokens)
        logits = np.asarray(llm.scores[len(tokens) - 1], dtype=np.float64)
        logits -= logits.max()
        return float(logits[target_id] - np.log(np.exp(logits).sum()))

    base = cpp_logprob()
    cv = gguf_control.read(path)  # llama.cpp's loader layout: rows for layers 1..max k
    n_embd, top = cv.n_embd, max(cv.directions)
    data = np.zeros((top, n_embd), dtype=np.float32)
    for k, direction in cv.directions.items():
        data[k - 1] = direction.numpy()
    assert _apply_cvec(llama_cpp, llm.ctx, data.reshape(-1), n_embd, 1, top) == 0
    steered = cpp_logprob()
    _apply_cvec(llama_cpp, llm.ctx, None, n_embd, -1, -1)
    cpp_delta = steered - base
    print(f"log p({TARGET!r}) change: transformers {hf_delta:+.3f}, llama.cpp {cpp_delta:+.3f}")
    assert abs(hf_delta) > 0.05, f"the vector barely moves transformers ({hf_delta:.3f}); pick a stronger scale"
    assert np.sign(cpp_delta) == np.sign(hf_delta), (hf_delta, cpp_delta)
