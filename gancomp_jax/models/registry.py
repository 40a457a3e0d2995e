"""Network construction by kind: the flax module, fresh variables and their shapes.

``kind`` is ``'generator'`` or ``'discriminator'`` (the StyleGAN2 networks) or
``'biggan_generator'`` / ``'biggan_discriminator'`` (:mod:`gancomp_jax.models.biggan`, imported
only when a BigGAN kind is first used); model checkpoints (``gancomp_jax.checkpoints``), the
converter and the trainer build networks through here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig
from gancomp_jax.models.discriminator import Discriminator
from gancomp_jax.models.generator import Generator

GENERATOR_KINDS = ("generator", "biggan_generator", "pretrained_biggan_generator")
DISCRIMINATOR_KINDS = ("discriminator", "biggan_discriminator")

#: kind -> model family (jobs dispatch family-specific code on it without importing the family)
FAMILIES = {"generator": "stylegan2", "discriminator": "stylegan2", "biggan_generator": "biggan",
            "biggan_discriminator": "biggan", "pretrained_biggan_generator": "biggan_deep"}


def family(kind: str) -> str:
    """The model family of a network kind: ``'stylegan2'``, ``'biggan'`` (BigGAN-PyTorch) or
    ``'biggan_deep'`` (pytorch-pretrained-biggan, eval only)."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown network kind {kind!r}; available: {sorted(FAMILIES)}")
    return FAMILIES[kind]


def _biggan(kind: str):
    if kind == "pretrained_biggan_generator":  # pytorch-pretrained-biggan's BigGAN-deep (eval only)
        from gancomp_jax.models.biggan import pretrained
        return pretrained.PretrainedBigGANConfig, pretrained.PretrainedBigGANGenerator
    from gancomp_jax.models import biggan  # the family is imported only when used
    if kind == "biggan_generator":
        return biggan.BigGANGeneratorConfig, biggan.BigGANGenerator
    return biggan.BigGANDiscriminatorConfig, biggan.BigGANDiscriminator


class _Kinds(dict):
    """kind -> (config class, module class); BigGAN entries resolve on first lookup."""

    _LAZY = {"biggan_generator": _biggan, "biggan_discriminator": _biggan, "pretrained_biggan_generator": _biggan}

    def __contains__(self, kind) -> bool:
        return dict.__contains__(self, kind) or kind in self._LAZY

    def __missing__(self, kind):
        if kind not in self._LAZY:
            raise KeyError(kind)
        value = self._LAZY[kind](kind)
        self[kind] = value
        return value

    def __iter__(self):
        return iter(sorted(set(dict.keys(self)) | set(self._LAZY)))

    def keys(self):
        return list(iter(self))


# kind -> (config class, module class)
KINDS = _Kinds({"generator": (GeneratorConfig, Generator), "discriminator": (DiscriminatorConfig, Discriminator)})


def make_module(kind: str, config, **kwargs):
    """The flax module of ``kind`` for ``config`` (kwargs: e.g. ``mbstd_num_shards``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown network kind {kind!r}; available: {sorted(KINDS)}")
    return KINDS[kind][1](config, **kwargs)


def _dummy_inputs(kind: str, config):
    if kind in ("biggan_generator", "pretrained_biggan_generator"):
        return (jnp.zeros((2, config.z_dim)), jnp.zeros((2,), jnp.int32)), {}
    if kind == "biggan_discriminator":
        return (jnp.zeros((1, config.resolution, config.resolution, config.img_channels)),
                jnp.zeros((1,), jnp.int32)), {}
    c = jnp.zeros((1, config.c_dim)) if config.c_dim else None
    if kind == "generator":
        return (jnp.zeros((1, config.z_dim)), c), {"noise_mode": "const"}
    img = jnp.zeros((1, config.img_resolution, config.img_resolution, config.img_channels))
    return (img, c), {}


def init_variables(kind: str, config, key: jax.Array) -> dict[str, Any]:
    """Freshly initialised variables (NVlabs initialisation; BigGAN: orthogonal, as released):
    ``{'params', ['buffers']}``."""
    args, kw = _dummy_inputs(kind, config)
    return dict(make_module(kind, config).init({"params": key}, *args, **kw))


def abstract_variables(kind: str, config) -> dict[str, Any]:
    """Shapes/dtypes of a network's variables (``params`` and ``buffers``) without computing them."""
    return dict(jax.eval_shape(lambda: init_variables(kind, config, jax.random.key(0))))
