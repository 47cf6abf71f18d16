"""Inspect a prompt: tokens, logit lens per layer, attention patterns, activation norms."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

import state  # noqa: E402
from probes.inspect import inspect_prompt  # noqa: E402
from probes.logit_lens import logit_lens  # noqa: E402

st.set_page_config(page_title="Inspect", layout="wide")
lm = state.sidebar()
st.title("Inspect")

text = st.text_area("Prompt", "The capital of France is", key="inspect_prompt", max_chars=2000)
use_chat = st.checkbox("Render as a chat turn (chat template)", value=False, disabled=not lm.has_chat_template,
                       key="inspect_chat")
if not text.strip():
    st.info("Type a prompt.")
    st.stop()
if use_chat:
    from workbench.chat import render_prompt

    text = render_prompt(lm.tokenizer, text)

with st.spinner("Running the model..."):
    lens = logit_lens(lm, text, add_special_tokens=not use_chat)
    layer = st.slider("Attention layer", 0, lm.n_layers - 1, lm.n_layers - 1, key="inspect_layer")
    seen = inspect_prompt(lm, text, pattern_layers=[layer], add_special_tokens=not use_chat)

labels = [f"{i}:{t!r}"[:18] for i, t in enumerate(lens.tokens)]
st.subheader(f"Tokens ({len(lens.tokens)})")
st.write(" ".join(f"`{t!r}`" for t in lens.tokens))

st.subheader("Logit lens")
st.caption("Each layer's resid_post through the final norm and unembedding. Colour: probability of that layer's top "
           "token; text: the token. The last row is the model's own prediction.")
top1 = [[row[0] for row in layer_rows] for layer_rows in lens.top_tokens]
fig = go.Figure(go.Heatmap(z=lens.top_probs[:, :, 0].numpy(), x=labels, y=list(range(lm.n_layers)),
                           text=top1, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
                           colorbar={"title": "p(top-1)"}))
fig.update_layout(xaxis_title="position", yaxis_title="layer", height=max(300, 22 * lm.n_layers))
st.plotly_chart(fig)

st.subheader("Attention pattern")
pattern_HQK = seen.patterns[layer]
head = st.selectbox("Head", ["mean over heads", *range(pattern_HQK.shape[0])], key="inspect_head")
z = pattern_HQK.mean(0) if head == "mean over heads" else pattern_HQK[int(head)]
fig = go.Figure(go.Heatmap(z=z.numpy(), x=labels, y=labels, colorscale="Viridis", zmin=0, zmax=1))
fig.update_layout(xaxis_title="key", yaxis_title="query", yaxis_autorange="reversed", height=500)
st.plotly_chart(fig)

st.subheader("Activation norms")
kind = st.radio("Site", ["resid_post", "attn_out", "mlp_out"], horizontal=True, key="inspect_norm_kind")
norms_LP = {"resid_post": seen.resid_norms, "attn_out": seen.attn_out_norms, "mlp_out": seen.mlp_out_norms}[kind]
fig = go.Figure(go.Heatmap(z=norms_LP.numpy(), x=labels, y=list(range(lm.n_layers)), colorscale="Magma"))
fig.update_layout(xaxis_title="position", yaxis_title="layer", height=max(300, 22 * lm.n_layers))
st.plotly_chart(fig)
