"""Activation store: contents, resume after a kill, validation, shuffled batches."""

import json

import pytest
import torch

from workbench import hooks
from workbench.chat import ASSISTANT_HEADER, TEMPLATE
from workbench.models import tiny_model
from workbench.store import ActivationStore, StoreConfig, harvest
from workbench.store import writer as store_writer

TEXTS = [f"Document {i}: " + "the quick brown fox jumps over the lazy dog. " * (1 + i % 3) for i in range(24)]
CHATS = [[{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": "answer " * (i + 1)}]
         for i in range(12)]


def _config(**kw):
    base = dict(sites=["resid_post.0", "resid_pre.1"], block_size=32, batch_size=4, shard_tokens=200)
    return StoreConfig(**{**base, **kw})


def test_packed_store_matches_direct_recording(tmp_path, tiny):
    store = harvest(tiny, TEXTS, tmp_path / "s", _config(), progress=False)
    assert store.n_tokens % 32 == 0 and len(store.manifest["shards"]) > 1
    first = next(store.sequences("resid_post.0"))
    ids = first.token_ids.long().unsqueeze(0)
    direct = hooks.record(tiny, ids, ["resid_post.0"])["blocks.0.hook_resid_post"][0]
    torch.testing.assert_close(first.acts, direct, atol=1e-5, rtol=0)
    # resid_post of layer 0 is resid_pre of layer 1
    shard_a, shard_b = store.load_shard(0, "resid_post.0"), store.load_shard(0, "resid_pre.1")
    torch.testing.assert_close(shard_a.acts, shard_b.acts)


def test_sequence_store_keeps_chat_flags(tmp_path, tiny):
    store = harvest(tiny, CHATS, tmp_path / "c", _config(formatting="sequence", block_size=64), progress=False)
    rows = list(store.sequences("resid_post.0"))
    assert [r.seq_id for r in rows] == list(range(len(CHATS)))
    for row, chat in zip(rows, CHATS):
        text = tiny.tokenizer.decode(row.token_ids.tolist())
        assert chat[0]["content"] in text
        assert (row.flags & TEMPLATE).any() and (row.flags & ASSISTANT_HEADER).any()


def test_killed_harvest_resumes_to_an_identical_store(tmp_path, tiny, monkeypatch):
    clean = harvest(tiny, TEXTS, tmp_path / "clean", _config(), progress=False)
    real_flush, calls = store_writer._flush, {"n": 0}

    def dying_flush(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_flush(*args, **kwargs)

    monkeypatch.setattr(store_writer, "_flush", dying_flush)
    with pytest.raises(KeyboardInterrupt):
        harvest(tiny, TEXTS, tmp_path / "resumed", _config(), progress=False)
    partial = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert not partial["complete"] and len(partial["shards"]) == 2
    with pytest.raises(ValueError, match="resume"):
        ActivationStore.open(tmp_path / "resumed")
    monkeypatch.setattr(store_writer, "_flush", real_flush)
    resumed = harvest(tiny, TEXTS, tmp_path / "resumed", _config(), progress=False)
    assert [s["sha256"] for s in resumed.manifest["shards"]] == [s["sha256"] for s in clean.manifest["shards"]]
    assert not list((tmp_path / "resumed").glob("*.tmp"))


def test_wrong_model_config_and_corruption_are_reported(tmp_path, tiny):
    store = harvest(tiny, TEXTS, tmp_path / "s", _config(), progress=False)
    with pytest.raises(ValueError, match="fingerprint"):
        ActivationStore.open(store.folder, expect_fingerprint=tiny_model(seed=5).fingerprint)
    with pytest.raises(ValueError, match="another model or config"):
        harvest(tiny, TEXTS, store.folder, _config(block_size=16), progress=False)
    with pytest.raises(ValueError, match="d_model=64"):
        ActivationStore.open(store.folder, expect_d_model=128)
    shard = store.folder / store.manifest["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[100:108] = b"\xff" * 8
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        ActivationStore.open(store.folder).verify()
    shard.write_bytes(b"short")
    with pytest.raises(ValueError, match="corrupt"):
        ActivationStore.open(store.folder)
    with pytest.raises(FileNotFoundError, match="harvest"):
        ActivationStore.open(tmp_path / "nothing-here")


def test_too_little_text_is_a_clear_error(tmp_path, tiny):
    with pytest.raises(ValueError, match="no tokens"):
        harvest(tiny, ["tiny"], tmp_path / "e", _config(block_size=512), progress=False)


def test_shuffled_batches_cover_every_token_once(tmp_path, tiny):
    store = harvest(tiny, TEXTS, tmp_path / "s", _config(), progress=False)
    ordered = torch.cat([s.acts for s in store.iter_shards("resid_post.0")])
    batches = list(store.batches("resid_post.0", batch_size=50, buffer_tokens=300, seed=1))
    assert all(b.shape[1] == 64 for b in batches)
    shuffled = torch.cat(batches)
    assert shuffled.shape == ordered.shape and not torch.equal(shuffled, ordered)
    key = lambda t: t[:, 0].sort().values  # noqa: E731 - same multiset of rows
    torch.testing.assert_close(key(shuffled), key(ordered))
    again = torch.cat(list(store.batches("resid_post.0", batch_size=50, buffer_tokens=300, seed=1)))
    assert torch.equal(again, shuffled)
    no_bos = torch.cat(list(store.batches("resid_post.0", batch_size=64, shuffle=False,
                                          token_filter=lambda s: s.positions > 0)))
    assert no_bos.shape[0] == ordered.shape[0] - store.manifest["n_units"]


def test_config_validation():
    with pytest.raises(ValueError, match="formatting"):
        StoreConfig(sites=["resid_post.0"], formatting="chunks")
    with pytest.raises(ValueError, match="at least one"):
        StoreConfig(sites=[])
    with pytest.raises(ValueError, match="positive"):
        StoreConfig(sites=["resid_post.0"], block_size=0)
