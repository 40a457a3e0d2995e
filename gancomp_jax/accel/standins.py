"""Random-weight stand-ins of the real feature-network architectures (CLIP RN50, DINO RN50).

Used where a *speed* or *smoke* run would otherwise need a weight file that is not on the
machine (``tools/device_check.py`` times NICKEL & DiME with them; the Colab notebook's
``SMOKE=True`` mode uses them instead of downloads). They are the real architectures with
freshly initialised parameters, so compute and memory are the real ones, and every caller
prints that the weights are random. Never used for a result that depends on the weights.

``random_embedder(kind, preprocess, dtype, seed) -> (params, apply_fn)`` has the contract of
:func:`gancomp_jax.nets.embedders.load_embedder` (images ``[N, H, W, 3]`` in ``[-1, 1]`` →
``[N, D]`` float32). :func:`register_nickel_standins` makes them available to NICKEL & DiME
as embedder kinds ``standin_clip_rn50`` / ``standin_dino_rn50`` (``weights`` is ignored).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

STANDIN_KINDS = ("clip_rn50", "dino_rn50")
CLIP_RN50 = dict(layers=[3, 4, 6, 3], width=64, heads=32, output_dim=1024, image_size=224)
DINO_RN50 = dict(layers=[3, 4, 6, 3], width=64)


def random_embedder(kind: str, preprocess: str = "released", dtype: Any = jnp.float32, seed: int = 0):
    """``(params, apply_fn)`` of embedder ``kind`` with random weights (see the module docstring)."""
    from gancomp_jax.nets import LoadedNet
    from gancomp_jax.nets.embedders import make_embedder

    key = jax.random.key(seed)
    if kind == "clip_rn50":
        from gancomp_jax.nets.clip_resnet import ModifiedResNet, clip_rn50_apply

        c = CLIP_RN50
        module = ModifiedResNet(tuple(c["layers"]), c["width"], c["heads"], c["output_dim"])
        params = jax.jit(module.init)(key, jnp.zeros((1, c["image_size"], c["image_size"], 3)))
        apply = partial(clip_rn50_apply, config=c, dtype=dtype)
    elif kind == "dino_rn50":
        from gancomp_jax.nets.resnet import ResNet, resnet_apply

        c = DINO_RN50
        module = ResNet(tuple(c["layers"]), c["width"])
        params = jax.jit(module.init)(key, jnp.zeros((1, 64, 64, 3)))
        apply = partial(resnet_apply, config=c, dtype=dtype)
    else:
        raise ValueError(f"no random stand-in for embedder kind {kind!r} (have {STANDIN_KINDS})")
    net = LoadedNet(kind, params, apply, c, "<random weights>")
    return make_embedder(net, preprocess, dtype=dtype)


def register_nickel_standins(dtype: Any = jnp.float32) -> tuple[str, ...]:
    """Registers ``standin_<kind>`` embedder kinds with NICKEL & DiME; returns their names."""
    from gancomp_jax.methods import nickel_dime

    names = []
    for kind in STANDIN_KINDS:
        name = f"standin_{kind}"
        nickel_dime.EMBEDDER_FACTORIES[name] = (
            lambda path, preprocess, dtype=dtype, kind=kind: random_embedder(kind, preprocess, dtype))
        names.append(name)
    return tuple(names)
