"""SAE training loop over any ``Iterable[Tensor[batch, d_in]]`` (a store's shuffled batches, synthetic data, ...).

One step: ``loss = ||x_hat - x||^2 (summed over d, mean over tokens) + c * sparsity (+ aux)``; Adam; learning rate
linear warm-up then cosine decay ``lr -> lr_end``; decoder rows kept at unit norm; dead latents tracked by tokens
since last firing, optionally fought with the AuxK loss (Gao et al. 2024) or by resampling (Bricken et al. 2023).

Resuming: checkpoints hold weights, Adam moments, dead-latent counters, RNG state and the number of batches drawn.
``fit`` given a fresh iterable that yields the same sequence (same store, same seed) skips the batches already
consumed, so a killed-and-resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from saes.architectures import ForwardOutput, SparseAutoencoder
from saes.config import SAEConfig, TrainConfig
from saes.geometric_median import geometric_median

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    sae: SparseAutoencoder
    """The trained SAE, with the normalisation scale folded in (takes raw activations)."""
    stats: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``lr_end`` at the last step."""
    if step < cfg.lr_warmup_steps:
        return cfg.lr * (step + 1) / cfg.lr_warmup_steps
    span = max(cfg.total_steps - cfg.lr_warmup_steps - 1, 1)
    progress = min((step - cfg.lr_warmup_steps) / span, 1.0)
    return cfg.lr_end + 0.5 * (cfg.lr - cfg.lr_end) * (1 + math.cos(math.pi * progress))


def rebatch(batches: Iterable[Tensor], batch_size: int, d_in: int) -> Iterator[Tensor]:
    """Exact ``[batch_size, d_in]`` float batches from batches of any size; checks width and finiteness."""
    pending: list[Tensor] = []
    n_pending = 0
    for batch in batches:
        if batch.ndim != 2 or batch.shape[1] != d_in:
            raise ValueError(f"activation batch has shape {tuple(batch.shape)}, expected [n, {d_in}] (d_in of the "
                             f"SAE); does the store/site match the SAE's model and layer?")
        if not torch.isfinite(batch).all():
            raise ValueError("activation batch contains NaN/inf; re-harvest the store or check the model dtype")
        pending.append(batch.float())
        n_pending += batch.shape[0]
        while n_pending >= batch_size:
            flat = torch.cat(pending) if len(pending) > 1 else pending[0]
            yield flat[:batch_size]
            rest = flat[batch_size:]
            pending, n_pending = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)


class SAETrainer:
    """Train one SAE. ``checkpoint_dir`` enables periodic checkpoints and resuming."""

    def __init__(self, sae_cfg: SAEConfig, train_cfg: TrainConfig, *, device: str | torch.device | None = None,
                 checkpoint_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                 log_every: int = 50):
        self.sae_cfg, self.cfg = sae_cfg, train_cfg
        self.device = torch.device(device or "cpu")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.progress, self.log_every = progress, log_every
        self.sae = SparseAutoencoder(sae_cfg, device=self.device, seed=train_cfg.seed)
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=train_cfg.lr, betas=tuple(train_cfg.adam_betas))
        self.rng = torch.Generator().manual_seed(train_cfg.seed + 1)
        F = sae_cfg.d_sae
        self.tokens_since_fired_F = torch.zeros(F, dtype=torch.long, device=self.device)
        self.fire_count_F = torch.zeros(F, dtype=torch.long, device=self.device)
        self.last_density = 1.0
        """Active fraction of the previous step (decides the ReLU sparse path; checkpointed)."""
        self.step = 0
        self.batches_consumed = 0
        self.scale: float | None = None
        self.history: list[dict[str, float]] = []
        self.n_resampled = 0

    # ------------------------------------------------------------------------------------------------ the loop
    def fit(self, data: Iterable[Tensor], *, resume: bool = True,
            callback: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
        """Train on ``data`` until the token budget is spent. ``callback(step, metrics)`` runs after every step."""
        if resume and self.checkpoint_dir is not None and (latest := self.latest_checkpoint()) is not None:
            self.load_checkpoint(latest)
            logger.info("resumed from %s (step %d)", latest, self.step)
        stream = rebatch(data, self.cfg.batch_size, self.sae_cfg.d_in)
        for _ in range(self.batches_consumed):  # fast-forward a resumed run to where it stopped
            if next(stream, None) is None:
                raise ValueError("the data ran out while skipping to the checkpoint; pass the same data (same store, "
                                 "same seed) that the interrupted run used")
        if self.step == 0 and self.scale is None:
            stream = self._initialise(stream)
        total = self.cfg.total_steps
        bar = tqdm(total=total, initial=self.step, desc="SAE", unit="step", disable=not self.progress)
        try:
            while self.step < total:
                batch = next(stream, None)
                if batch is None:
                    raise ValueError(f"the data ran out after {self.step} of {total} steps "
                                     f"({self.step * self.cfg.batch_size} tokens); harvest more tokens or lower "
                                     f"total_tokens")
                self.batches_consumed += 1
                metrics = self._train_step(batch.to(self.device))
                self.step += 1
                bar.update(1)
                if self.step % self.log_every == 0 or self.step == total:
                    metrics["step"] = self.step
                    self.history.append(metrics)
                    bar.set_postfix(mse=f"{metrics['mse']:.3g}", l0=f"{metrics['l0']:.1f}")
                every = self.cfg.checkpoint_every_steps
                if self.checkpoint_dir is not None and every and self.step % every == 0 and self.step < total:
                    self.save_checkpoint()
                if callback is not None:
                    callback(self.step, metrics)
        finally:
            bar.close()
        return self._finish()

    def _initialise(self, stream: Iterator[Tensor]) -> Iterator[Tensor]:
        """Estimate the input scale and b_dec from the first batches; those batches are trained on afterwards."""
        first = [b for _, b in zip(range(self.cfg.init_batches), stream)]
        if not first:
            raise ValueError("no activations: the store/iterator is empty")
        x_ND = torch.cat(first).to(self.device)
        mean_sq = x_ND.pow(2).sum(-1).mean().item()
        if mean_sq == 0:
            raise ValueError("activations are all zero; check the site and the store")
        self.scale = math.sqrt(self.sae_cfg.d_in / mean_sq) if self.cfg.normalize_activations else 1.0
        with torch.no_grad():
            if self.cfg.b_dec_init == "geometric_median":
                self.sae.b_dec.copy_(geometric_median(x_ND * self.scale))
            elif self.cfg.b_dec_init == "mean":
                self.sae.b_dec.copy_((x_ND * self.scale).mean(0))

        def chained() -> Iterator[Tensor]:
            yield from first
            yield from stream
        return chained()

    def _train_step(self, x_BD: Tensor) -> dict[str, float]:
        cfg, sae = self.cfg, self.sae
        x_BD = x_BD * self.scale
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        dead_F = self.tokens_since_fired_F > cfg.dead_window_tokens
        use_aux = cfg.dead_latent_method == "aux" and bool(dead_F.any())
        arch = self.sae_cfg.architecture
        sparse = (arch == "topk" and not use_aux) or (arch == "standard" and not use_aux and
                                                      self.last_density < cfg.sparse_below_density)
        out = sae(x_BD, dense_acts=not sparse)
        mse = (out.sae_out_BD - x_BD).pow(2).sum(-1).mean()
        loss = mse
        if arch != "topk":
            coef = cfg.l1_coefficient if arch == "standard" else cfg.l0_coefficient
            if cfg.sparsity_warmup_steps:
                coef *= min(1.0, (self.step + 1) / cfg.sparsity_warmup_steps)
            loss = loss + coef * sae.sparsity_loss(out)
        aux = None
        if use_aux:
            aux = self._aux_loss(x_BD, out, dead_F)
            loss = loss + cfg.aux_coefficient * aux
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.normalize_decoder:
            sae.remove_parallel_decoder_grad_()
        self.optimizer.step()
        if cfg.normalize_decoder:
            sae.normalize_decoder_()
        with torch.no_grad():
            if out.sparse_idx_N is not None:  # ReLU sparse path: every listed entry is active
                count_F = torch.bincount(out.sparse_idx_N, minlength=self.sae_cfg.d_sae)
            elif out.feature_acts_BF is None:  # topk fast path: count from the k indices per token
                idx = out.topk_idx_BK[out.topk_values_BK > 0]
                count_F = torch.bincount(idx, minlength=self.sae_cfg.d_sae)
            else:
                count_F = torch.count_nonzero(out.feature_acts_BF, dim=0)
            if arch == "standard" and cfg.sparse_below_density > 0:
                self.last_density = count_F.sum().item() / (x_BD.shape[0] * self.sae_cfg.d_sae)
            self.tokens_since_fired_F += x_BD.shape[0]
            self.tokens_since_fired_F[count_F > 0] = 0
            self.fire_count_F += count_F
        if (cfg.dead_latent_method == "resample" and (self.step + 1) % cfg.resample_every_steps == 0
                and bool(dead_F.any())):
            self._resample(x_BD, out, dead_F)
        if (self.step + 1) % self.log_every and self.step + 1 != cfg.total_steps:
            return {}
        return {"loss": loss.item(), "mse": mse.item(), "lr": lr, "l0": count_F.sum().item() / x_BD.shape[0],
                "dead_frac": dead_F.float().mean().item(), "aux": aux.item() if aux is not None else 0.0}

    def _aux_loss(self, x_BD: Tensor, out: ForwardOutput, dead_F: Tensor) -> Tensor:
        """AuxK: reconstruct the residual from the top ``aux_k`` dead latents (Gao et al. 2024, as in SAELens)."""
        residual_BD = (x_BD - out.sae_out_BD).detach()
        n_dead = int(dead_F.sum())
        k_aux = min(self.cfg.aux_k, n_dead)
        scale = min(n_dead / k_aux, 1.0)
        masked = torch.where(dead_F, out.hidden_pre_BF, torch.full_like(out.hidden_pre_BF, -torch.inf))
        values, idx = masked.topk(k_aux, dim=-1, sorted=False)
        recon_BD = torch.nn.functional.embedding_bag(idx, self.sae.W_dec, per_sample_weights=torch.relu(values),
                                                     mode="sum")
        return scale * (recon_BD - residual_BD).pow(2).sum(-1).mean()

    @torch.no_grad()
    def _resample(self, x_BD: Tensor, out: ForwardOutput, dead_F: Tensor) -> None:
        """Re-initialise dead latents towards badly reconstructed inputs (Bricken et al. 2023); reset their Adam state."""
        sae = self.sae
        dead_idx = dead_F.nonzero().squeeze(-1)
        err_B = (out.sae_out_BD - x_BD).pow(2).sum(-1)
        probs = (err_B / err_B.sum()).cpu().double()
        picks = torch.multinomial(probs, len(dead_idx), replacement=True, generator=self.rng).to(self.device)
        directions = x_BD[picks] - sae.b_dec
        directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        alive = ~dead_F
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
        sae.W_dec[dead_idx] = directions
        sae.W_enc[:, dead_idx] = directions.T * 0.2 * enc_norm
        sae.b_enc[dead_idx] = 0.0
        for param, rows in ((sae.W_dec, (dead_idx,)), (sae.W_enc, (slice(None), dead_idx)), (sae.b_enc, (dead_idx,))):
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][rows] = 0.0
        self.tokens_since_fired_F[dead_idx] = 0
        self.n_resampled += len(dead_idx)
        logger.info("resampled %d dead latents at step %d", len(dead_idx), self.step + 1)

    def _finish(self) -> TrainResult:
        F = self.sae_cfg.d_sae
        tokens = self.step * self.cfg.batch_size
        stats = {"steps": self.step, "tokens": tokens, "input_scale": self.scale,
                 "dead_frac_train": float((self.tokens_since_fired_F > self.cfg.dead_window_tokens).float().mean()),
                 "never_fired_frac_train": float((self.fire_count_F == 0).float().mean()),
                 "l0_train": float(self.fire_count_F.sum()) / max(tokens, 1), "n_resampled": self.n_resampled,
                 "final": self.history[-1] if self.history else {}, "d_sae": F}
        sae = self.sae
        if self.scale is not None and self.scale != 1.0:
            sae.fold_input_scale_(self.scale)
            self.scale = 1.0  # folded: the trainer's SAE now takes raw activations
        return TrainResult(sae=sae, stats=stats, history=list(self.history))

    # ----------------------------------------------------------------------------------------------- checkpoints
    def checkpoints(self) -> list[Path]:
        if self.checkpoint_dir is None or not self.checkpoint_dir.exists():
            return []
        return sorted(p for p in self.checkpoint_dir.glob("step_*") if (p / "state.json").exists())

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint_dir/step_XXXXXXXX`` atomically (temp dir, then rename); keep the newest few."""
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir / f"step_{self.step:08d}"
        tmp = Path(tempfile.mkdtemp(prefix=".tmp_ckpt_", dir=self.checkpoint_dir))
        try:
            tensors = {f"sae.{k}": v.detach().cpu().contiguous() for k, v in self.sae.state_dict().items()}
            names = dict(self.sae.named_parameters())
            for name, param in names.items():
                for key, value in self.optimizer.state.get(param, {}).items():
                    tensors[f"adam.{name}.{key}"] = value.detach().cpu().reshape(value.shape).contiguous()
            tensors["tokens_since_fired"] = self.tokens_since_fired_F.cpu()
            tensors["fire_count"] = self.fire_count_F.cpu()
            tensors["rng"] = self.rng.get_state()
            save_file(tensors, tmp / "state.safetensors")
            meta = {"step": self.step, "batches_consumed": self.batches_consumed, "scale": self.scale,
                    "n_resampled": self.n_resampled, "history": self.history, "last_density": self.last_density,
                    "sae_cfg": self.sae_cfg.to_dict(), "train_cfg": self.cfg.to_dict()}
            (tmp / "state.json").write_text(json.dumps(meta))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        for old in self.checkpoints()[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        meta = json.loads((path / "state.json").read_text())
        if meta["sae_cfg"] != self.sae_cfg.to_dict() or meta["train_cfg"] != self.cfg.to_dict():
            raise ValueError(f"checkpoint {path} was made with a different SAE/training config; use a new "
                             f"checkpoint_dir or the original config")
        tensors = load_file(path / "state.safetensors")
        self.sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
        for name, param in self.sae.named_parameters():
            state = {key: tensors[f"adam.{name}.{key}"].to(self.device if key != "step" else "cpu")
                     for key in ("step", "exp_avg", "exp_avg_sq") if f"adam.{name}.{key}" in tensors}
            if state:
                self.optimizer.state[param] = state
        self.tokens_since_fired_F = tensors["tokens_since_fired"].to(self.device)
        self.fire_count_F = tensors["fire_count"].to(self.device)
        self.rng.set_state(tensors["rng"])
        self.step, self.batches_consumed = meta["step"], meta["batches_consumed"]
        self.scale, self.n_resampled, self.history = meta["scale"], meta["n_resampled"], meta["history"]
        self.last_density = float(meta.get("last_density", 1.0))


def train_sae(data: Iterable[Tensor], sae_cfg: SAEConfig, train_cfg: TrainConfig, **kwargs: Any) -> TrainResult:
    """Convenience: ``SAETrainer(sae_cfg, train_cfg, **kwargs).fit(data)``."""
    return SAETrainer(sae_cfg, train_cfg, **kwargs).fit(data)
