"""Mechanistic-interpretability and steering workbench: core (models, hook sites, activation store, data).

Public API::

    from workbench import load_model, tiny_model, hooks, ActivationStore, StoreConfig, harvest
    from steering import SteeringVector
"""

from workbench import hooks
from workbench.chat import encode_chat, render_prompt
from workbench.models import LoadedModel, load_model, tiny_model, wrap_model
from workbench.store import ActivationStore, StoreConfig, harvest

__all__ = ["ActivationStore", "LoadedModel", "StoreConfig", "encode_chat", "harvest", "hooks", "load_model",
           "render_prompt", "tiny_model", "wrap_model"]
__version__ = "0.1.0"
