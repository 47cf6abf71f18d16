"""Glue between activation stores and SAE training/saving: what the CLI and the experiment call."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from saes.config import SAEConfig, SAEMeta, TrainConfig
from saes.io import OutputExistsError, save_sae
from saes.trainer import SAETrainer, TrainResult
from workbench.store import ActivationStore

logger = logging.getLogger(__name__)


def train_from_store(store: ActivationStore, sae_cfg: SAEConfig, train_cfg: TrainConfig, out: str | os.PathLike[str],
                     *, site: str | None = None, regime: str = "", checkpoint_dir: str | os.PathLike[str] | None = None,
                     overwrite: bool = False, buffer_tokens: int = 1 << 18, progress: bool = True,
                     device: Any = None, min_position: int = 0) -> TrainResult:
    """Train on ``store`` (shuffle buffer, seed ``train_cfg.seed``; several epochs if the budget needs them) and save
    in the SAELens layout at ``out``. Checks widths and refuses to overwrite before any compute is spent.

    ``min_position=1`` leaves out position 0 of every row: in SmolLM2 (and most LMs) the first token of a forward
    pass is an attention sink whose residual norm is ~100x the median, which would dominate any MSE objective."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) or choose a new path")
    if store.d_model != sae_cfg.d_in:
        raise ValueError(f"the store holds d_model={store.d_model} activations but the SAE has d_in={sae_cfg.d_in}")
    if store.n_tokens < train_cfg.batch_size * train_cfg.init_batches:
        raise ValueError(f"the store has only {store.n_tokens} tokens; it needs at least "
                         f"{train_cfg.batch_size * train_cfg.init_batches} (init_batches x batch_size)")
    name = store.site(site)
    usable = store.n_tokens - (store.manifest["n_units"] * min_position)
    epochs = math.ceil(train_cfg.total_tokens / max(usable, 1)) + 1
    if epochs > 2:
        logger.warning("the budget of %d tokens needs %d passes over the %d-token store", train_cfg.total_tokens,
                       epochs - 1, store.n_tokens)
    data = store.batches(name, batch_size=train_cfg.batch_size, shuffle=True, seed=train_cfg.seed,
                         buffer_tokens=buffer_tokens, epochs=epochs, device=device,
                         token_filter=(lambda shard: shard.positions >= min_position) if min_position else None)
    trainer = SAETrainer(sae_cfg, train_cfg, device=device, checkpoint_dir=checkpoint_dir, progress=progress)
    result = trainer.fit(data)
    meta = SAEMeta(model_name=store.manifest["model_name"], model_fingerprint=store.fingerprint, hook_name=name,
                   regime=regime, store_path=str(store.folder),
                   train={**train_cfg.to_dict(), "min_position": min_position}, stats=result.stats)
    save_sae(result.sae, out, meta, overwrite=overwrite)
    return result
