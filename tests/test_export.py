"""Steering bundles: manifest/tensor round trips, load_into on a plain transformers model, GGUF control vectors,
validation of bad input. All on the tiny random model."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from steering import export as ex
from steering import gguf_control
from steering.bundle import Bundle, BundleOp
from steering.upload import UploadError, parse_upload
from steering.vector import SteeringVector
from workbench import hooks
from workbench.models import tiny_model


@pytest.fixture(scope="module")
def lm():
    return tiny_model()


@pytest.fixture(scope="module")
def other_lm():
    return tiny_model(seed=1)  # same shapes, different weights -> different fingerprint


@pytest.fixture(scope="module")
def batch(lm):
    return lm.tokenize(["hello world", "steer me"])


def logits(lm, batch):
    with torch.no_grad():
        return lm.model(**batch).logits


def make_vector(lm, site="resid_post.1", scale=3.0, seed=0, **kw):
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector(torch.randn(lm.d_model, generator=gen), site, scale=scale,
                          model_fingerprint=lm.fingerprint, **kw)


def test_manifest_has_everything_a_deployment_needs(lm):
    bundle = Bundle.from_vector(make_vector(lm), lm, provenance={"data": "unit test", "method": "random"},
                                eval={"effect": 1.0})
    man = bundle.manifest()
    assert man["format"] == "workbench.steering_bundle" and man["version"] == 1
    assert man["model"] == {"name": lm.name, "fingerprint": lm.fingerprint, "d_model": 64, "n_layers": 2,
                            "model_type": "llama"}
    assert man["layer_convention"]["name"] == "workbench.blocks.v1"
    (op,) = man["operations"]
    assert op["operation"] == "add" and op["sites"] == ["blocks.1.hook_resid_post"]
    assert op["scale"] == 3.0 and op["scope"] == "all"
    assert man["provenance"]["method"] == "random" and "workbench_version" in man["provenance"]
    assert man["eval"] == {"effect": 1.0}


@pytest.mark.parametrize("where", ["folder", "single_file"])
def test_save_load_round_trip(lm, tmp_path, where):
    bundle = Bundle.from_vector(make_vector(lm, scope="generated"), lm, name="rt")
    bundle.save(tmp_path / "b")
    loaded = ex.load_bundle(tmp_path / "b" if where == "folder" else tmp_path / "b" / "tensors.safetensors")
    assert loaded.manifest()["operations"] == bundle.manifest()["operations"]
    assert loaded.model == bundle.model and loaded.name == "rt"
    assert torch.equal(loaded.tensors["op0.vector"], bundle.tensors["op0.vector"])


def test_load_into_plain_transformers_model_matches_hooks(lm, batch, tmp_path):
    vec = make_vector(lm)
    Bundle.from_vector(vec, lm).save(tmp_path / "b")
    base = logits(lm, batch)
    with hooks.steer(lm, vec.site, vec.vector, vec.scale):
        expected = logits(lm, batch)
    with ex.load_into(lm.model, tmp_path / "b"):  # the bare HF model, no tokenizer
        got = logits(lm, batch)
    assert torch.equal(got, expected) and not torch.equal(got, base)
    assert torch.equal(logits(lm, batch), base), "the bundle must be gone after the block"
    handle = ex.load_into(lm.model, tmp_path / "b").attach()
    try:
        assert torch.equal(logits(lm, batch), expected)
    finally:
        handle.remove()
    assert torch.equal(logits(lm, batch), base)


def test_load_into_scale_and_zero(lm, batch):
    bundle = Bundle.from_vector(make_vector(lm), lm)
    base = logits(lm, batch)
    with ex.load_into(lm, bundle, scale=0.0):
        assert torch.equal(logits(lm, batch), base)
    with ex.load_into(lm, bundle, scale=2.0):
        doubled = logits(lm, batch)
    with hooks.steer(lm, "resid_post.1", bundle.tensors["op0.vector"], 6.0):
        assert torch.allclose(logits(lm, batch), doubled)


def test_fingerprint_and_width_are_checked(lm, other_lm, batch):
    bundle = Bundle.from_vector(make_vector(lm), lm)
    with pytest.raises(ValueError, match="fingerprint"):
        ex.load_into(other_lm, bundle)
    with ex.load_into(other_lm, bundle, strict=False):
        pass
    wide = tiny_model(d_model=32)
    with pytest.raises(ValueError, match="d_model"):
        ex.load_into(wide, bundle, strict=False)


def test_ablate_bundle_removes_direction(lm, batch, tmp_path):
    direction = torch.randn(lm.d_model)
    bundle = Bundle.from_direction(direction, lm, sites=["resid_pre.1"])
    bundle.save(tmp_path / "abl")
    with ex.load_into(lm, tmp_path / "abl"):
        acts = hooks.record(lm, batch, ["resid_pre.1"])["blocks.1.hook_resid_pre"]
    unit = direction / direction.norm()
    assert (acts @ unit).abs().max() < 1e-4
    plain = hooks.record(lm, batch, ["resid_pre.1"])["blocks.1.hook_resid_pre"]
    assert (plain @ unit).abs().max() > 1e-3


def test_gguf_round_trip_llama_cpp_conventions(lm, batch, tmp_path):
    import gguf

    bundle = Bundle.from_vector(make_vector(lm, site="resid_post.1", scale=2.5), lm, name="gg")
    path = ex.export_gguf(bundle, tmp_path / "cv.gguf")
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.model_hint"].contents() == "llama"
    assert reader.fields["controlvector.layer_count"].contents() == 1
    (tensor,) = reader.tensors
    assert tensor.name == "direction.1" and tensor.tensor_type == gguf.GGMLQuantizationType.F32
    np.testing.assert_allclose(np.array(tensor.data), (2.5 * bundle.tensors["op0.vector"]).numpy(), rtol=1e-6)

    back = ex.import_gguf(path)
    assert back.model["fingerprint"] == lm.fingerprint and back.name == "gg"
    assert back.ops[0].sites == ["blocks.1.hook_resid_post"] and back.ops[0].scale == 1.0
    with ex.load_into(lm, bundle):
        expected = logits(lm, batch)
    with ex.load_into(lm, back):
        assert torch.allclose(logits(lm, batch), expected, atol=1e-6)


def test_gguf_resid_pre_maps_to_previous_block_and_sums(lm):
    three = tiny_model(n_layers=3)
    v1, v2 = torch.ones(64), torch.arange(64.0)
    ops = [BundleOp("add", ["resid_pre.2"], "a", 2.0), BundleOp("add", ["resid_post.1"], "b", 1.0),
           BundleOp("add", ["resid_post.-1"], "a", 1.0)]
    bundle = Bundle(ops, {"a": v1, "b": v2}, Bundle.model_info(three))
    cv = gguf_control.from_bundle(bundle)
    assert sorted(cv.directions) == [1, 2]
    assert torch.equal(cv.directions[1], 2 * v1 + v2) and torch.equal(cv.directions[2], v1)


def test_gguf_refuses_what_llama_cpp_cannot_do(lm, tmp_path):
    with pytest.raises(ValueError, match="direction.0"):
        ex.export_gguf(Bundle.from_vector(make_vector(lm, site="resid_post.0"), lm), tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="direction.0"):
        ex.export_gguf(Bundle.from_vector(make_vector(lm, site="resid_pre.1"), lm), tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="resid_post"):
        ex.export_gguf(Bundle.from_vector(make_vector(lm, site="mlp_out.1"), lm), tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="only add"):
        ex.export_gguf(Bundle.from_direction(torch.ones(64), lm), tmp_path / "x.gguf")
    scoped = Bundle.from_vector(make_vector(lm, scope="generated"), lm)
    with pytest.raises(ValueError, match="allow_scope_change"):
        ex.export_gguf(scoped, tmp_path / "x.gguf")
    assert ex.export_gguf(scoped, tmp_path / "x.gguf", allow_scope_change=True).exists()
    # export(gguf=None) writes the bundle and silently skips an inexpressible GGUF
    written = ex.export(Bundle.from_direction(torch.ones(64), lm), tmp_path / "abl")
    assert set(written) == {"bundle"}


def test_foreign_gguf_imports_without_fingerprint(lm, tmp_path):
    cv = gguf_control.ControlVector({1: torch.ones(64)}, model_hint="llama")  # as llama-cvector-generator writes
    path = gguf_control.write(cv, tmp_path / "foreign.gguf")
    bundle = ex.import_gguf(path, lm)
    assert bundle.model["fingerprint"] is None and bundle.model["d_model"] == 64
    with ex.load_into(lm, bundle):  # width checked; fingerprint unknown
        pass


@pytest.mark.parametrize("bad", ["nan", "shape", "missing_tensor", "zero_direction"])
def test_bad_bundles_are_rejected(lm, bad):
    vec = torch.ones(64)
    if bad == "nan":
        vec[3] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            Bundle([BundleOp("add", ["resid_post.1"], "v")], {"v": vec}, Bundle.model_info(lm))
    elif bad == "shape":
        with pytest.raises(ValueError, match="shape"):
            Bundle([BundleOp("add", ["resid_post.1"], "v")], {"v": torch.ones(63)}, Bundle.model_info(lm))
    elif bad == "missing_tensor":
        with pytest.raises(ValueError, match="lacks"):
            Bundle([BundleOp("add", ["resid_post.1"], "w")], {"v": vec}, Bundle.model_info(lm))
    else:
        with pytest.raises(ValueError, match="zeros"):
            Bundle([BundleOp("ablate", ["resid_post.1"], "v")], {"v": torch.zeros(64)}, Bundle.model_info(lm))


def test_uploads_validated(lm, other_lm, tmp_path):
    bundle = Bundle.from_vector(make_vector(lm), lm)
    data = bundle.to_safetensors_bytes()
    assert parse_upload([("b.safetensors", data)], lm).manifest() == bundle.manifest()
    manifest = json.dumps(bundle.manifest()).encode()
    assert parse_upload([("manifest.json", manifest), ("tensors.safetensors", data)], lm).name == bundle.name
    vec = make_vector(lm)
    vec.save(tmp_path / "v")
    pair = [("v.json", (tmp_path / "v.json").read_bytes()), ("v.safetensors", (tmp_path / "v.safetensors").read_bytes())]
    assert parse_upload(pair, lm).ops[0].sites == [vec.site]
    gguf_path = ex.export_gguf(bundle, tmp_path / "u.gguf")
    assert len(parse_upload([("u.gguf", gguf_path.read_bytes())], lm).ops) == 1

    cases = [
        ([("evil.pt", b"\x80\x04")], "only"),
        ([("b.safetensors", data)], "fingerprint", other_lm),
        ([("b.safetensors", data[:50])], "rejected"),
        ([("b.safetensors", b"x" * 100)], "size limit", lm, 50),
        ([("junk.gguf", b"GGUF" + b"\0" * 40)], "rejected"),
        ([("m.json", manifest)], "tensors"),
        ([("t.safetensors", st_save({"x": torch.ones(3)}))], "manifest"),
    ]
    for files, match, *rest in cases:
        model = rest[0] if rest else lm
        limit = rest[1] if len(rest) > 1 else 64 * 2**20
        with pytest.raises(UploadError, match=match):
            parse_upload(files, model, max_bytes=limit)


def test_cli_bundle_gguf_import_show(lm, tmp_path, capsys, monkeypatch):
    from steering import export_cli

    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers(dest="command"))
    vec = make_vector(lm, site="resid_post.1")
    vec.save(tmp_path / "v")

    def run(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert run("export", "bundle", str(tmp_path / "v.json"), "--out", str(tmp_path / "b"), "--scale", "2") == 0
    assert (tmp_path / "b" / "manifest.json").exists() and (tmp_path / "b" / "control_vector.gguf").exists()
    assert run("export", "gguf", str(tmp_path / "b"), "--out", str(tmp_path / "c.gguf")) == 0
    assert run("export", "import-gguf", str(tmp_path / "c.gguf"), "--out", str(tmp_path / "back")) == 0
    back = Bundle.load(tmp_path / "back")
    assert torch.allclose(back.tensors["direction.1"], 6.0 * vec.vector)
    assert run("export", "show", str(tmp_path / "b")) == 0
    assert json.loads(capsys.readouterr().out)["operations"][0]["scale"] == 6.0


def test_cli_exports_a_controller_bundle(lm, tmp_path, monkeypatch):
    from steering import export_cli
    from steering.controller import Controller, ControllerConfig

    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers(dest="command"))
    ctrl = Controller.create(lm, torch.randn(lm.d_model), ControllerConfig(read_k=1, hidden=8))
    ctrl.save(tmp_path / "ctrl")

    def run(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args)

    with pytest.raises(SystemExit, match="--model"):
        run("export", "bundle", str(tmp_path / "ctrl.json"), "--out", str(tmp_path / "b"))
    monkeypatch.setattr(export_cli, "_load_model", lambda name: lm)
    assert run("export", "bundle", str(tmp_path / "ctrl.json"), "--out", str(tmp_path / "b"), "--model", "x") == 0
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.ops[0].operation == "controller" and len(bundle.ops[0].sites) == lm.n_layers
    assert not (tmp_path / "b" / "control_vector.gguf").exists()
