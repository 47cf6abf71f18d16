"""Activation store: stream activations for (model, sites, data, formatting) to safetensors shards on disk.

>>> store = harvest(lm, texts, "runs/c4-l10", StoreConfig(sites=["resid_post.10"]))   # doctest: +SKIP
>>> for batch_BD in store.batches(batch_size=4096): ...                                # doctest: +SKIP
"""

from workbench.store.config import StoreConfig
from workbench.store.reader import ActivationStore, Sequence, ShardData
from workbench.store.units import Unit, units
from workbench.store.writer import harvest

__all__ = ["ActivationStore", "Sequence", "ShardData", "StoreConfig", "Unit", "harvest", "units"]
