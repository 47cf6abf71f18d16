"""Things that write into a model: steering vectors, refusal directions, controllers, G-ACT, export bundles."""

from steering.bundle import Bundle
from steering.export import load_bundle, load_into
from steering.vector import SteeringVector

__all__ = ["Bundle", "SteeringVector", "load_bundle", "load_into"]
