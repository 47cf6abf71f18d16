"""Export: download the session's steering bundle (safetensors + manifest) and its llama.cpp control vector."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

import state  # noqa: E402
from steering import gguf_control  # noqa: E402
from steering.bundle import Bundle  # noqa: E402

st.set_page_config(page_title="Export", layout="wide")
lm = state.sidebar()
st.title("Export")
st.caption("A bundle is `tensors.safetensors` (manifest embedded in its header) + `manifest.json`. Apply it to a plain "
           "transformers model with `steering.export.load_into(model, path)`; the GGUF is a llama.cpp control vector "
           "(`llama-cli -m model.gguf --control-vector control_vector.gguf`).")

sources: dict[str, Bundle] = {}
if st.session_state.get(state.BUNDLE_KEY) is not None:
    sources["this session's bundle"] = st.session_state[state.BUNDLE_KEY]
for folder in state.find_artifacts(("bundles",), lm, names=("manifest.json",)):
    try:
        sources[f"runs: {folder.name}"] = Bundle.load(folder)
    except (ValueError, OSError) as err:
        st.warning(f"skipped {folder}: {err}")

if not sources:
    st.info("No bundle yet. Build or upload a vector on the **Steering** page, or export one from the command line:")
    st.code("workbench export bundle runs/vectors/my_vector.json --out runs/bundles/my_vector "
            f"--model {lm.name if not lm.name.startswith('tiny') else 'smollm2-135m-instruct'}", language="bash")
    st.stop()

choice = st.selectbox("Bundle", list(sources), key="export_choice")
bundle = sources[choice]
col_a, col_b = st.columns(2)
name = col_a.text_input("Name", bundle.name, key="export_name", max_chars=80)
scale = col_b.number_input("Scale multiplier baked into the export", value=1.0, step=0.5, key="export_scale")
notes = st.text_area("Evaluation figures (JSON object, optional)", "{}", key="export_eval", height=80)
try:
    eval_figures = json.loads(notes or "{}")
    if not isinstance(eval_figures, dict):
        raise ValueError("expected a JSON object")
except ValueError as err:
    st.error(f"Evaluation figures must be a JSON object: {err}")
    st.stop()

out = bundle.scaled(scale) if scale != 1.0 else Bundle(bundle.ops, bundle.tensors, bundle.model, bundle.name,
                                                      bundle.provenance, bundle.eval)
out.name = name.strip() or bundle.name
out.eval = {**out.eval, **eval_figures}
manifest = out.manifest()
st.subheader("Manifest")
st.json(manifest, expanded=False)

safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in out.name)
col1, col2, col3 = st.columns(3)
col1.download_button("Bundle (.safetensors)", out.to_safetensors_bytes(), file_name=f"{safe}.safetensors",
                     mime="application/octet-stream", key="dl_bundle")
col2.download_button("manifest.json", json.dumps(manifest, indent=2, sort_keys=True), file_name="manifest.json",
                     mime="application/json", key="dl_manifest")
try:
    cv = gguf_control.from_bundle(out)
except ValueError as err:
    col3.caption(f"No llama.cpp GGUF for this bundle: {err}")
else:
    col3.download_button("llama.cpp control vector (.gguf)", gguf_control.to_bytes(cv), file_name=f"{safe}.gguf",
                         mime="application/octet-stream", key="dl_gguf")
    col3.caption("layers: " + ", ".join(f"direction.{k}" for k in sorted(cv.directions)))
