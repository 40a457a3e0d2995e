"""Helpers shared by the distillation methods (NICKEL & DiME, DGL-GAN): stored network
descriptions, narrowed architectures, feature-network roles and the path-length phase."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gancomp_jax.losses import path_length_penalty
from gancomp_jax.models import DiscriminatorConfig, GeneratorConfig


def model_dir(path: str) -> Path | None:
    """Our model directory for ``path`` (a model dir or a training run dir), else None."""
    p = Path(path)
    if (p / "model.json").is_file():
        return p
    if (p / "model" / "model.json").is_file():
        return p / "model"
    return None


def stored_config(path: str, name: str, what: str):
    """The architecture of network ``name`` stored at ``path`` (model dir, run dir, .pkl, .pt).

    ``what`` names the config key for messages.
    """
    if not path:
        raise ValueError(f"{what} is not set (a model directory, training run or .pkl/.pt file)")
    if not Path(path).exists():
        raise FileNotFoundError(f"{what}={path} does not exist")
    d = model_dir(path)
    if d is not None:
        from gancomp_jax.checkpoints import KINDS, read_description

        desc = read_description(d)
        if name not in desc["networks"]:
            raise ValueError(f"{what}={path}: no network {name!r} (found {sorted(desc['networks'])})")
        net = desc["networks"][name]
        return KINDS[net["kind"]][0].from_dict(net["config"])
    from gancomp_jax.checkpoints import load_any

    nets = load_any(path, [name])
    if name not in nets:
        raise ValueError(f"{what}={path}: no network {name!r}")
    return nets[name].config


def generator_block_width(cfg: GeneratorConfig, res: int) -> int:
    """Output width of synthesis block ``b{res}`` (its last conv; NVlabs layer layout)."""
    k = int(round(math.log2(res)))
    return cfg.channels[2 * k - 3]


def narrow_generator(cfg: GeneratorConfig, divisor: int, keep_const: bool = True) -> GeneratorConfig:
    """DGL-GAN's ``channels_fraction``: every synthesis width divided by ``divisor`` (the 4×4
    constant keeps its width when ``keep_const``, as in the released TF code)."""
    ch = [max(1, c // divisor) for c in cfg.channels]
    if keep_const:
        ch[0] = cfg.channels[0]
    return cfg.replace(channels=tuple(ch))


def narrow_discriminator(cfg: DiscriminatorConfig, divisor: int) -> DiscriminatorConfig:
    """Every discriminator width divided by ``divisor``."""
    return cfg.replace(channels=tuple(max(1, c // divisor) for c in cfg.channels))


class FunctionModule:
    """Wraps a pure ``apply_fn(params, *args)`` as a module-like object for the trainer
    (``apply(variables, *args)`` with ``variables = {'params': params}``)."""

    def __init__(self, apply_fn: Callable[..., Any], name: str = ""):
        self.apply_fn, self.name = apply_fn, name

    def apply(self, variables, *args, **kwargs):
        return self.apply_fn(variables["params"], *args, **kwargs)

    def __repr__(self):
        return f"FunctionModule({self.name})"


class Adapter(nn.Module):
    """1×1 convolution ``[N, H, W, C_in] → [N, H, W, features]`` (float32)."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features, name="proj")(x.astype(jnp.float32))


def path_length_rounds(lengths: jnp.ndarray, pl_mean: jnp.ndarray, decay: float, rounds: int):
    """Path-length penalty of ``lengths [N]`` taken in ``rounds`` contiguous chunks, as NVlabs'
    accumulation rounds: chunk r sets ``m_r = m_{r-1} + decay·(mean L_r − m_{r-1})`` (``m_0 =
    pl_mean``; ``m_{r-1}`` detached) and gets ``(L_r − m_r)²``. Returns ``(penalty [N], m_R
    detached)``."""
    pens, mean = [], pl_mean
    for chunk in jnp.split(lengths, int(rounds)):
        new = mean + decay * (jnp.mean(chunk) - mean)
        pens.append(jnp.square(chunk - new))
        mean = jax.lax.stop_gradient(new)
    return jnp.concatenate(pens), mean


def path_length_phase_loss(role: str, pl_weight: float, pl_batch: int, pl_decay: float, rounds: int = 1):
    """The ``Greg`` loss of a generator role (NVlabs path length on ``pl_batch`` latents).

    ``rounds > 1``: the ``pl_batch`` latents are ``rounds`` contiguous chunks handled as NVlabs
    handles its accumulation rounds — chunk ``r`` moves the running mean with its own mean
    length (``pl_mean ← pl_mean + decay·(mean L_r − pl_mean)``, ``rounds`` updates per phase),
    its penalty is ``(L_r − pl_mean_r)²`` against that updated mean (not detached within the
    chunk, detached across chunks), and the loss is the mean over all chunks.
    """
    rounds = int(rounds)
    if rounds < 1 or pl_batch % rounds:
        raise ValueError(f"path length per round: a batch of {pl_batch} does not split into {rounds} equal rounds")

    def g_reg(ctx):
        kpass, kpl = jax.random.split(ctx.key)
        lat = ctx.latents("pl", batch_size=pl_batch, key=kpass)
        ws = ctx.map(role, lat)
        penalty, lengths, pl_mean = path_length_penalty(ctx.synthesis_fn(role, lat), ws, kpl,
                                                        ctx.extra["pl_mean"], pl_decay)
        if rounds > 1:
            penalty, pl_mean = path_length_rounds(lengths, ctx.extra["pl_mean"], pl_decay, rounds)
        ctx.set_extra("pl_mean", pl_mean)
        return jnp.mean(penalty * pl_weight), {f"{role}/pl_penalty": jnp.mean(penalty),
                                               f"{role}/pl_length": jnp.mean(lengths)}
    return g_reg
