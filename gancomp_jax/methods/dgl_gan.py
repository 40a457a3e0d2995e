"""DGL-GAN (Tian et al., "Discriminator Guided GAN Compression"): a narrow student guided by
the teacher's frozen discriminator. ``config.method.name = 'dgl_gan'``.

Released code: ``yuesongtian/DGL-GAN`` (TensorFlow StyleGAN2, ``stylegan2_dgl/training/loss.py``).

- **Stage 1** (``stage=1``): the narrow student — every synthesis and discriminator width of the
  teacher divided by ``channel_divisor`` (DGL's ``channels_fraction``; the 4×4 constant keeps
  its width with ``keep_const``, as in the TF code) — trained as plain StyleGAN2 from scratch
  (``init='scratch'``), or starting from a pruned student's ``G`` (``init='pruned'``,
  ``student``; D is then the student directory's D when it has one of a matching kind,
  otherwise a fresh narrow D).
- **Stage 2** (``stage=2``): G and D start from stage 1 (``stage1``: its run or model
  directory; the trainer starts fresh optimiser states); the teacher's D (``D_T``) is frozen::

      Gmain  softplus(-D(G(z))) + α · T(D_T(G(z)))        (+ path length, Greg)
      Dmain  logistic, or the teacher-weighted loss        (+ R1, Dreg)

  ``g_teacher_term``: ``'dg'`` (``G_dg_pathreg``: ``T = softplus(-l)``) or ``'ens'``
  (``G_pathreg_ens``: ``T = sg(-l)·softplus(-l)·1[l<0]``). α = 0.1 (configs) or 0.5
  (the function default). ``d_loss``: ``'logistic'`` (``D_logistic_r1``) or
  ``'teacher_weighted'`` (``D_logistic_r1_smooth``:
  ``(1-σ(D_T(G)))·softplus(D(G)) + σ(D_T(x))·softplus(-D(x))``).

Exports ``G``/``G_ema`` and ``D``; ``experiments/dgl_gan.py`` chains both stages.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from gancomp_jax.losses import logistic_d_loss, r1_penalty
from gancomp_jax.losses.dgl import dgl_d_teacher_weighted, dgl_g_ens_term, dgl_g_teacher_term
from gancomp_jax.methods._distil_common import (model_dir, narrow_discriminator, narrow_generator,
                                                path_length_phase_loss, stored_config)
from gancomp_jax.methods.base import BuildEnv, Context, Method, NetworkSpec, OptimizerSpec, Phase

G_TERMS = {"dg": dgl_g_teacher_term, "ens": dgl_g_ens_term}
D_LOSSES = ("logistic", "teacher_weighted")
INITS = ("scratch", "pruned")


def default_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.name = "dgl_gan"
    m.stage = 2                   # 1: plain narrow StyleGAN2; 2: + teacher-D guidance
    m.teacher = ""                # teacher model (its D guides stage 2; its widths define the student)
    m.teacher_g_name = "G_ema"
    m.teacher_d_name = "D"
    m.channel_divisor = 2         # DGL's channels_fraction
    m.keep_const = True           # the 4x4 constant keeps the teacher's width (released TF code)
    m.init = "scratch"            # stage 1: scratch | pruned
    m.student = ""                # stage 1 with init='pruned': model dir with G (and optionally D)
    m.stage1 = ""                 # stage 2: stage 1's run (or model) directory
    m.alpha = 0.1
    m.g_teacher_term = "dg"       # dg | ens
    m.d_loss = "logistic"         # logistic | teacher_weighted
    return m


def _get(config, key, default):
    v = config.get(key, None)
    return default if v is None else v


def resolve(config) -> None:
    m = config.method
    if int(m.stage) not in (1, 2):
        raise ValueError(f"config.method.stage must be 1 or 2, got {m.stage!r}")
    if m.g_teacher_term not in G_TERMS:
        raise ValueError(f"config.method.g_teacher_term must be one of {sorted(G_TERMS)}, got {m.g_teacher_term!r}")
    if m.d_loss not in D_LOSSES:
        raise ValueError(f"config.method.d_loss must be one of {D_LOSSES}, got {m.d_loss!r}")
    if m.init not in INITS:
        raise ValueError(f"config.method.init must be one of {INITS}, got {m.init!r}")
    if int(m.channel_divisor) < 1:
        raise ValueError(f"config.method.channel_divisor must be >= 1, got {m.channel_divisor}")
    if int(m.stage) == 2 and not m.stage1:
        raise ValueError("config.method.stage1 (stage 1's run directory) is required for stage 2")


def _student_networks(m, env: BuildEnv) -> tuple[dict, int]:
    if int(m.stage) == 2:
        stored_config(m.stage1, "G", "config.method.stage1")
        nets = {"G": NetworkSpec("generator", None, source=m.stage1, source_name="G", ema=True, export="G"),
                "D": NetworkSpec("discriminator", None, source=m.stage1, source_name="D", export="D")}
        return nets, stored_config(m.stage1, "G", "config.method.stage1").c_dim
    div = int(m.channel_divisor)
    if m.teacher:
        g_cfg = stored_config(m.teacher, m.teacher_g_name, "config.method.teacher")
        d_cfg = stored_config(m.teacher, m.teacher_d_name, "config.method.teacher")
    elif env.model is not None:
        g_cfg, d_cfg = env.model.generator, env.model.discriminator
    else:
        raise ValueError("config.method.teacher is not set (its widths define the narrow student)")
    d_narrow = narrow_discriminator(d_cfg, div)
    if m.init == "pruned":
        stored_config(m.student, "G", "config.method.student")
        g_spec = NetworkSpec("generator", None, source=m.student, source_name="G", ema=True, export="G")
        d_spec = NetworkSpec("discriminator", d_narrow, source="init", export="D")
        d = model_dir(m.student)
        if d is not None:
            from gancomp_jax.checkpoints import read_description
            net = read_description(d)["networks"].get("D")
            if net is not None and net.get("kind") == "discriminator":
                d_spec = NetworkSpec("discriminator", None, source=m.student, source_name="D", export="D")
    else:
        g_spec = NetworkSpec("generator", narrow_generator(g_cfg, div, bool(m.keep_const)), source="init",
                             ema=True, export="G")
        d_spec = NetworkSpec("discriminator", d_narrow, source="init", export="D")
    return {"G": g_spec, "D": d_spec}, g_cfg.c_dim


def build(config, env: BuildEnv) -> Method:
    resolve(config)
    m = config.method
    stage = int(m.stage)
    networks, c_dim = _student_networks(m, env)
    if stage == 2:
        if not m.teacher:
            raise ValueError("config.method.teacher is not set (its D guides stage 2)")
        stored_config(m.teacher, m.teacher_d_name, "config.method.teacher")
        networks["D_T"] = NetworkSpec("discriminator", None, source=m.teacher, source_name=m.teacher_d_name,
                                      trainable=False)
    B = env.batch_size
    alpha = float(m.alpha)
    g_term = G_TERMS[m.g_teacher_term]
    teacher_weighted = stage == 2 and m.d_loss == "teacher_weighted"
    r1_gamma = float(_get(config, "r1_gamma", 10.0))
    pl_weight = float(_get(config, "pl_weight", 2.0))
    pl_batch = max(1, B // int(_get(config, "pl_batch_shrink", 2)))

    def g_main(ctx: Context):
        fake = ctx.generate("G")
        logits = ctx.discriminate("D", fake.img, fake.c)
        ns = jnp.mean(jax.nn.softplus(-logits))
        metrics = {"G/nonsaturating": ns, "G/scores_fake": jnp.mean(logits)}
        loss = ns
        if stage == 2:
            t_logits = ctx.discriminate("D_T", fake.img, fake.c)
            term = jnp.mean(g_term(t_logits))
            metrics.update({"G/teacher_term": term, "G/scores_fake_D_T": jnp.mean(t_logits)})
            loss = loss + alpha * term
        return loss, metrics

    def d_main(ctx: Context):
        fake = ctx.generate("G")
        img = jax.lax.stop_gradient(fake.img)
        real_c = ctx.real_labels(c_dim)
        gen_logits = ctx.discriminate("D", img, fake.c)
        real_logits = ctx.discriminate("D", ctx.reals, real_c)
        if teacher_weighted:
            gen, real = dgl_d_teacher_weighted(gen_logits, real_logits, ctx.discriminate("D_T", img, fake.c),
                                               ctx.discriminate("D_T", ctx.reals, real_c))
        else:
            gen, real = logistic_d_loss(gen_logits, real_logits)
        loss = jnp.mean(gen) + jnp.mean(real)
        return loss, {"D/loss_fake": jnp.mean(gen), "D/loss_real": jnp.mean(real),
                      "D/scores_fake": jnp.mean(gen_logits), "D/scores_real": jnp.mean(real_logits)}

    def d_reg(ctx: Context):
        c = ctx.real_labels(c_dim)
        pen, _ = r1_penalty(lambda x: ctx.discriminate("D", x, c), ctx.reals)
        return jnp.mean(pen * (r1_gamma / 2)), {"D/r1_penalty": jnp.mean(pen)}

    phases = [Phase("Gmain", "G", g_main, loss_metric="G/loss", key_id=0)]
    pl_interval = int(_get(config, "pl_interval", 4))
    if pl_weight > 0 and pl_interval > 0:
        phases.append(Phase("Greg", "G", path_length_phase_loss("G", pl_weight, pl_batch,
                                                                float(_get(config, "pl_decay", 0.01))),
                            interval=pl_interval, loss_metric="G/reg_loss", key_id=1))
    phases.append(Phase("Dmain", "D", d_main, loss_metric="D/loss", key_id=2))
    r1_interval = int(_get(config, "r1_interval", 16))
    if r1_gamma > 0 and r1_interval > 0:
        phases.append(Phase("Dreg", "D", d_reg, interval=r1_interval, loss_metric="D/reg_loss", key_id=3))
    adam = OptimizerSpec(lr=float(_get(config, "lr", 0.002)),
                         betas=tuple(float(b) for b in _get(config, "betas", (0.0, 0.99))),
                         eps=float(_get(config, "adam_eps", 1e-8)))
    return Method(
        networks=networks,
        optimizers={"G": adam, "D": adam},
        phases=phases,
        extra_state={"pl_mean": jnp.zeros((), jnp.float32)},
        style_mixing_prob=float(_get(config, "style_mixing_prob", 0.9)),
        noise="shared",
        ema_kimg=float(_get(config, "ema_kimg", 10.0)),
        ema_rampup=float(_get(config, "ema_rampup", 0.0)) or None,
        sample_network="G_ema",
        metadata={"method": "dgl_gan", "stage": stage, "alpha": alpha if stage == 2 else None,
                  "g_teacher_term": m.g_teacher_term if stage == 2 else None,
                  "d_loss": m.d_loss if stage == 2 else "logistic", "teacher": m.teacher},
    )
