"""SAE features: pick an SAE, top activating contexts per feature, feature activations on a prompt, steer with a
feature's decoder direction."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

import state  # noqa: E402

st.set_page_config(page_title="SAE features", layout="wide")
lm = state.sidebar()
st.title("SAE features")

folder = state.pick_artifact(
    "SAE", ("saes", "sae"), lm, names=("sae_weights.safetensors",), module="saes.io", key="sae_pick",
    command=f"workbench store harvest ... && workbench sae train --store runs/stores/<store> --out runs/saes/<name>\n"
            f"workbench sae eval --sae runs/saes/<name> --store <held-out store> --model {state.model_arg(lm)} "
            "--features-out runs/saes/<name>/features.json")
if folder is None:
    st.stop()


@st.cache_resource(show_spinner="Loading SAE...")
def load(path: str, fingerprint: str, mtime: float):
    from saes.io import load_sae

    return load_sae(path, expect_fingerprint=fingerprint)


try:
    sae, meta = load(str(folder), lm.fingerprint, (folder / "sae_weights.safetensors").stat().st_mtime)
except Exception as err:  # noqa: BLE001 - show any loader error, change nothing
    st.error(f"Could not load the SAE at {folder}: {err}")
    st.stop()
site = meta.hook_name or "resid_post.0"
st.caption(f"{folder} · site `{site}` · {sae.cfg.d_sae} latents · architecture {sae.cfg.architecture}")

tab_prompt, tab_contexts, tab_steer = st.tabs(["On your prompt", "Top contexts", "Steer with a feature"])
with tab_prompt:
    from probes.feature_acts import feature_activations

    text = st.text_input("Prompt", "Hello, how are you?", key="sae_prompt", max_chars=2000)
    if text.strip():
        fa = feature_activations(lm, sae, site, text, top_n=12)
        fig = go.Figure(go.Heatmap(z=fa.acts_FP.numpy(), x=[f"{i}:{t!r}"[:16] for i, t in enumerate(fa.tokens)],
                                   y=[f"f{f}" for f in fa.features], colorscale="Oranges"))
        fig.update_layout(xaxis_title="token", yaxis_title="feature (top by max activation)", height=420)
        st.plotly_chart(fig)

with tab_contexts:
    reports = sorted(folder.glob("*features*.json"))
    if not reports:
        state.train_first("feature report", f"workbench sae eval --sae {folder} --store <held-out store> "
                                             f"--model {state.model_arg(lm)} --features-out {folder}/features.json")
    else:
        report = json.loads(reports[0].read_text())
        feats = {f["index"]: f for f in report.get("features", [])}
        if not feats:
            st.info("The feature report lists no live features.")
        else:
            pick = st.selectbox("Feature", list(feats), key="sae_feature")
            feat = feats[pick]
            st.caption(f"density {feat['density']:.2e} · max {feat['max']:.3g} · mean when active "
                       f"{feat['mean_active']:.3g}")
            for ctx in feat.get("top_contexts", []):
                toks = ctx.get("tokens") or [str(t) for t in ctx.get("token_ids", [])]
                hl = ctx.get("highlight", -1)
                st.markdown(f"`{ctx['activation']:.3g}` " + "".join(
                    f"**[{t}]**" if i == hl else t for i, t in enumerate(toks)).replace("\n", "⏎"))

with tab_steer:
    from steering.bundle import Bundle
    from steering.contrast import compare_generations
    from steering.vector import SteeringVector

    feature = st.number_input("Feature index", 0, sae.cfg.d_sae - 1, 0, key="sae_steer_feature")
    alpha = st.slider("alpha (units of activation norm)", -200.0, 200.0, 20.0, key="sae_alpha")
    prompt = st.text_input("Prompt", "Tell me a story.", key="sae_steer_prompt", max_chars=2000)
    if st.button("Generate", key="sae_generate"):
        direction = sae.W_dec[int(feature)].detach().float()
        vec = SteeringVector(direction / direction.norm(), site, scale=alpha, model_fingerprint=lm.fingerprint,
                             metadata={"provenance": {"method": "SAE decoder row", "sae": str(folder),
                                                      "feature": int(feature)}})
        st.session_state[state.BUNDLE_KEY] = Bundle.from_vector(vec, lm, name=f"sae-f{int(feature)}")
        with st.spinner("Generating..."):
            state.comparison(compare_generations(lm, [prompt], vec, max_new_tokens=32))
        st.caption("This feature is now the session's bundle: export it on the Export page.")
