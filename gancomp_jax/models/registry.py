"""Network construction by kind: the flax module, fresh variables and their shapes.

``kind`` is ``'generator'`` or ``'discriminator'`` (the StyleGAN2 networks); model checkpoints
(``gancomp_jax.checkpoints``), the converter and the trainer build networks through here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig
from gancomp_jax.models.discriminator import Discriminator
from gancomp_jax.models.generator import Generator

# kind -> (config class, module class)
KINDS = {"generator": (GeneratorConfig, Generator), "discriminator": (DiscriminatorConfig, Discriminator)}


def make_module(kind: str, config, **kwargs):
    """The flax module of ``kind`` for ``config`` (kwargs: e.g. ``mbstd_num_shards``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown network kind {kind!r}; available: {sorted(KINDS)}")
    return KINDS[kind][1](config, **kwargs)


def _dummy_inputs(kind: str, config):
    c = jnp.zeros((1, config.c_dim)) if config.c_dim else None
    if kind == "generator":
        return (jnp.zeros((1, config.z_dim)), c), {"noise_mode": "const"}
    img = jnp.zeros((1, config.img_resolution, config.img_resolution, config.img_channels))
    return (img, c), {}


def init_variables(kind: str, config, key: jax.Array) -> dict[str, Any]:
    """Freshly initialised variables (NVlabs initialisation): ``{'params', ['buffers']}``."""
    args, kw = _dummy_inputs(kind, config)
    return dict(make_module(kind, config).init({"params": key}, *args, **kw))


def abstract_variables(kind: str, config) -> dict[str, Any]:
    """Shapes/dtypes of a network's variables (``params`` and ``buffers``) without computing them."""
    return dict(jax.eval_shape(lambda: init_variables(kind, config, jax.random.key(0))))
