"""Every app page runs under Streamlit's AppTest on the tiny model without exceptions; the steering comparison and
exports work end to end; a bad upload changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app"
PAGES = [APP / "Home.py", *sorted((APP / "pages").glob("*.py"))]
TIMEOUT = 120


@pytest.fixture(autouse=True)
def tiny_app(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_APP_MODEL", "tiny (test)")
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))  # no artifacts unless a test writes some
    monkeypatch.syspath_prepend(str(APP))


def run_page(page: Path, session: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(page), default_timeout=TIMEOUT)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_pages_exist():
    names = [p.name for p in PAGES]
    assert names[0] == "Home.py" and len(names) >= 4, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_runs_without_exceptions(page):
    at = run_page(page)
    assert at.session_state["model_name"] == "tiny (test)"
    assert not at.error, [e.value for e in at.error]


def test_inspect_shows_logit_lens_attention_and_norms():
    at = run_page(APP / "pages" / "1_Inspect.py")
    assert len(at.get("plotly_chart")) == 3
    at.text_area(key="inspect_prompt").input("abc").run()
    assert not at.exception
    at.selectbox(key="inspect_head").select(1).run()
    assert not at.exception and len(at.get("plotly_chart")) == 3


def test_steering_comparison_end_to_end():
    import state

    at = run_page(APP / "pages" / "2_Steering.py")
    assert state.BUNDLE_KEY not in at.session_state
    at.button(key="steer_build").click().run()
    assert not at.exception
    bundle = at.session_state[state.BUNDLE_KEY]
    assert bundle.ops[0].operation == "add" and bundle.tensors["op0.vector"].shape == (64,)
    at.slider(key="steer_max_new").set_value(6)
    at.text_area(key="steer_prompt").input("hello\nworld")
    at.button(key="steer_generate").click().run()
    assert not at.exception
    results = at.session_state["steer_results"]
    assert [r[0] for r in results] == ["hello", "world"]
    assert len(at.code) == 4  # unsteered + steered per prompt


def test_export_page_offers_bundle_and_gguf():
    import state
    from workbench.models import tiny_model

    at = run_page(APP / "pages" / "8_Export.py", {state.BUNDLE_KEY: vec_bundle(tiny_model(), name="ones")})
    assert not at.error
    labels = [el.proto.label for el in at.get("download_button")]
    assert labels == ["Bundle (.safetensors)", "manifest.json", "llama.cpp control vector (.gguf)"]


def test_export_page_explains_missing_gguf_for_ablation():
    import state
    from steering.bundle import Bundle
    from workbench.models import tiny_model

    lm = tiny_model()
    at = run_page(APP / "pages" / "8_Export.py", {state.BUNDLE_KEY: Bundle.from_direction(torch.ones(64), lm)})
    assert len(at.get("download_button")) == 2
    assert any("only add" in c.value for c in at.caption)


def vec_bundle(lm, *, value=1.0, site="resid_post.1", name="vec"):
    from steering.bundle import Bundle
    from steering.vector import SteeringVector

    vec = SteeringVector(torch.full((lm.d_model,), value), site, model_fingerprint=lm.fingerprint)
    return Bundle.from_vector(vec, lm, name=name)


def test_bad_upload_changes_nothing():
    import state
    from workbench.models import tiny_model

    lm = tiny_model()
    good = vec_bundle(lm, name="good")
    session = {state.BUNDLE_KEY: good}
    wrong_model = vec_bundle(tiny_model(seed=1)).to_safetensors_bytes()  # same shapes, other weights
    for files in ([("x.pkl", b"junk")], [("b.safetensors", b"not safetensors")], [("b.safetensors", wrong_model)]):
        error = state.accept_upload(session, files, lm)
        assert error and session[state.BUNDLE_KEY] is good
    other = vec_bundle(lm, value=0.5, site="resid_post.0", name="new")
    assert state.accept_upload(session, [("n.safetensors", other.to_safetensors_bytes())], lm) is None
    assert session[state.BUNDLE_KEY].name == "new"


def test_artifact_discovery_filters_by_fingerprint(tmp_path):
    import json

    import state
    from workbench.models import tiny_model

    lm = tiny_model()
    runs = tmp_path / "runs"
    for name, fp in (("mine", lm.fingerprint), ("theirs", "f" * 16), ("unknown", None)):
        folder = runs / "saes" / name
        folder.mkdir(parents=True)
        (folder / "cfg.json").write_text(json.dumps({"metadata": {"model_fingerprint": fp}} if fp else {}))
    found = {p.name for p in state.find_artifacts(("saes",), lm)}
    assert found == {"mine", "unknown"}


def test_sae_page_with_a_trained_sae(tmp_path):
    import state
    from saes.architectures import SparseAutoencoder
    from saes.config import SAEConfig, SAEMeta
    from saes.io import save_sae
    from workbench.models import tiny_model

    lm = tiny_model()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=128), seed=0)
    save_sae(sae, tmp_path / "runs" / "saes" / "tiny", SAEMeta(model_name=lm.name, model_fingerprint=lm.fingerprint,
                                                              hook_name="blocks.1.hook_resid_post"))
    at = run_page(APP / "pages" / "3_SAE_features.py")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1  # feature activations on the prompt
    at.button(key="sae_generate").click().run()
    assert not at.exception
    assert at.session_state[state.BUNDLE_KEY].name == "sae-f0"


def test_refusal_page_with_direction_and_controller(tmp_path):
    from steering.controller import Controller, ControllerConfig
    from steering.vector import SteeringVector
    from workbench.models import tiny_model

    lm = tiny_model()
    folder = tmp_path / "runs" / "refusal"
    SteeringVector(torch.randn(64), "resid_pre.1", model_fingerprint=lm.fingerprint).save(folder / "direction")
    Controller.create(lm, torch.randn(64), ControllerConfig(read_k=2)).save(tmp_path / "runs" / "controller" / "was")
    at = run_page(APP / "pages" / "5_Refusal.py")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 2  # one layer-weight chart per default prompt
    assert any("predicted scale" in m.value for m in at.markdown)
    at.button(key="refusal_generate").click().run()
    assert not at.exception and len(at.code) == 2


def test_gact_page_with_a_fitted_steerer(tmp_path):
    from steering.gact import GactConfig, fit_gact_from_acts
    from workbench.models import tiny_model

    lm = tiny_model()
    gen = torch.Generator().manual_seed(0)
    langs = ["cpp", "python", "java", "julia"] * 4
    variant = torch.randn(16, lm.n_layers, 64, generator=gen)
    diff = torch.randn(16, lm.n_layers, 64, generator=gen)
    gact = fit_gact_from_acts(variant, diff, langs, GactConfig(k=2), lm=lm)
    folder = tmp_path / "runs" / "gact" / "tiny"
    gact.save(folder)
    (folder / "eval.json").write_text('{"per_layer": {"probe_accuracy": [0.5, 0.75]}}')
    at = run_page(APP / "pages" / "4_Probes_and_GACT.py")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1  # per-layer accuracy
    at.button(key="gact_generate").click().run()
    assert not at.exception and len(at.code) == 2


def test_pause_page_plots_saved_results(tmp_path):
    import json

    folder = tmp_path / "runs" / "pause" / "tiny"
    folder.mkdir(parents=True)
    grid = {"exact": {"256": {"0.1": 1.0, "0.5": 0.0}, "512": {"0.1": 0.5, "0.5": None}}, "records": []}
    (folder / "niah.json").write_text(json.dumps({"base": grid, "attention": {"needle": [0.1, 0.2], "pause": [0.3, 0.1]}}))
    at = run_page(APP / "pages" / "7_Pause_tokens.py")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 2  # the NIAH grid and the per-layer attention mass


def test_rep2text_page_runs_an_inverter(tmp_path):
    from probes.rep2text.config import Rep2TextConfig
    from probes.rep2text.inverter import Inverter
    from workbench.models import tiny_model

    lm = tiny_model()
    Inverter(lm, lm, Rep2TextConfig(layer=1)).save(tmp_path / "runs" / "rep2text" / "layer1")  # untrained: real I/O
    foreign = tmp_path / "runs" / "rep2text" / "other_model"  # an inverter trained for another target: not listed
    foreign.mkdir()
    (foreign / "cfg.json").write_text(json.dumps({"format": "rep2text-v1", "target_fingerprint": "0" * 16}))
    at = run_page(APP / "pages" / "6_Rep2Text.py")
    at.text_input(key="r2t_text").input("abc").run()
    at.button(key="r2t_run").click().run()
    assert not at.exception and not at.error
    rows = at.dataframe[0].value
    assert list(rows["layer"]) == [1] and "could not run" not in rows["reconstruction"][0]
