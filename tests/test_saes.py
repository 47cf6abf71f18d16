"""SAE training invariants on synthetic sparse data (no language model needed)."""

from __future__ import annotations

import json

import pytest
import torch

from saes.architectures import SparseAutoencoder
from saes.buffer import shuffle_batches
from saes.config import SAEConfig, SAEMeta, TrainConfig
from saes.geometric_median import geometric_median
from saes.io import load_sae, save_sae
from saes.trainer import SAETrainer, lr_at, train_sae

D, F = 16, 64


def synthetic(n_tokens: int, seed: int = 0, d: int = D, n_true: int = 32, batch: int = 256):
    """Sparse sums of ``n_true`` ground-truth directions, plus an offset: the setting SAEs are designed for."""
    gen = torch.Generator().manual_seed(123)
    dirs = torch.nn.functional.normalize(torch.randn(n_true, d, generator=gen), dim=-1)
    offset = torch.randn(d, generator=gen)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n_tokens // batch):
        coef = torch.rand(batch, n_true, generator=gen) * (torch.rand(batch, n_true, generator=gen) < 0.1)
        yield coef @ dirs * 3 + offset


def small_train_cfg(**kw) -> TrainConfig:
    base = dict(total_tokens=256 * 40, batch_size=256, lr=3e-3, lr_end=3e-4, l1_coefficient=0.5,
                l0_coefficient=0.01, init_batches=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "topk"])
def test_training_reduces_loss_and_shapes(arch):
    cfg = SAEConfig(d_in=D, d_sae=F, architecture=arch, k=8)
    trainer = SAETrainer(cfg, small_train_cfg(), progress=False, log_every=1)
    result = trainer.fit(synthetic(256 * 40))
    hist = result.history
    assert hist[-1]["mse"] < 0.5 * hist[0]["mse"]
    x = next(synthetic(256, seed=9))
    out = result.sae(x)
    assert out.sae_out_BD.shape == x.shape and out.feature_acts_BF.shape == (256, F)
    assert (out.feature_acts_BF >= 0).all()
    if arch == "topk":
        assert ((out.feature_acts_BF > 0).sum(-1) <= 8).all()
    assert result.stats["tokens"] == 256 * 40


def test_topk_sparse_decode_matches_dense():
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=F, architecture="topk", k=5), seed=3)
    x = torch.randn(32, D)
    out = sae(x)
    torch.testing.assert_close(out.sae_out_BD, sae.decode(sae.encode(x)))


def test_decoder_rows_unit_norm_and_geometric_median_init():
    cfg = SAEConfig(d_in=D, d_sae=F)
    tc = small_train_cfg(normalize_activations=False, total_tokens=256 * 3)
    trainer = SAETrainer(cfg, tc, progress=False)
    data = list(synthetic(256 * 3))
    b_dec_init = geometric_median(torch.cat(data[:2]))
    result = trainer.fit(data)
    torch.testing.assert_close(result.sae.W_dec.norm(dim=-1), torch.ones(F))
    assert (result.sae.b_dec - b_dec_init).norm() < 0.5 * b_dec_init.norm()  # started at the median, moved little


def test_geometric_median_robust_to_outliers():
    pts = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0)) * 0.1
    pts[:50] += 1000.0  # 5% huge outliers drag the mean, not the median
    gm = geometric_median(pts)
    assert gm.norm() < 0.2 and pts.mean(0).norm() > 40
    with pytest.raises(ValueError, match="non-empty"):
        geometric_median(torch.empty(0, 4))


def test_lr_schedule_cosine():
    tc = TrainConfig(total_tokens=100 * 10, batch_size=10, lr=1e-3, lr_end=1e-4, lr_warmup_steps=10)
    assert lr_at(0, tc) == pytest.approx(1e-4)
    assert lr_at(10, tc) == pytest.approx(1e-3)
    assert lr_at(99, tc) == pytest.approx(1e-4)
    assert all(lr_at(s, tc) >= lr_at(s + 1, tc) for s in range(10, 99))


def test_shuffle_buffer_is_a_permutation():
    chunks = [torch.arange(i * 100, (i + 1) * 100).float()[:, None].expand(100, 3) for i in range(10)]
    out = torch.cat(list(shuffle_batches(chunks, batch_size=64, buffer_tokens=256, seed=1, drop_last=False)))
    assert sorted(out[:, 0].tolist()) == list(range(1000))
    assert out[:, 0].tolist() != list(range(1000))
    again = torch.cat(list(shuffle_batches(chunks, batch_size=64, buffer_tokens=256, seed=1, drop_last=False)))
    assert torch.equal(out, again)


@pytest.mark.parametrize("method", ["aux", "resample"])
def test_dead_latent_methods_run(method):
    cfg = SAEConfig(d_in=D, d_sae=512, architecture="topk", k=1)  # 256 tokens x k=1 cannot fire all 512 latents
    tc = small_train_cfg(dead_latent_method=method, dead_window_tokens=0, resample_every_steps=5, aux_k=8)
    result = train_sae(synthetic(256 * 40), cfg, tc, progress=False, log_every=1)
    assert torch.isfinite(result.sae.W_dec).all()
    if method == "aux":
        assert any(h["aux"] > 0 for h in result.history)
    else:
        assert result.stats["n_resampled"] > 0


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_killed_run_resumes_bit_identical(tmp_path, arch):
    cfg = SAEConfig(d_in=D, d_sae=F, architecture=arch)
    tc = small_train_cfg(total_tokens=256 * 12, checkpoint_every_steps=4, dead_latent_method="resample",
                         dead_window_tokens=256, resample_every_steps=3)
    reference = SAETrainer(cfg, tc, progress=False).fit(synthetic(256 * 12)).sae

    class Killed(Exception):
        pass

    def kill_at_10(step, _metrics):
        if step == 10:
            raise Killed

    with pytest.raises(Killed):
        SAETrainer(cfg, tc, checkpoint_dir=tmp_path, progress=False).fit(synthetic(256 * 12), callback=kill_at_10)
    assert (tmp_path / "step_00000008").exists()
    resumed_trainer = SAETrainer(cfg, tc, checkpoint_dir=tmp_path, progress=False)
    resumed = resumed_trainer.fit(synthetic(256 * 12)).sae
    for name, param in reference.state_dict().items():
        assert torch.equal(param, resumed.state_dict()[name]), name


def test_checkpoint_from_other_config_refused(tmp_path):
    cfg = SAEConfig(d_in=D, d_sae=F)
    SAETrainer(cfg, small_train_cfg(total_tokens=256 * 5, checkpoint_every_steps=2), checkpoint_dir=tmp_path,
               progress=False).fit(synthetic(256 * 5))
    with pytest.raises(ValueError, match="different SAE/training config"):
        SAETrainer(cfg, small_train_cfg(total_tokens=256 * 5, checkpoint_every_steps=2, lr=1e-2),
                   checkpoint_dir=tmp_path, progress=False).fit(synthetic(256 * 5))


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "topk"])
def test_saelens_loads_our_folder(tmp_path, arch):
    sae_lens = pytest.importorskip("sae_lens")
    cfg = SAEConfig(d_in=D, d_sae=F, architecture=arch, k=4)
    result = train_sae(synthetic(256 * 6), cfg, small_train_cfg(total_tokens=256 * 6), progress=False)
    meta = SAEMeta(model_name="tiny", model_fingerprint="0123456789abcdef", hook_name="blocks.1.hook_resid_post",
                   regime="FAST")
    path = save_sae(result.sae, tmp_path / "sae", meta)
    theirs = sae_lens.SAE.load_from_disk(str(path))
    assert theirs.cfg.architecture() == arch and theirs.cfg.d_sae == F
    assert theirs.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    x = next(synthetic(256, seed=5))
    ours = result.sae
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), ours.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(theirs(x), ours.reconstruct(x), rtol=1e-5, atol=1e-5)
    loaded, meta2 = load_sae(path, expect_fingerprint="0123456789abcdef")
    assert meta2.regime == "FAST" and loaded.cfg == cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(x), ours.reconstruct(x))
    side = json.loads((path / "workbench.json").read_text())
    assert side["model_fingerprint"] == "0123456789abcdef"


def test_save_refuses_overwrite_and_wrong_fingerprint(tmp_path):
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=F))
    path = save_sae(sae, tmp_path / "sae", SAEMeta(model_fingerprint="aaaa"))
    before = (path / "sae_weights.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        save_sae(SparseAutoencoder(SAEConfig(d_in=D, d_sae=F), seed=1), path)
    assert (path / "sae_weights.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match="fingerprint"):
        load_sae(path, expect_fingerprint="bbbb")
    with torch.no_grad():
        sae.W_dec[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_sae(sae, tmp_path / "nan_sae")
    assert not (tmp_path / "nan_sae").exists()


def test_bad_training_input():
    cfg = SAEConfig(d_in=D, d_sae=F)
    tc = small_train_cfg(total_tokens=256 * 4)
    with pytest.raises(ValueError, match=r"expected \[n, 16\]"):
        SAETrainer(cfg, tc, progress=False).fit([torch.randn(256, D + 1)] * 4)
    with pytest.raises(ValueError, match="NaN"):
        SAETrainer(cfg, tc, progress=False).fit([torch.full((256, D), float("nan"))] * 4)
    with pytest.raises(ValueError, match="empty"):
        SAETrainer(cfg, tc, progress=False).fit([])
    with pytest.raises(ValueError, match="ran out"):
        SAETrainer(cfg, tc, progress=False).fit([torch.randn(256, D)] * 2)
    with pytest.raises(ValueError, match="architecture"):
        SAEConfig(d_in=D, d_sae=F, architecture="gated")
    with pytest.raises(ValueError, match="at least one batch"):
        TrainConfig(total_tokens=10, batch_size=256)


def test_fused_jumprelu_matches_reference_gradients():
    from saes.architectures import _JumpReLU, _JumpReLUWithL0, _Step
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 32, generator=gen) * 0.004).requires_grad_()
    theta = torch.full((32,), 0.002, requires_grad=True)
    acts, l0 = _JumpReLUWithL0.apply(x, theta, 0.001)
    w = torch.randn(64, 32, generator=gen)
    ((acts * w).sum() + 0.3 * l0).backward()
    g_x, g_t = x.grad.clone(), theta.grad.clone()
    x.grad = theta.grad = None
    ref = _JumpReLU.apply(x, theta, 0.001)
    ref_l0 = _Step.apply(x, theta, 0.001).sum(-1).mean()
    ((ref * w).sum() + 0.3 * ref_l0).backward()
    torch.testing.assert_close(acts, ref)
    torch.testing.assert_close(l0, ref_l0)
    torch.testing.assert_close(g_x, x.grad)
    torch.testing.assert_close(g_t, theta.grad)


def test_topk_fast_path_matches_dense_path_gradients():
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=F, architecture="topk", k=5), seed=2)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_()
    x = torch.randn(32, D)
    grads = []
    for dense in (True, False):
        sae.zero_grad()
        out = sae(x, dense_acts=dense)
        (out.sae_out_BD - x).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in sae.named_parameters()})
        if not dense:
            assert out.feature_acts_BF is None and out.topk_idx_BK.shape == (32, 5)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5)


def test_relu_sparse_path_matches_dense_path_loss_and_gradients():
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=F, architecture="standard"), seed=4)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_().sub_(1.0).clamp_(max=-0.1)  # a sparse code
    x = torch.randn(32, D)
    x[0] = sae.b_dec.detach()  # centred input 0 -> pre-activations = b_enc < 0: token 0 fires nothing
    results = []
    for dense in (True, False):
        sae.zero_grad()
        out = sae(x, dense_acts=dense)
        loss = (out.sae_out_BD - x).pow(2).sum(-1).mean() + 0.3 * sae.sparsity_loss(out)
        loss.backward()
        results.append((loss.detach(), out.sae_out_BD.detach(), {n: p.grad.clone() for n, p in sae.named_parameters()}))
        if not dense:
            assert out.feature_acts_BF is None and out.sparse_offsets_B.shape == (32,)
            counts = torch.diff(torch.cat([out.sparse_offsets_B, torch.tensor([out.sparse_idx_N.numel()])]))
            assert counts[0] == 0  # the token with an empty code decodes to b_dec
            torch.testing.assert_close(out.sae_out_BD[0], sae.b_dec.detach())
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-5)
    for name in results[0][2]:
        torch.testing.assert_close(results[0][2][name], results[1][2][name], rtol=1e-4, atol=1e-5)


def test_trainer_switches_relu_to_sparse_path_and_trains_the_same():
    cfg = SAEConfig(d_in=D, d_sae=F, architecture="standard")
    runs = {}
    for threshold in (0.0, 1.0):  # never sparse / sparse from the second step on
        trainer = SAETrainer(cfg, small_train_cfg(total_tokens=256 * 8, sparse_below_density=threshold),
                             progress=False, log_every=1)
        calls = []
        original = trainer.sae.forward
        trainer.sae.forward = lambda x, dense_acts=True: (calls.append(dense_acts), original(x, dense_acts))[1]
        runs[threshold] = (trainer.fit(synthetic(256 * 8)), calls)
    assert all(runs[0.0][1]) and runs[1.0][1][0] and not any(runs[1.0][1][1:])
    dense_sae, sparse_sae = runs[0.0][0].sae, runs[1.0][0].sae
    for name, param in dense_sae.state_dict().items():
        torch.testing.assert_close(param, sparse_sae.state_dict()[name], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="sparse_below_density"):
        small_train_cfg(sparse_below_density=2.0)
