"""Probes & G-ACT: per-layer probe accuracy of a fitted G-ACT/ACT steerer, and steered vs unsteered generations."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

import state  # noqa: E402

st.set_page_config(page_title="Probes & G-ACT", layout="wide")
lm = state.sidebar()
st.title("Probes & G-ACT")

folder = state.pick_artifact("G-ACT / ACT steerer", ("gact", "act"), lm, module="steering.gact", key="gact_pick",
                             names=("cfg.json",),
                             command=f"workbench gact fit --model {state.model_arg(lm)} --out runs/gact/<name>")
if folder is None:
    st.stop()
cfg = state.read_json(folder / "cfg.json") or {}
kind = cfg.get("kind", "gact")


@st.cache_resource(show_spinner="Loading steerer...")
def load(path: str, kind: str, fingerprint: str, mtime: float):
    from steering.gact import Act, Gact

    return (Gact if kind == "gact" else Act).load(path, state.get_model(st.session_state["model_name"]))


try:
    steerer = load(str(folder), kind, lm.fingerprint, (folder / "cfg.json").stat().st_mtime)
except Exception as err:  # noqa: BLE001 - show any loader error, change nothing
    st.error(f"Could not load {folder}: {err}")
    st.stop()

curves = {}
for source in [cfg, *(state.read_json(p) or {} for p in sorted(folder.glob("*.json")) if p.name != "cfg.json")]:
    stack = [source]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if "acc" in key.lower() and isinstance(value, list) and value and all(
                        isinstance(v, (int, float)) for v in value):
                    curves[key] = value
                else:
                    stack.append(value)
if curves:
    fig = go.Figure([go.Scatter(y=v, mode="lines+markers", name=k) for k, v in curves.items()])
    fig.update_layout(xaxis_title="layer", yaxis_title="probe accuracy", yaxis_range=[0, 1], height=380)
    st.plotly_chart(fig)
else:
    state.train_first("per-layer accuracy figures",
                      f"workbench gact eval --model {state.model_arg(lm)} --steerer {folder}")

st.subheader("Steer and compare")
scale = st.slider("Scale", 0.0, 8.0, float(cfg.get("config", {}).get("scale", 1.0) or 1.0), 0.25, key="gact_scale")
prompt = st.text_input("Prompt", "Write a function that integrates an ODE.", key="gact_prompt", max_chars=2000)
if st.button("Generate", key="gact_generate"):
    from steering.contrast import compare_generations

    with st.spinner("Generating..."):
        state.comparison(compare_generations(lm, [prompt], session=steerer.steer(lm, scale=scale),
                                             max_new_tokens=64))
