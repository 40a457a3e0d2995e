"""Named architectures: the NVlabs stylegan2-ada-pytorch presets plus small ones.

``get_preset(name)`` returns the generator and discriminator descriptions together with the
NVlabs training hyper-parameters of the preset (used as trainer defaults):

==========  =====  ============  ===  =====  ======  =====  ========
name        res    channel_base  map  mbstd  batch   lr     R1 gamma
==========  =====  ============  ===  =====  ======  =====  ========
paper256    256    16384         8    8      64      .0025  1
paper512    512    32768         8    8      64      .0025  0.5
paper1024   1024   32768         8    4      32      .002   2
stylegan2   1024   32768         8    4      32      .002   10   (config-f)
cifar       32     32768         2    32     64      .0025  0.01
tiny16      16     512 (max 32)  2    4      8       .002   1    (tests; fixture architecture)
small32     32     1024 (max 64) 2    4      16      .0025  1    (quickstart teacher; no PL, no mixing)
==========  =====  ============  ===  =====  ======  =====  ========

NVlabs runs every preset with ``conv_clamp=256`` (and fp16 in the 4 highest resolutions);
``mixed_precision=True`` asks for the same here (bfloat16 compute).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig


@dataclasses.dataclass(frozen=True)
class Preset:
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    training: dict[str, Any]


_SPECS: dict[str, dict[str, Any]] = {
    # name: resolution, channel_base, channel_max, z/w dim, mapping layers, mbstd group,
    #       batch, lr, gamma, ema_kimg, ema_rampup, D architecture, pl_weight, style_mixing
    "paper256": dict(res=256, base=16384, max=512, zw=512, map=8, mbstd=8, batch=64, lr=0.0025,
                     gamma=1.0, ema_kimg=20.0, ema_rampup=None),
    "paper512": dict(res=512, base=32768, max=512, zw=512, map=8, mbstd=8, batch=64, lr=0.0025,
                     gamma=0.5, ema_kimg=20.0, ema_rampup=None),
    "paper1024": dict(res=1024, base=32768, max=512, zw=512, map=8, mbstd=4, batch=32, lr=0.002,
                      gamma=2.0, ema_kimg=10.0, ema_rampup=None),
    "stylegan2": dict(res=1024, base=32768, max=512, zw=512, map=8, mbstd=4, batch=32, lr=0.002,
                      gamma=10.0, ema_kimg=10.0, ema_rampup=None),
    "cifar": dict(res=32, base=32768, max=512, zw=512, map=2, mbstd=32, batch=64, lr=0.0025,
                  gamma=0.01, ema_kimg=500.0, ema_rampup=0.05, d_arch="orig", pl_weight=0.0,
                  style_mixing_prob=0.0),
    "tiny16": dict(res=16, base=512, max=32, zw=32, map=2, mbstd=4, batch=8, lr=0.002,
                   gamma=1.0, ema_kimg=1.0, ema_rampup=None),
    "small32": dict(res=32, base=1024, max=64, zw=64, map=2, mbstd=4, batch=16, lr=0.0025,
                    gamma=1.0, ema_kimg=2.0, ema_rampup=0.05, pl_weight=0.0, style_mixing_prob=0.0),
}

PRESET_NAMES = tuple(_SPECS)


def get_preset(name: str, conv_clamp: float | None = None, mixed_precision: bool = False,
               resolution: int | None = None, channel_base: int | None = None,
               channel_max: int | None = None) -> Preset:
    """The named preset; ``resolution``, ``channel_base`` and ``channel_max`` override the
    preset's (widths follow NVlabs' schedule ``min(channel_base // res, channel_max)``)."""
    if name not in _SPECS:
        raise ValueError(f"unknown model preset {name!r}; available: {list(_SPECS)}")
    s = dict(_SPECS[name])
    s["base"] = channel_base or s["base"]
    s["max"] = channel_max or s["max"]
    res = resolution or s["res"]
    mixed = 4 if mixed_precision else 0
    g = GeneratorConfig.nvlabs(res, s["base"], s["max"], z_dim=s["zw"], w_dim=s["zw"],
                               mapping_layers=s["map"], conv_clamp=conv_clamp, num_mixed_res=mixed)
    d = DiscriminatorConfig.nvlabs(res, s["base"], s["max"], architecture=s.get("d_arch", "resnet"),
                                   mbstd_group_size=s["mbstd"], conv_clamp=conv_clamp,
                                   num_mixed_res=mixed)
    training = dict(batch_size=s["batch"], lr=s["lr"], r1_gamma=s["gamma"], ema_kimg=s["ema_kimg"],
                    ema_rampup=s["ema_rampup"], pl_weight=s.get("pl_weight", 2.0),
                    style_mixing_prob=s.get("style_mixing_prob", 0.9))
    return Preset(g, d, training)
