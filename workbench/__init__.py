"""Mechanistic-interpretability and steering workbench: core (models, hook sites, activation store, data)."""
