"""Measurements of models: cost accounting (``cost``) and image-quality metrics.

Kept light on purpose: import the submodule you need (``from gancomp_jax.metrics import cost``).
"""
