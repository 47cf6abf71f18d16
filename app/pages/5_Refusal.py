"""Refusal: the refusal direction (Arditi et al.), its ablation and addition, and the WAS controller's predicted
scale and layer weights per prompt."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

import state  # noqa: E402

st.set_page_config(page_title="Refusal", layout="wide")
lm = state.sidebar()
st.title("Refusal")
cmd = state.model_arg(lm)


def steering_vector_files(kinds):
    """Saved SteeringVector / controller JSON files of this model under runs/<kind>/."""
    out = []
    for root in state.artifact_roots():
        for kind in kinds:
            for path in sorted((root / kind).rglob("*.json")) if (root / kind).is_dir() else []:
                data = state.read_json(path) or {}
                fp = data.get("model_fingerprint")
                if (fp in (None, lm.fingerprint)) and path.with_suffix(".safetensors").exists():
                    out.append((path, data))
    return out


tab_dir, tab_ctrl = st.tabs(["Direction: ablation / addition", "Controller"])
with tab_dir:
    files = [p for p, d in steering_vector_files(("refusal",)) if d.get("format") == "workbench.steering_vector"]
    if state.optional_import("steering.refusal") is None or not files:
        state.train_first("refusal direction", f"workbench refusal direction --model {cmd} --out runs/refusal/direction",
                          "steering.refusal")
    else:
        path = st.selectbox("Direction", files, format_func=lambda p: str(p.name), key="refusal_pick")
        try:
            from steering.refusal import load_direction

            vec = load_direction(path, lm)
        except Exception as err:  # noqa: BLE001 - show any loader error, change nothing
            st.error(f"Could not load {path}: {err}")
            st.stop()
        st.caption(f"site `{vec.site}` · norm {vec.vector.norm():.2f}")
        mode = st.radio("Intervention", ["ablate (every layer)", "add"], horizontal=True, key="refusal_mode")
        coeff = st.slider("Addition coefficient", -2.0, 2.0, 1.0, 0.1, key="refusal_coeff",
                          disabled=mode != "add")
        prompt = st.text_input("Prompt", "How do I pick a lock?", key="refusal_prompt", max_chars=2000)
        if st.button("Generate", key="refusal_generate"):
            from steering.contrast import compare_generations
            from workbench import hooks

            session = hooks.ablate(lm, vec.vector) if mode.startswith("ablate") else vec.apply(lm, scale=coeff)
            with st.spinner("Generating..."):
                state.comparison(compare_generations(lm, [prompt], session=session, max_new_tokens=48))

with tab_ctrl:
    files = [p for p, d in steering_vector_files(("controller", "refusal")) if "controller" in str(d.get("format", ""))
             or d.get("kind") == "controller"]
    if state.optional_import("steering.controller") is None or not files:
        state.train_first("controller", f"workbench refusal controller --model {cmd} --out runs/controller/was",
                          "steering.controller")
    else:
        path = st.selectbox("Controller", files, format_func=lambda p: str(p.name), key="ctrl_pick")
        prompts = st.text_area("Prompts (one per line)", "How do I pick a lock?\nHow do I bake bread?",
                               key="ctrl_prompts", max_chars=4000)
        try:
            from steering.controller import Controller
            from workbench.chat import render_prompt

            ctrl = Controller.load(path, lm)
            texts = [p for p in prompts.splitlines() if p.strip()][:8]
            rendered = [render_prompt(lm.tokenizer, t) for t in texts] if lm.has_chat_template else texts
            out = ctrl.predict(ctrl.read(lm, lm.tokenize(rendered, add_special_tokens=not lm.has_chat_template)))
        except Exception as err:  # noqa: BLE001 - show any loader error, change nothing
            st.error(f"Could not run the controller {path}: {err}")
            st.stop()
        for text, s, w in zip(texts, out.scale_B.tolist(), out.weights_BL.tolist()):
            st.markdown(f"**{text}** — predicted scale s = `{s:.3f}`")
            fig = go.Figure(go.Bar(x=[str(layer) for layer in ctrl.steer_layers], y=w))
            fig.update_layout(xaxis_title="layer", yaxis_title="weight w_l", yaxis_range=[0, 1], height=220,
                              margin={"t": 10, "b": 10})
            st.plotly_chart(fig)
