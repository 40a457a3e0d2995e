"""BigGAN training as BigGAN-PyTorch does it (``train_fns.GAN_training_function``), and DGL-GAN
on BigGAN. ``config.method.name = 'biggan'``.

One iteration: ``num_D_steps`` D steps, then one G step, then the G EMA.

- D step ``i``: ``z ~ N(0, I)``, ``y ~ U{0..n_classes-1}`` (``B`` each, ``B = batch_size /
  num_D_steps``); ``G(z, shared(y))`` in train mode without gradient (its BN statistics and
  spectral-norm vectors update, as in the released loop); D (train mode) on the concatenated
  ``[G(z); x_i]`` with labels ``[y; y_i]`` (``x_i``: the ``i``-th slice of the real batch);
  hinge loss ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``.
- G step: fresh ``z, y``; ``-mean(D(G(z), y))`` with G and D in train mode (D's vectors update
  too, as released) plus, for DGL-GAN stage 2 (``alpha > 0``), ``alpha · (-mean(D_T(G(z), y)))``
  with the teacher's frozen D ``D_T`` (``losses.loss_hinge_genDual`` of the DGL-GAN code, α 0.1).
- Optional modified orthogonal regularisation (``utils.ortho``) on every weight matrix of G
  (but the shared embedding) / D: the gradient ``2 ((W Wᵀ) ⊙ (1 - I)) W`` of
  ``½ ‖(W Wᵀ) ⊙ (1 - I)‖²`` with ``W`` the raw ``[out, fan_in]`` weight, times ``G_ortho`` /
  ``D_ortho``.
- Adam per network (``G_lr``, ``D_lr``, betas, ``adam_eps``); G EMA with BigGAN-PyTorch's fixed
  ``ema_decay`` over parameters *and* buffers, copying G until iteration ``ema_start``.

DGL-GAN on BigGAN (Tian et al.): stage 1 trains a narrow student (the teacher's widths divided
by ``channel_divisor``; ``teacher`` gives the widths) as plain BigGAN; stage 2 starts G and D
from stage 1 (``init``: its run or model directory) and adds the teacher-D term (``alpha`` 0.1).

Differences from the released code: the teacher D runs in eval mode (one power iteration from
its stored ``u``, nothing updated, so it stays bit-identical); the DGL-GAN code leaves it in
train mode so its ``u``/``sv`` buffers drift while its weights stay fixed. Reals of the
``num_D_steps`` D steps are slices of one batch of ``batch_size`` images (BigGAN-PyTorch's
loader also delivers ``batch_size · num_D_steps`` images per iteration). The G step uses ``B``
samples (``G_batch_size = batch_size``, the released default). No gradient accumulation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from gancomp_jax.methods.base import BuildEnv, Context, Method, NetworkSpec, OptimizerSpec, Phase


def default_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.name = "biggan"
    # architecture (BigGAN-PyTorch's flags); resolution 0: the data / model preset resolution
    m.resolution = 0
    m.G_ch = 64
    m.D_ch = 64
    m.dim_z = 128
    m.shared_dim = 0              # 0: dim_z, as released
    m.hier = False
    m.n_classes = 10
    m.G_attn = "64"
    m.D_attn = "64"
    m.mybn = False
    m.SN_eps = 1e-8               # utils.py defaults
    m.BN_eps = 1e-5
    m.num_SVs = 1
    m.num_SV_itrs = 1
    # optimisation (utils.py defaults)
    m.G_lr = 5e-5
    m.D_lr = 2e-4
    m.G_B1, m.G_B2 = 0.0, 0.999
    m.D_B1, m.D_B2 = 0.0, 0.999
    m.adam_eps = 1e-8
    m.num_D_steps = 2
    m.G_ortho = 0.0
    m.D_ortho = 0.0
    m.ema = True
    m.ema_decay = 0.9999
    m.ema_start = 0
    # compression (DGL-GAN)
    m.teacher = ""                # model with G (G_ema) and D: its widths define a narrow student; its D guides stage 2
    m.teacher_g_name = "G_ema"
    m.teacher_d_name = "D"
    m.channel_divisor = 1         # student widths = teacher widths / divisor (needs `teacher`)
    m.init = ""                   # start G and D from this run / model directory (DGL stage 2: stage 1's)
    m.alpha = 0.0                 # weight of -D_T(G(z)) in the G loss (DGL-GAN stage 2: 0.1)
    return m


def resolve(config) -> None:
    m = config.method
    if int(m.num_D_steps) < 1:
        raise ValueError(f"config.method.num_D_steps must be >= 1, got {m.num_D_steps}")
    if int(config.batch_size) % int(m.num_D_steps):
        raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of config.method.num_D_steps="
                         f"{m.num_D_steps} (each D step takes its slice of the real batch)")
    if int(m.channel_divisor) < 1:
        raise ValueError(f"config.method.channel_divisor must be >= 1, got {m.channel_divisor}")
    if int(m.channel_divisor) > 1 and not m.teacher:
        raise ValueError("config.method.channel_divisor > 1 needs config.method.teacher (whose widths it divides)")
    if float(m.alpha) > 0 and not m.teacher:
        raise ValueError("config.method.alpha > 0 (DGL-GAN stage 2) needs config.method.teacher (its D guides G)")
    for k in ("G_ortho", "D_ortho", "alpha"):
        if not float(m[k]) >= 0:
            raise ValueError(f"config.method.{k} must be >= 0, got {m[k]}")
    if not 0 <= float(m.ema_decay) < 1:
        raise ValueError(f"config.method.ema_decay must be in [0, 1), got {m.ema_decay}")


def _divide(widths, div: int) -> tuple[int, ...]:
    return tuple(max(1, int(w) // div) for w in widths)


def narrow(cfg, div: int):
    """A BigGAN config with every width (and hidden width) divided by ``div``."""
    if div == 1:
        return cfg
    return cfg.replace(channels=_divide(cfg.channels, div), hidden=_divide(cfg.hidden, div) if cfg.hidden else ())


def architecture(config, env: BuildEnv):
    """(G config, D config) from ``config.method`` (or the teacher's, narrowed)."""
    from gancomp_jax.models.biggan import BigGANDiscriminatorConfig, BigGANGeneratorConfig

    m = config.method
    if m.teacher:
        from gancomp_jax.methods._distil_common import stored_config
        g = stored_config(m.teacher, m.teacher_g_name, "config.method.teacher")
        d = stored_config(m.teacher, m.teacher_d_name, "config.method.teacher")
        if not isinstance(g, BigGANGeneratorConfig) or not isinstance(d, BigGANDiscriminatorConfig):
            raise ValueError(f"config.method.teacher={m.teacher} does not hold BigGAN networks "
                             f"{m.teacher_g_name!r} and {m.teacher_d_name!r}")
        div = int(m.channel_divisor)
        return narrow(g, div), narrow(d, div)
    res = int(m.resolution) or int(config.data.get("resolution") or env.model.generator.img_resolution)
    common = dict(n_classes=int(m.n_classes), sn_eps=float(m.SN_eps), num_svs=int(m.num_SVs),
                  num_itrs=int(m.num_SV_itrs))
    g = BigGANGeneratorConfig.biggan(res, ch=int(m.G_ch), attention=str(m.G_attn), dim_z=int(m.dim_z),
                                     shared_dim=int(m.shared_dim) or int(m.dim_z), hier=bool(m.hier),
                                     mybn=bool(m.mybn), bn_eps=float(m.BN_eps), **common)
    d = BigGANDiscriminatorConfig.biggan(res, ch=int(m.D_ch), attention=str(m.D_attn), **common)
    return g, d


def ortho_penalty(params, skip=("shared",)) -> jax.Array:
    """``Σ ½ ‖(W Wᵀ) ⊙ (1 - I)‖²`` over the weight matrices (``W`` as torch's ``[out, fan_in]``)."""
    total = jnp.float32(0)
    for path, w in traverse_util.flatten_dict(dict(params)).items():
        if path[0] in skip or w.ndim < 2:
            continue
        if w.ndim == 4:
            W = w.transpose(3, 2, 0, 1).reshape(w.shape[3], -1)
        elif path[0] == "embed":
            W = w
        else:
            W = w.T
        gram = W @ W.T
        off = gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))
        total = total + 0.5 * jnp.sum(jnp.square(off))
    return total


def check_labels(source, n_classes: int) -> None:
    """The real data must carry class labels in ``[0, n_classes)`` (the D step embeds them):
    the digits, or a folder/zip with an NVlabs ``dataset.json`` (``data.sources``). Sources that
    do not say how many classes they have are not checked."""
    k = getattr(source, "num_classes", None)
    if k is None:
        return
    where = getattr(source, "path", None) or type(source).__name__
    if int(k) == 0:
        raise ValueError(f"the biggan method trains class-conditional networks but the data ({where}) carry no "
                         f"class labels: add an NVlabs dataset.json with 'labels' to the folder/zip")
    if int(k) > int(n_classes):
        raise ValueError(f"the data ({where}) have {k} classes but the BigGAN networks have n_classes={n_classes} "
                         f"(config.method.n_classes, or the teacher's)")
    labels = source.labels() if callable(getattr(source, "labels", None)) else None
    if labels is not None and len(labels) and int(np.min(labels)) < 0:
        raise ValueError(f"the data ({where}) have unlabelled items (label -1); every item needs a class label")


def hinge_d(d_fake, d_real):
    return jnp.mean(jax.nn.relu(1.0 - d_real)), jnp.mean(jax.nn.relu(1.0 + d_fake))


def build(config, env: BuildEnv) -> Method:
    resolve(config)
    m = config.method
    g_cfg, d_cfg = architecture(config, env)
    n_d = int(m.num_D_steps)
    B = int(env.batch_size) // n_d
    n_classes = g_cfg.n_classes
    alpha, g_ortho, d_ortho = float(m.alpha), float(m.G_ortho), float(m.D_ortho)
    if m.init:
        networks = {"G": NetworkSpec("biggan_generator", None, source=m.init, source_name="G", ema=bool(m.ema),
                                     export="G"),
                    "D": NetworkSpec("biggan_discriminator", None, source=m.init, source_name="D", export="D")}
    else:
        networks = {"G": NetworkSpec("biggan_generator", g_cfg, ema=bool(m.ema), export="G"),
                    "D": NetworkSpec("biggan_discriminator", d_cfg, export="D")}
    if alpha > 0:
        networks["D_T"] = NetworkSpec("biggan_discriminator", None, source=m.teacher, source_name=m.teacher_d_name,
                                      trainable=False)

    def sample(ctx: Context, tag: str):
        z = jax.random.normal(ctx.rng(f"z{tag}"), (B, ctx.config("G").z_dim), jnp.float32)
        y = jax.random.randint(ctx.rng(f"y{tag}"), (B,), 0, n_classes)
        return z, y

    def run_g(ctx: Context, z, y):
        img, upd = ctx.modules["G"].apply(ctx.variables("G"), z, y, train=True, mutable=["buffers"])
        ctx.new_buffers["G"] = upd["buffers"]
        return img

    def run_d(ctx: Context, img, y):
        out, upd = ctx.modules["D"].apply(ctx.variables("D"), img, y, train=True, mutable=["buffers"])
        ctx.new_buffers["D"] = upd["buffers"]
        return out

    def d_step(i: int):
        def loss(ctx: Context):
            z, y = sample(ctx, "D")
            fake = jax.lax.stop_gradient(run_g(ctx, z, y))
            x = ctx.reals[i * B:(i + 1) * B]
            dy = ctx.batch["label"][i * B:(i + 1) * B]
            out = run_d(ctx, jnp.concatenate([fake, x.astype(fake.dtype)]), jnp.concatenate([y, dy.astype(y.dtype)]))
            d_fake, d_real = out[:B], out[B:]
            loss_real, loss_fake = hinge_d(d_fake, d_real)
            total = loss_real + loss_fake
            metrics = {"D/loss_real": loss_real, "D/loss_fake": loss_fake, "D/scores_real": jnp.mean(d_real),
                       "D/scores_fake": jnp.mean(d_fake)}
            if d_ortho > 0:
                pen = ortho_penalty(ctx.variables("D")["params"], skip=())
                total = total + d_ortho * pen
                metrics["D/ortho"] = pen
            return total, metrics
        return loss

    def g_step(ctx: Context):
        z, y = sample(ctx, "G")
        img = run_g(ctx, z, y)
        d_out = run_d(ctx, img, y)
        g_loss = -jnp.mean(d_out)
        metrics = {"G/loss_adv": g_loss, "G/scores_fake": jnp.mean(d_out)}
        total = g_loss
        if alpha > 0:
            t_out = ctx.modules["D_T"].apply(ctx.variables("D_T"), img, y)  # eval mode: frozen, nothing updated
            term = -jnp.mean(t_out)
            total = total + alpha * term
            metrics.update({"G/teacher_term": term, "G/scores_fake_D_T": jnp.mean(t_out)})
        if g_ortho > 0:
            pen = ortho_penalty(ctx.variables("G")["params"])
            total = total + g_ortho * pen
            metrics["G/ortho"] = pen
        return total, metrics

    phases = [Phase(f"D{i}", "D", d_step(i), loss_metric=f"D/loss{i}" if n_d > 1 else "D/loss", key_id=i)
              for i in range(n_d)]
    phases.append(Phase("G", "G", g_step, loss_metric="G/loss", key_id=100))
    return Method(
        networks=networks,
        optimizers={"G": OptimizerSpec(float(m.G_lr), (float(m.G_B1), float(m.G_B2)), float(m.adam_eps)),
                    "D": OptimizerSpec(float(m.D_lr), (float(m.D_B1), float(m.D_B2)), float(m.adam_eps))},
        phases=phases,
        ema_decay=float(m.ema_decay), ema_start_step=int(m.ema_start), ema_buffers=True,
        sample_network=None,
        metadata={"method": "biggan", "alpha": alpha, "teacher": m.teacher, "channel_divisor": int(m.channel_divisor),
                  "num_D_steps": n_d, "G_ortho": g_ortho, "D_ortho": d_ortho},
        check_source=lambda source: check_labels(source, n_classes),
    )
