"""Interpretability workbench — analyst UI. Start with ``make app`` (``streamlit run app/Home.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st  # noqa: E402

import state  # noqa: E402

st.set_page_config(page_title="Interp workbench", layout="wide")
lm = state.sidebar()

st.title("Interpretability workbench")
st.markdown(f"Model **{lm.name}**: {lm.n_layers} layers, d_model {lm.d_model}, {lm.dtype} on {lm.device}, "
            f"chat template: {'yes' if lm.has_chat_template else 'no'}, fingerprint `{lm.fingerprint}`.")
st.caption("Pick another model in the sidebar. Models load once per server and are shared by every user; "
           "each user's steering applies only to their own requests.")

CAPABILITIES = [
    ("Inspect", "probes.logit_lens", (), "built in"),
    ("Steering", "steering.contrast", ("bundles", "vectors"), "build one on the Steering page"),
    ("SAE features", "saes", ("saes",), "workbench sae train --help"),
    ("Probes & G-ACT", "steering.gact", ("gact",), "workbench gact fit --help"),
    ("Refusal", "steering.refusal", ("refusal",), "workbench refusal direction --help"),
    ("Rep2Text", "probes.rep2text", ("rep2text",), "workbench rep2text --help"),
    ("Pause tokens", "probes.pause", ("pause",), "workbench pause --help"),
    ("Export", "steering.export", ("bundles",), "workbench export --help"),
]
rows = []
for page, module, kinds, hint in CAPABILITIES:
    installed = state.optional_import(module) is not None
    artifacts = len(state.find_artifacts(kinds, lm)) if kinds else 0
    rows.append({"page": page, "library": module, "available": "yes" if installed else "not yet",
                 "artifacts for this model": artifacts, "how to make one": hint})
st.subheader("What's available")
st.dataframe(rows, hide_index=True)
roots = state.artifact_roots()
st.caption("Artifacts are looked up under: " + (", ".join(f"`{r}`" for r in roots) if roots else
                                                "`runs/` (not created yet)") + ".")
