"""DGL-GAN on BigGAN, in the stages of the paper (``config.method.name = 'dgl_gan_biggan'``;
chained by the ``dgl_gan`` job, ``experiments/dgl_gan.py:biggan_digits``).

- Stage 1 (``stage=1``): the narrow student — the teacher's G and D widths divided by
  ``channel_divisor`` (the paper's channel multiplier 1/2, 1/3, 1/4) — trained as plain BigGAN
  (:mod:`gancomp_jax.methods.biggan`, hinge loss).
- Stage 2 (``stage=2``): G and D start from stage 1 (``stage1``: its run or model directory;
  fresh optimiser states) and the G loss gains the frozen teacher D's term
  ``alpha · (-mean D_T(G(z, y), y))`` (DGL-GAN's ``loss_hinge_genDual``, alpha 0.1); D keeps the
  plain hinge loss.

Every other key is the ``biggan`` method's (Adam settings, ``num_D_steps``, EMA, ortho).
"""

from __future__ import annotations

import ml_collections

from gancomp_jax.methods import biggan
from gancomp_jax.methods.base import BuildEnv, Method


def default_config() -> ml_collections.ConfigDict:
    m = biggan.default_config()
    m.name = "dgl_gan_biggan"
    m.stage = 2
    m.stage1 = ""
    m.alpha = 0.1
    m.channel_divisor = 2
    return m


def _as_biggan(config) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.to_dict())
    m = c.method
    stage = int(m.stage)
    m.name = "biggan"
    m.init = str(m.stage1) if stage == 2 else ""
    if stage == 1:
        m.alpha = 0.0
    for k in ("stage", "stage1"):
        del m[k]
    return c


def resolve(config) -> None:
    m = config.method
    if int(m.stage) not in (1, 2):
        raise ValueError(f"config.method.stage must be 1 or 2, got {m.stage!r}")
    if not m.teacher:
        raise ValueError("config.method.teacher is not set (its widths define the student; its D guides stage 2)")
    if int(m.stage) == 2 and not m.stage1:
        raise ValueError("config.method.stage1 (stage 1's run directory) is required for stage 2")
    if int(m.stage) == 2 and not float(m.alpha) > 0:
        raise ValueError(f"config.method.alpha must be > 0 in stage 2, got {m.alpha}")
    biggan.resolve(_as_biggan(config))


def build(config, env: BuildEnv) -> Method:
    resolve(config)
    method = biggan.build(_as_biggan(config), env)
    meta = dict(method.metadata, method="dgl_gan_biggan", stage=int(config.method.stage))
    import dataclasses
    return dataclasses.replace(method, metadata=meta)
