"""Steering: build a vector from contrast prompts (or upload one), pick a strength, compare generations."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

import state  # noqa: E402
from steering.bundle import Bundle  # noqa: E402
from steering.contrast import READOUTS, compare_generations, contrast_vector  # noqa: E402
from steering.upload import MAX_UPLOAD_BYTES  # noqa: E402

st.set_page_config(page_title="Steering", layout="wide")
lm = state.sidebar()
st.title("Steering")

POSITIVE = "I love this, it is wonderful.\nWhat a great and happy day!\nThis makes me so glad."
NEGATIVE = "I hate this, it is awful.\nWhat a terrible and sad day!\nThis makes me so angry."

source = st.radio("Vector", ["Build from contrast prompts", "Upload a file"], horizontal=True, key="steer_source")
if source == "Build from contrast prompts":
    col_pos, col_neg = st.columns(2)
    positive = col_pos.text_area("Positive prompts (one per line)", POSITIVE, key="steer_pos", height=140)
    negative = col_neg.text_area("Negative prompts (one per line)", NEGATIVE, key="steer_neg", height=140)
    col_a, col_b, col_c = st.columns(3)
    layer = col_a.slider("Layer", 0, lm.n_layers - 1, lm.n_layers // 2, key="steer_layer")
    kind = col_b.selectbox("Site", ["resid_post", "resid_pre", "mlp_out", "attn_out"], key="steer_kind")
    readout = col_c.selectbox("Read activations at", READOUTS, key="steer_readout",
                              help="last: each prompt's last token (CAA); mean: average over its tokens")
    if st.button("Build vector", type="primary", key="steer_build"):
        pos = [line for line in positive.splitlines() if line.strip()]
        neg = [line for line in negative.splitlines() if line.strip()]
        if not pos or not neg:
            st.error("Give at least one positive and one negative prompt.")
        else:
            with st.spinner(f"Recording {len(pos) + len(neg)} prompts..."):
                vec = contrast_vector(lm, pos, neg, f"{kind}.{layer}", readout=readout)
            st.session_state[state.BUNDLE_KEY] = Bundle.from_vector(vec, lm, name=f"contrast-{kind}{layer}")
            st.success(f"Built a vector at {vec.site} (norm {vec.vector.norm():.2f}).")
else:
    files = st.file_uploader("Bundle .safetensors, manifest .json + .safetensors, steering-vector pair, or "
                             "llama.cpp control-vector .gguf", type=["safetensors", "json", "gguf"],
                             accept_multiple_files=True, key="steer_upload",
                             max_upload_size=MAX_UPLOAD_BYTES // 2**20)
    if files and st.button("Use uploaded file(s)", type="primary", key="steer_use_upload"):
        error = state.accept_upload(st.session_state, [(f.name, f.getvalue()) for f in files], lm)
        if error:
            st.error(error)
        else:
            st.success(f"Loaded bundle {st.session_state[state.BUNDLE_KEY].name!r}.")

bundle: Bundle | None = st.session_state.get(state.BUNDLE_KEY)
if bundle is None:
    st.info("Build or upload a vector to compare generations.")
    st.stop()

ops = ", ".join(f"{op.operation} @ {op.sites[0]}{'…' if len(op.sites) > 1 else ''} ×{op.scale:g} ({op.scope})"
                for op in bundle.ops)
st.markdown(f"**Active bundle** `{bundle.name}`: {ops}")

col_a, col_b = st.columns(2)
strength = col_a.slider("Strength (× the bundle's own scale)", -20.0, 20.0, 4.0, 0.5, key="steer_strength")
max_new = col_b.slider("New tokens", 4, 128, 32, key="steer_max_new")
prompt = st.text_area("Prompts (one per line)", "Tell me about your weekend.", key="steer_prompt", max_chars=4000)
chat = st.checkbox("Use the chat template", value=lm.has_chat_template, disabled=not lm.has_chat_template,
                   key="steer_chat")
if st.button("Generate", type="primary", key="steer_generate"):
    prompts = [p for p in prompt.splitlines() if p.strip()][:8]
    if not prompts:
        st.error("Type at least one prompt.")
        st.stop()
    try:
        session = bundle.apply(lm, scale=strength, strict=True)
    except ValueError as err:
        st.error(str(err))
        st.stop()
    with st.spinner("Generating unsteered and steered..."):
        rows = compare_generations(lm, prompts, session=session, max_new_tokens=max_new, chat=chat)
    st.session_state["steer_results"] = [(r.prompt, r.unsteered, r.steered, strength) for r in rows]

for prompt_text, plain, steered, used in st.session_state.get("steer_results", []):
    st.markdown(f"**{prompt_text}**")
    left, right = st.columns(2)
    left.caption("unsteered")
    left.code(plain, language=None, wrap_lines=True)
    right.caption(f"steered ×{used:g}")
    right.code(steered, language=None, wrap_lines=True)
