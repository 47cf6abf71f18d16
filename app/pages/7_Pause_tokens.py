"""Pause tokens: attention mass on pause tokens per layer, and the needle-in-a-haystack grid, from saved results."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

import state  # noqa: E402

st.set_page_config(page_title="Pause tokens", layout="wide")
lm = state.sidebar()
st.title("Pause tokens")

command = (f"workbench pause train --model {state.model_arg(lm)} --out runs/pause/<name>\n"
           f"workbench pause niah --model {state.model_arg(lm)} --adapter runs/pause/<name> "
           "--out runs/pause/<name>/niah.json")
if state.optional_import("probes.pause") is None:
    state.train_first("pause-tuning results", command, "probes.pause")
    st.stop()
results = [p for root in state.artifact_roots() if (root / "pause").is_dir()
           for p in sorted((root / "pause").rglob("*.json"))]
if not results:
    state.train_first("pause-tuning results", command)
    st.stop()

path = st.selectbox("Results file", results, format_func=lambda p: str(p.relative_to(p.parents[1])),
                    key="pause_pick")
data = state.read_json(path) or {}


def is_grid(node) -> bool:
    """A NIAH grid as ``probes.pause.niah.run_grid`` writes it: {length: {depth: score}}."""
    return isinstance(node, dict) and bool(node) and all(
        str(k).isdigit() and isinstance(v, dict) and all(x is None or isinstance(x, (int, float)) for x in v.values())
        for k, v in node.items())


def is_curve(node) -> bool:
    return isinstance(node, list) and bool(node) and all(isinstance(v, (int, float)) for v in node)


def figures(node, prefix=""):
    """NIAH grids, per-layer curves and layer x head matrices found anywhere in the results, by dotted key."""
    from probes.pause import plots

    if is_grid(node):
        yield prefix.rstrip("."), plots.niah_heatmap(node, title=prefix.rstrip(".") or "NIAH")
    elif isinstance(node, dict):
        curves = {k: v for k, v in node.items() if is_curve(v)}
        if curves:
            yield prefix.rstrip("."), plots.mass_by_layer(curves, title=prefix.rstrip(".") or "per layer")
        for key, value in node.items():
            if key not in curves and key != "records":
                yield from figures(value, f"{prefix}{key}.")
    elif isinstance(node, list) and node and all(is_curve(row) for row in node):
        yield prefix.rstrip("."), plots.mass_heatmap(node, title=prefix.rstrip("."))


found = list(figures(data))
if not found:
    st.info(f"{path.name} holds no NIAH grid or per-layer series to plot; its content:")
    st.json(data, expanded=False)
for key, fig in found:
    fig.update_layout(height=360)
    st.plotly_chart(fig, key=f"pause_fig_{key}")
