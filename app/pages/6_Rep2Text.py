"""Rep2Text: pick a text, see what each trained inverter reconstructs from one layer's last-token state."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

import state  # noqa: E402

st.set_page_config(page_title="Rep2Text", layout="wide")
lm = state.sidebar()
st.title("Rep2Text")
st.caption("An inverter maps one layer's last-token hidden state to soft tokens a decoder turns back into text.")

command = f"workbench rep2text train --model {state.model_arg(lm)} --layer <l> --out runs/rep2text/layer<l>"
if state.optional_import("probes.rep2text") is None:
    state.train_first("Rep2Text inverter", command, "probes.rep2text")
    st.stop()
folders = state.find_artifacts(("rep2text",), lm, names=("inverter.json", "cfg.json", "manifest.json"))
if not folders:
    state.train_first("Rep2Text inverter", command)
    st.stop()

text = st.text_input("Text", "The cat sat on the mat and looked at the bird.", key="r2t_text", max_chars=500)


@st.cache_resource(show_spinner="Loading inverter...")
def load(path: str, fingerprint: str):
    from probes.rep2text.inverter import Inverter

    return Inverter.load(path, state.get_model(st.session_state["model_name"]))


if st.button("Reconstruct", key="r2t_run"):
    rows = []
    for folder in folders:
        try:
            inverter = load(str(folder), lm.fingerprint)
            with st.spinner(f"{folder.name}..."):
                rows.append({"inverter": folder.name, "layer": inverter.layer, "reconstruction": inverter.invert([text])[0]})
        except Exception as err:  # noqa: BLE001 - one broken artifact must not hide the others
            rows.append({"inverter": folder.name, "layer": None, "reconstruction": f"(could not run: {err})"})
    st.dataframe(sorted(rows, key=lambda r: (r["layer"] is None, r["layer"] or 0)), hide_index=True)
