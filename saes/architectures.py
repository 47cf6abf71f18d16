"""SAE architectures: ReLU (standard), JumpReLU and TopK, sharing one parameterisation.

Parameters follow SAELens names and shapes so saved weights load there unmodified:
``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]`` (+ ``threshold [d_sae]`` for
JumpReLU, trained as ``log_threshold``).

    encode:  f = act((x - b_dec) @ W_enc + b_enc)        (b_dec subtracted when apply_b_dec_to_input)
    decode:  x_hat = f @ W_dec + b_dec

JumpReLU training follows Rajamanoharan et al. 2024 ("Jumping Ahead"): straight-through gradients for the threshold
with a rectangle kernel of width ``bandwidth``; the L0 penalty uses the same pseudo-derivative.
TopK follows Gao et al. 2024; its decoder only touches the k active rows per token.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from saes.config import SAEConfig


class ForwardOutput(NamedTuple):
    sae_out_BD: Tensor
    feature_acts_BF: Tensor
    hidden_pre_BF: Tensor
    l0: Tensor | None = None
    """JumpReLU only: mean L0 per token, differentiable w.r.t. the threshold (straight-through)."""
    topk_values_BK: Tensor | None = None
    """TopK only: the k kept activations per token and their latent indices (``feature_acts_BF`` is None when
    ``forward(..., dense_acts=False)``, the training fast path)."""
    topk_idx_BK: Tensor | None = None
    sparse_values_N: Tensor | None = None
    """ReLU sparse training path (``forward(..., dense_acts=False)``): the N active (token, latent) values, grouped
    by token, their latent indices and each token's start offset (``embedding_bag`` layout)."""
    sparse_idx_N: Tensor | None = None
    sparse_offsets_B: Tensor | None = None


class _TopKEncode(torch.autograd.Function):
    """(relu of) the top-k pre-activations and their indices, with a sparse backward.

    Only the B*k chosen entries carry gradient, so dW_enc = X^T G with G sparse costs B*k*d instead of B*d_sae*d.
    """

    @staticmethod
    def forward(ctx, x_BD: Tensor, W_enc_DF: Tensor, b_enc_F: Tensor, k: int):  # type: ignore[override]
        hidden_BF = torch.addmm(b_enc_F, x_BD, W_enc_DF)
        values_BK, idx_BK = hidden_BF.topk(k, dim=-1, sorted=False)
        values_BK = torch.relu(values_BK)
        ctx.save_for_backward(x_BD, W_enc_DF, idx_BK, values_BK)
        ctx.mark_non_differentiable(idx_BK)
        return values_BK, idx_BK

    @staticmethod
    def backward(ctx, grad_values_BK: Tensor, _grad_idx: Tensor):  # type: ignore[override]
        x_BD, W_enc_DF, idx_BK, values_BK = ctx.saved_tensors
        B, K = idx_BK.shape
        g_BK = grad_values_BK * (values_BK > 0)
        rows = torch.arange(B, device=x_BD.device).repeat_interleave(K)
        # one gradient entry per (token, chosen latent)
        return (*_sparse_grads(ctx, g_BK.flatten(), rows, idx_BK.flatten(), x_BD, W_enc_DF), None)


def _sparse_grads(ctx, g_N: Tensor, rows_N: Tensor, cols_N: Tensor, x_BD: Tensor, W_enc_DF: Tensor):
    """dx, dW_enc, db_enc of ``hidden = x @ W_enc + b_enc`` when only N (row, col) entries carry gradient g_N."""
    B, F = x_BD.shape[0], W_enc_DF.shape[1]
    G_FB = torch.sparse_coo_tensor(torch.stack([cols_N, rows_N]), g_N, (F, B), check_invariants=False)
    grad_x = grad_W = grad_b = None
    if ctx.needs_input_grad[1]:
        grad_W = torch.sparse.mm(G_FB, x_BD).T
    if ctx.needs_input_grad[2]:
        grad_b = torch.zeros(F, dtype=g_N.dtype, device=g_N.device).index_add_(0, cols_N, g_N)
    if ctx.needs_input_grad[0]:
        grad_x = torch.sparse.mm(G_FB.t(), W_enc_DF.T)
    return grad_x, grad_W, grad_b


class _ReLUEncodeSparse(torch.autograd.Function):
    """The positive pre-activations as (values, latent index, per-token offsets), with a sparse backward.

    Exactly ReLU's gradient (zero where inactive), so with ``embedding_bag`` decoding a training step costs one dense
    encoder matmul plus O(nnz * d) instead of five dense [B, d_sae] x d matmuls — a win once the L1 penalty has made
    the code sparse (the trainer switches to it below ``TrainConfig.sparse_below_density``).
    """

    @staticmethod
    def forward(ctx, x_BD: Tensor, W_enc_DF: Tensor, b_enc_F: Tensor):  # type: ignore[override]
        hidden_BF = torch.addmm(b_enc_F, x_BD, W_enc_DF)
        rows_N, cols_N = (hidden_BF > 0).nonzero(as_tuple=True)  # row-major: grouped by token
        values_N = hidden_BF[rows_N, cols_N]
        counts_B = torch.bincount(rows_N, minlength=x_BD.shape[0])
        offsets_B = torch.cumsum(counts_B, 0) - counts_B
        ctx.save_for_backward(x_BD, W_enc_DF, rows_N, cols_N)
        ctx.mark_non_differentiable(cols_N, offsets_B)
        return values_N, cols_N, offsets_B

    @staticmethod
    def backward(ctx, grad_values_N: Tensor, _grad_cols: Tensor, _grad_offsets: Tensor):  # type: ignore[override]
        x_BD, W_enc_DF, rows_N, cols_N = ctx.saved_tensors
        return (*_sparse_grads(ctx, grad_values_N, rows_N, cols_N, x_BD, W_enc_DF),)


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """y = x * H(x - theta); dy/dx = H(x - theta); dy/dtheta = -(theta / eps) K((x - theta) / eps)."""

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_x = grad_out * (x > threshold).to(x.dtype)
        grad_t = (-(threshold / eps) * _rectangle((x - threshold) / eps) * grad_out).sum(0)
        return grad_x, grad_t, None


class _Step(torch.autograd.Function):
    """y = H(x - theta); dy/dx = 0; dy/dtheta = -(1 / eps) K((x - theta) / eps)."""

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_t = (-(1.0 / eps) * _rectangle((x - threshold) / eps) * grad_out).sum(0)
        return torch.zeros_like(x), grad_t, None


class _JumpReLUWithL0(torch.autograd.Function):
    """Fused JumpReLU activation and its L0 (one mask, one kernel evaluation), for training speed.

    Forward: acts = x * H(x - theta), l0 = mean_b sum_f H(x - theta).
    Backward: d acts/dx = H; d acts/dtheta = -(theta/eps) K; d l0/dtheta = -(1/eps) K / B, K = rectangle kernel.
    """

    @staticmethod
    def forward(ctx, x_BF: Tensor, threshold_F: Tensor, bandwidth: float):  # type: ignore[override]
        mask_BF = x_BF > threshold_F
        ctx.save_for_backward(x_BF, threshold_F, mask_BF)
        ctx.bandwidth = bandwidth
        l0 = mask_BF.sum(dtype=x_BF.dtype) / x_BF.shape[0]
        return x_BF * mask_BF, l0

    @staticmethod
    def backward(ctx, grad_acts_BF: Tensor, grad_l0: Tensor):  # type: ignore[override]
        x_BF, threshold_F, mask_BF = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel_BF = (x_BF - threshold_F).abs_() < (eps / 2)
        grad_x = grad_acts_BF * mask_BF
        grad_t = -(threshold_F / eps) * (grad_acts_BF * kernel_BF).sum(0)
        grad_t = grad_t - (grad_l0 / (eps * x_BF.shape[0])) * kernel_BF.sum(0, dtype=x_BF.dtype)
        return grad_x, grad_t, None


class SparseAutoencoder(nn.Module):
    """One SAE. ``device``/``dtype`` are constructor arguments, never part of the config."""

    def __init__(self, cfg: SAEConfig, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                 seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        D, F = cfg.d_in, cfg.d_sae
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        # Kaiming-uniform decoder rows scaled to unit norm; encoder initialised as the decoder transpose.
        bound = math.sqrt(6.0 / D)
        W_dec_FD = (torch.rand(F, D, generator=gen) * 2 - 1) * bound
        W_dec_FD = W_dec_FD / W_dec_FD.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec_FD.to(device=device, dtype=dtype))
        self.W_enc = nn.Parameter(W_dec_FD.T.contiguous().to(device=device, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(F, device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(D, device=device, dtype=dtype))
        if cfg.architecture == "jumprelu":
            init = math.log(cfg.jumprelu_init_threshold)
            self.log_threshold = nn.Parameter(torch.full((F,), init, device=device, dtype=dtype))

    # ----------------------------------------------------------------------------------------------- inference
    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def pre_acts(self, x_BD: Tensor) -> Tensor:
        x_BD = x_BD.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x_BD = x_BD - self.b_dec
        return torch.addmm(self.b_enc, x_BD.reshape(-1, self.cfg.d_in), self.W_enc).reshape(
            *x_BD.shape[:-1], self.cfg.d_sae)

    def activation(self, hidden_pre_BF: Tensor) -> Tensor:
        arch = self.cfg.architecture
        if arch == "standard":
            return torch.relu(hidden_pre_BF)
        if arch == "jumprelu":
            flat = hidden_pre_BF.reshape(-1, self.cfg.d_sae)
            return _JumpReLU.apply(flat, self.threshold, self.cfg.jumprelu_bandwidth).reshape(hidden_pre_BF.shape)
        values, indices = hidden_pre_BF.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(hidden_pre_BF).scatter(-1, indices, torch.relu(values))

    def encode(self, x_BD: Tensor) -> Tensor:
        return self.activation(self.pre_acts(x_BD))

    def decode(self, feature_acts_BF: Tensor) -> Tensor:
        flat = feature_acts_BF.reshape(-1, self.cfg.d_sae)
        return torch.addmm(self.b_dec, flat, self.W_dec).reshape(*feature_acts_BF.shape[:-1], self.cfg.d_in)

    def _centred_flat(self, x_BD: Tensor) -> Tensor:
        x_flat = x_BD.reshape(-1, self.cfg.d_in).to(self.W_enc.dtype)
        return x_flat - self.b_dec if self.cfg.apply_b_dec_to_input else x_flat

    def forward(self, x_BD: Tensor, dense_acts: bool = True) -> ForwardOutput:
        """``dense_acts=False`` (training fast paths, TopK and ReLU): no dense [B, d_sae] activations are returned
        and decoding touches only the active rows of ``W_dec``."""
        if self.cfg.architecture == "standard" and not dense_acts:
            values_N, idx_N, offsets_B = _ReLUEncodeSparse.apply(self._centred_flat(x_BD), self.W_enc, self.b_enc)
            out = torch.nn.functional.embedding_bag(idx_N, self.W_dec, offsets_B, per_sample_weights=values_N,
                                                    mode="sum") + self.b_dec
            return ForwardOutput(out.reshape(*x_BD.shape[:-1], self.cfg.d_in), None, None, sparse_values_N=values_N,
                                 sparse_idx_N=idx_N, sparse_offsets_B=offsets_B)
        if self.cfg.architecture == "topk" and not dense_acts:
            # Training fast path: no dense [B, d_sae] tensors at all besides the encoder's pre-activations.
            values_BK, idx_BK = _TopKEncode.apply(self._centred_flat(x_BD), self.W_enc, self.b_enc, self.cfg.k)
            out = torch.nn.functional.embedding_bag(idx_BK, self.W_dec, per_sample_weights=values_BK,
                                                    mode="sum") + self.b_dec
            return ForwardOutput(out.reshape(*x_BD.shape[:-1], self.cfg.d_in), None, None, None, values_BK, idx_BK)
        hidden_pre = self.pre_acts(x_BD)
        if self.cfg.architecture == "topk":
            # Sparse decode: only the k chosen rows of W_dec per token (k * d_in instead of d_sae * d_in FLOPs).
            flat = hidden_pre.reshape(-1, self.cfg.d_sae)
            values_BK, idx_BK = flat.topk(self.cfg.k, dim=-1, sorted=False)
            values_BK = torch.relu(values_BK)
            out = torch.nn.functional.embedding_bag(idx_BK, self.W_dec, per_sample_weights=values_BK,
                                                    mode="sum") + self.b_dec
            acts = torch.zeros_like(flat).scatter(-1, idx_BK, values_BK)
            return ForwardOutput(out.reshape(*x_BD.shape[:-1], self.cfg.d_in), acts.reshape(hidden_pre.shape),
                                 hidden_pre, None, values_BK, idx_BK)
        if self.cfg.architecture == "jumprelu":
            flat = hidden_pre.reshape(-1, self.cfg.d_sae)
            acts, l0 = _JumpReLUWithL0.apply(flat, self.threshold, self.cfg.jumprelu_bandwidth)
            acts = acts.reshape(hidden_pre.shape)
            return ForwardOutput(self.decode(acts), acts, hidden_pre, l0)
        acts = self.activation(hidden_pre)
        return ForwardOutput(self.decode(acts), acts, hidden_pre)

    def reconstruct(self, x_BD: Tensor) -> Tensor:
        return self.forward(x_BD).sae_out_BD.to(x_BD.dtype)

    # ------------------------------------------------------------------------------------------------ training
    def sparsity_loss(self, out: ForwardOutput) -> Tensor:
        """Per-token sparsity penalty (before its coefficient): L1 (x decoder norms) or L0; zero for topk."""
        arch = self.cfg.architecture
        if arch == "standard":  # sum_f f_i * ||W_dec_i||, as a mat-vec (one pass over [B, d_sae])
            if out.feature_acts_BF is None:  # sparse path: the same sum over the active entries only
                n_tokens = out.sparse_offsets_B.shape[0]
                return (out.sparse_values_N * self.W_dec.norm(dim=-1)[out.sparse_idx_N]).sum() / n_tokens
            return (out.feature_acts_BF @ self.W_dec.norm(dim=-1)).mean()
        if arch == "jumprelu":
            if out.l0 is not None:
                return out.l0
            step = _Step.apply(out.hidden_pre_BF, self.threshold, self.cfg.jumprelu_bandwidth)
            return step.sum(-1).mean()
        return out.sae_out_BD.new_zeros(())

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Project out the gradient component along each (unit) decoder row, so renormalising loses nothing."""
        if self.W_dec.grad is None:
            return
        W = self.W_dec
        parallel_F = (self.W_dec.grad * W).sum(-1, keepdim=True)
        self.W_dec.grad.sub_(parallel_F * W)

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        """Turn an SAE trained on ``scale * x`` into one that takes raw ``x`` and returns raw reconstructions."""
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)

    # ------------------------------------------------------------------------------------------ (de)serialising
    def saelens_state_dict(self) -> dict[str, Tensor]:
        """Weights under SAELens's inference names (``threshold`` instead of ``log_threshold``)."""
        sd = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.cfg.architecture == "jumprelu":
            sd["threshold"] = self.threshold
        return {k: v.detach().contiguous().cpu() for k, v in sd.items()}

    @torch.no_grad()
    def load_saelens_state_dict(self, sd: dict[str, Tensor]) -> None:
        expected = set(self.saelens_state_dict())
        if set(sd) != expected:
            raise ValueError(f"weights have tensors {sorted(sd)}, expected {sorted(expected)} for "
                             f"architecture {self.cfg.architecture!r}")
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            param = getattr(self, name)
            if sd[name].shape != param.shape:
                raise ValueError(f"{name} has shape {tuple(sd[name].shape)}, expected {tuple(param.shape)}")
            param.copy_(sd[name])
        if self.cfg.architecture == "jumprelu":
            self.log_threshold.copy_(sd["threshold"].clamp_min(1e-12).log())

    @property
    def device(self) -> torch.device:
        return self.W_enc.device
