"""StyleGAN2 training as NVlabs does it (``config.method.name = 'stylegan2'``): the teacher.

Networks: ``G`` (trainable, with EMA; exported as ``G`` and ``G_ema``) and ``D`` (trainable,
exported as ``D``), both freshly initialised from ``config.model``. One iteration::

    Gmain (every step)           non-saturating loss on D(G(z)) [+ extra terms of config.loss.g]
    Greg  (every pl_interval)    path length on B // pl_batch_shrink latents, weight pl_weight
    Dmain (every step)           logistic loss on G(z) (detached) and reals [+ config.loss.d]
    Dreg  (every r1_interval)    R1 on the reals, gamma / 2

then the EMA of G. Numbers come from the top-level training keys (``lr``, ``betas``,
``r1_gamma``, ...; the trainer fills preset defaults). Greg / Dreg exist only when their weight
is positive, and so does the optimisers' lazy-regularisation correction.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gancomp_jax.losses import logistic_d_loss, nonsaturating_g_loss, path_length_penalty, r1_penalty
from gancomp_jax.methods.base import BuildEnv, Context, Method, NetworkSpec, OptimizerSpec, Phase

# Loss terms by name, weighted by config.loss.g / config.loss.d.
G_TERMS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "nonsaturating": lambda gen_logits: jnp.mean(nonsaturating_g_loss(gen_logits)),
}


def _logistic_d(gen_logits, real_logits):
    gen, real = logistic_d_loss(gen_logits, real_logits)
    return jnp.mean(gen) + jnp.mean(real)


D_TERMS: dict[str, Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]] = {
    "logistic": _logistic_d,
}


def resolve(config) -> None:
    """Checks the loss-term names of ``config.loss``."""
    for name in config.loss.g:
        if name not in G_TERMS:
            raise ValueError(f"unknown generator loss term {name!r} in config.loss.g; available: {sorted(G_TERMS)}")
    for name in config.loss.d:
        if name not in D_TERMS:
            raise ValueError(f"unknown discriminator loss term {name!r} in config.loss.d; available: {sorted(D_TERMS)}")


def build(config, env: BuildEnv) -> Method:
    resolve(config)
    g_cfg, d_cfg = env.model.generator, env.model.discriminator
    B = env.batch_size
    g_terms = tuple((k, float(v)) for k, v in config.loss.g.items())
    d_terms = tuple((k, float(v)) for k, v in config.loss.d.items())
    pl_weight, pl_batch = float(config.pl_weight), B // int(config.pl_batch_shrink)
    r1_gamma, pl_decay = float(config.r1_gamma), float(config.pl_decay)

    def g_main(ctx: Context):
        fake = ctx.generate("G")
        logits = ctx.discriminate("D", fake.img, fake.c)
        terms = {name: G_TERMS[name](logits) for name, _ in g_terms}
        loss = sum(w * terms[name] for name, w in g_terms)
        metrics = {f"G/{k}": v for k, v in terms.items()}
        metrics["G/scores_fake"] = jnp.mean(logits)
        return loss, metrics

    def g_reg(ctx: Context):
        kpass, kpl = jax.random.split(ctx.key)
        lat = ctx.latents("pl", batch_size=pl_batch, key=kpass)
        ws = ctx.map("G", lat)
        penalty, lengths, pl_mean = path_length_penalty(ctx.synthesis_fn("G", lat), ws, kpl, ctx.extra["pl_mean"],
                                                        pl_decay)
        ctx.set_extra("pl_mean", pl_mean)
        return jnp.mean(penalty * pl_weight), {"G/pl_penalty": jnp.mean(penalty), "G/pl_length": jnp.mean(lengths)}

    def d_main(ctx: Context):
        fake = ctx.generate("G")
        gen_logits = ctx.discriminate("D", jax.lax.stop_gradient(fake.img), fake.c)
        real_logits = ctx.discriminate("D", ctx.reals, ctx.real_labels(g_cfg.c_dim))
        terms = {name: D_TERMS[name](gen_logits, real_logits) for name, _ in d_terms}
        loss = sum(w * terms[name] for name, w in d_terms)
        metrics = {f"D/{k}": v for k, v in terms.items()}
        metrics.update({"D/scores_fake": jnp.mean(gen_logits), "D/scores_real": jnp.mean(real_logits)})
        return loss, metrics

    def d_reg(ctx: Context):
        c = ctx.real_labels(g_cfg.c_dim)
        penalty, _ = r1_penalty(lambda x: ctx.discriminate("D", x, c), ctx.reals)
        return jnp.mean(penalty * (r1_gamma / 2)), {"D/r1_penalty": jnp.mean(penalty)}

    phases = [Phase("Gmain", "G", g_main, loss_metric="G/loss", key_id=0)]
    if pl_weight > 0 and int(config.pl_interval) > 0:
        phases.append(Phase("Greg", "G", g_reg, interval=int(config.pl_interval), loss_metric="G/reg_loss", key_id=1))
    phases.append(Phase("Dmain", "D", d_main, loss_metric="D/loss", key_id=2))
    if r1_gamma > 0 and int(config.r1_interval) > 0:
        phases.append(Phase("Dreg", "D", d_reg, interval=int(config.r1_interval), loss_metric="D/reg_loss", key_id=3))

    adam = OptimizerSpec(lr=float(config.lr), betas=tuple(float(b) for b in config.betas), eps=float(config.adam_eps))
    return Method(
        networks={"G": NetworkSpec("generator", g_cfg, trainable=True, ema=True, export="G"),
                  "D": NetworkSpec("discriminator", d_cfg, trainable=True, export="D")},
        optimizers={"G": adam, "D": adam},
        phases=phases,
        extra_state={"pl_mean": jnp.zeros((), jnp.float32)},
        style_mixing_prob=float(config.style_mixing_prob),
        noise="shared",  # one generator: the latents' noise key, as before the redesign
        ema_kimg=float(config.ema_kimg),
        ema_rampup=float(config.ema_rampup) or None,
        sample_network="G_ema",
        metadata={"method": "stylegan2"},
    )
