"""Sparse autoencoders: ReLU+L1, JumpReLU+L0 and TopK, trained on activation stores, saved in SAELens's layout.

>>> from saes import SAEConfig, TrainConfig, train_sae, save_sae, load_sae          # doctest: +SKIP
>>> result = train_sae(store.batches("resid_post.15", 4096), SAEConfig(576, 4608), TrainConfig())  # doctest: +SKIP
>>> save_sae(result.sae, "runs/my_sae", meta)   # sae_lens.SAE.load_from_disk("runs/my_sae") works  # doctest: +SKIP

Modules: config (dataclasses), architectures (the SAE), trainer (loop, checkpoints, dead latents), geometric_median,
buffer (shuffle buffer), io (SAELens layout), pipeline (store -> SAE), evaluate (MSE/special-token MSE/FVU/L0/CE/KL),
features (top contexts, histograms, density), scoring (pluggable judge + offline proxy), intervention (FAST's
assistant-header feature sweep), cli (``workbench sae train|eval``), experiments.fast_vs_bt.
"""

from saes.architectures import ForwardOutput, SparseAutoencoder
from saes.config import SAEConfig, SAEMeta, TrainConfig
from saes.io import load_sae, save_sae
from saes.trainer import SAETrainer, TrainResult, train_sae

__all__ = ["ForwardOutput", "SAEConfig", "SAEMeta", "SAETrainer", "SparseAutoencoder", "TrainConfig", "TrainResult",
           "load_sae", "save_sae", "train_sae"]
