"""Things that write into a model: steering vectors, refusal directions, controllers, G-ACT, export bundles."""

from steering.vector import SteeringVector

__all__ = ["SteeringVector"]
