"""CAGC distillation (Liu et al., "Content-Aware GAN Compression", CVPR 2021): fine-tuning a
pruned student with content-aware output distillation. ``config.method.name = 'cagc'``.

Released code: ``lychenyoko/content-aware-gan-compression`` (``train.py``) and its StyleGAN2-ADA
port in ``SangyeopYeo/NICKEL_AND_DIME`` (``training/loss_CAGC.py``). Networks (roles):

- ``G_T`` frozen teacher generator (``teacher``'s ``G_ema``);
- ``G_S`` the student (``student``'s ``G``, e.g. our prune job's output), with an EMA; exported
  as ``G`` / ``G_ema``;
- ``D_S`` the student's discriminator, by default the teacher's D (``d_student='teacher'``: the
  pruned checkpoint carries the teacher's D in both released codes), or ``'fresh'`` / ``'pruned'``;
- ``P`` frozen BiSeNet face parser (``mask='face'``), ``LPIPS`` or ``VGG`` frozen feature nets.

One iteration::

    Gmain   softplus(-D_S(G_S(z))) + λ_L1 · L1 + λ_P · P          (λ_L1 = λ_P = 3)
    Greg    path length on G_S (every 4)
    Dmain   logistic on D_S
    Dreg    R1 (γ/2) on D_S (every 16)

- ``L1``: ``kd_l1_mode='Output_Only'``: ``mean|M⊙G_T − M⊙G_S|``; ``'Intermediate'``:
  ``Σ_r mean|G_T,img{r} − G_S,img{r}|`` over every partial ToRGB image (unmasked, as released).
- ``M``: ``mask='face'``: BiSeNet on the teacher image (parsed at 512, labels > 0 and ≠ 16,
  bilinear back to R and > 0.5, no gradient; ``Batch_Img_Parsing``); ``'none'``: all ones.
- ``P``: ``kd_percept_mode='LPIPS'``: ``mean LPIPS_vgg v0.1(M⊙G_S, M⊙G_T)``; ``'VGG'``: CAGC's
  ``L1(relu1_2) + 1e5·Σ Gram MSE`` (:func:`gancomp_jax.losses.kd.vgg_perceptual`).
  Images larger than ``kd_image_size`` (256) are first resized to it: ``kd_resize='bilinear'``
  (default, as CAGC's ``train.py``: ``F.interpolate(..., mode='bilinear', align_corners=False)``,
  no antialiasing) or ``'avg_pool'`` (``R/256 × R/256`` mean pooling, the NICKEL & DiME port's
  ``kd_img_downsample``). The two agree at 512 px and differ from 1024 px up (bilinear then
  reads 2 of every 4 rows and columns).
- Teacher noise: ``noise='independent'`` (released: both generators draw their own per-layer
  noise) or ``'shared'``. Teacher and student share z, labels, the mixing z and the crossover.

Differences from the released code, and why:

- ``Intermediate`` mode: CAGC's ``train.py`` then feeds LPIPS the masked student against the
  *unmasked* teacher (a shadowed variable) and the NICKEL & DiME port crashes (the masked
  images are only built in ``Output_Only``). We mask both images of the perceptual term in
  both modes (what ``Output_Only`` does).
- Downsampling for the perceptual term (``kd_resize='avg_pool'`` only): the NICKEL port pools
  ``gen_img`` but then uses the unpooled masked images (so it has no effect); we pool the images
  actually compared. Irrelevant at 256 px.
- The mask is computed with float32 BiSeNet in JAX (``gancomp_jax.nets.bisenet.face_mask``);
  PyTorch's ``F.interpolate(scale_factor=...)`` with ``recompute_scale_factor`` and our
  size-based bilinear resize agree for power-of-two sizes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from gancomp_jax.losses import logistic_d_loss, r1_penalty
from gancomp_jax.losses.kd import apply_mask, intermediate_rgb_l1, masked_l1, vgg_perceptual
from gancomp_jax.methods._distil_common import FunctionModule, path_length_phase_loss, stored_config
from gancomp_jax.methods.base import BuildEnv, Context, Method, NetworkSpec, OptimizerSpec, Phase
from gancomp_jax.nets.preprocess import resize_bilinear

L1_MODES = ("Output_Only", "Intermediate", "none")
PERCEPT_MODES = ("LPIPS", "VGG", "none")
MASKS = ("face", "none")
D_STUDENT_CHOICES = ("teacher", "fresh", "pruned")
RESIZE_CHOICES = ("bilinear", "avg_pool")


def default_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.name = "cagc"
    m.teacher = ""                  # teacher model (dir / run dir / .pkl / .pt) with G_ema and D
    m.teacher_g_name = "G_ema"
    m.teacher_d_name = "D"
    m.student = ""                  # pruned student with G (and D for d_student='pruned')
    m.student_g_name = "G"
    m.d_student = "teacher"         # teacher (released) | fresh | pruned
    m.kd_l1_mode = "Output_Only"    # Output_Only | Intermediate | none
    m.kd_l1_lambda = 3.0
    m.kd_percept_mode = "LPIPS"     # LPIPS | VGG | none
    m.kd_percept_lambda = 3.0
    m.kd_image_size = 256           # images above this are resized to it before the perceptual term
    m.kd_resize = "bilinear"        # bilinear (released CAGC train.py) | avg_pool
    m.mask = "face"                 # face (BiSeNet on the teacher image) | none
    m.face_parser = ""              # face-parsing.PyTorch 79999_iter.pth (or a converted dir)
    m.parse_size = 512
    m.lpips_vgg = ""                # torchvision vgg16-397923af.pth (or a converted lpips_vgg dir)
    m.lpips_lin = ""                # lpips weights/v0.1/vgg.pth ('' : the installed lpips package's)
    m.vgg16 = ""                    # VGG mode: torchvision vgg16-397923af.pth (or a converted vgg16 dir)
    m.noise = "independent"         # teacher noise: independent (released) | shared
    return m


def get(config, key, default):
    v = config.get(key, None)
    return default if v is None else v


def resolve(config) -> None:
    m = config.method
    for key, choices in (("kd_l1_mode", L1_MODES), ("kd_percept_mode", PERCEPT_MODES), ("mask", MASKS),
                         ("d_student", D_STUDENT_CHOICES), ("kd_resize", RESIZE_CHOICES)):
        if m[key] not in choices:
            raise ValueError(f"config.method.{key} must be one of {choices}, got {m[key]!r}")
    if m.mask == "face" and not m.face_parser:
        raise ValueError("config.method.face_parser is not set (BiSeNet 79999_iter.pth); use "
                         "config.method.mask='none' for unmasked distillation")
    if m.kd_percept_mode == "LPIPS" and not m.lpips_vgg:
        raise ValueError("config.method.lpips_vgg is not set (torchvision vgg16-397923af.pth for LPIPS)")
    if m.kd_percept_mode == "VGG" and not m.vgg16:
        raise ValueError("config.method.vgg16 is not set (torchvision vgg16-397923af.pth)")


def _frozen_module(name: str, source: str, params: Any, apply_fn: Callable) -> NetworkSpec:
    return NetworkSpec("module", source=source, trainable=False, module=FunctionModule(apply_fn, name),
                       init=(lambda p: (lambda key: {"params": p}))(params))


def feature_dtype(env) -> Any:
    """bfloat16 when the run uses mixed precision (``config.model.mixed_precision`` gives the
    preset ``num_mixed_res > 0``), else float32: the compute dtype of frozen feature networks
    (their parameters stay float32, their outputs are float32)."""
    g = getattr(getattr(env, "model", None), "generator", None)
    return jnp.bfloat16 if g is not None and int(g.num_mixed_res) > 0 else jnp.float32


def feature_networks(m, dtype: Any = jnp.float32) -> dict[str, NetworkSpec]:
    """The frozen parser / LPIPS / VGG roles the KD terms need (LPIPS / VGG computed in
    ``dtype``; the face parser's mask always in float32)."""
    from gancomp_jax import nets

    out = {}
    if m.mask == "face":
        from gancomp_jax.nets.bisenet import face_mask

        params = nets.load("bisenet", m.face_parser).params
        ps = int(m.parse_size)
        out["P"] = _frozen_module("bisenet", m.face_parser, params, lambda p, img: face_mask(
            p, img, resize_back="bilinear", quantize=False, parse_size=ps))
    if m.kd_percept_mode == "LPIPS":
        net = nets.load("lpips_vgg", m.lpips_vgg, lin_path=m.lpips_lin or None, dtype=dtype)
        out["LPIPS"] = _frozen_module("lpips_vgg", m.lpips_vgg, net.params, net.apply)
    elif m.kd_percept_mode == "VGG":
        from gancomp_jax.nets.vgg_lpips import vgg16_apply

        net = nets.load("vgg16", m.vgg16, preprocess="none", classifier=False)
        out["VGG"] = _frozen_module("vgg16", m.vgg16, net.params, lambda p, x: vgg16_apply(
            p, (x + 1.0) / 2.0, preprocess="none", classifier=False, dtype=dtype))
    return out


def resize_to(img: jnp.ndarray, size: int, mode: str = "bilinear") -> jnp.ndarray:
    """``[N, R, R, C]`` → ``[N, size, size, C]`` when ``R > size`` (else unchanged): ``'bilinear'``
    as torch ``F.interpolate(mode='bilinear', align_corners=False)`` (released CAGC), or
    ``'avg_pool'`` (:func:`pool_to`)."""
    if img.shape[1] <= size:
        return img
    if mode == "avg_pool":
        return pool_to(img, size)
    return resize_bilinear(img, (size, size), align_corners=False)


def pool_to(img: jnp.ndarray, size: int) -> jnp.ndarray:
    """Average-pool ``[N, R, R, C]`` by ``R // size`` when ``R > size`` (CAGC's LPIPS memory saving)."""
    r = img.shape[1]
    if r <= size:
        return img
    k = r // size
    n, h, w, c = img.shape
    return img.reshape(n, h // k, k, w // k, k, c).mean(axis=(2, 4))


def make_kd_terms(m):
    """``kd(ctx, s: Generated, t: Generated) -> (weighted KD loss, metrics)`` for CAGC's terms."""
    l1_mode, percept = m.kd_l1_mode, m.kd_percept_mode
    l1_w, p_w, size = float(m.kd_l1_lambda), float(m.kd_percept_lambda), int(m.kd_image_size)
    resize = str(m.get("kd_resize", "bilinear"))
    use_mask = m.mask == "face"

    def kd(ctx: Context, s, t):
        t_img = jax.lax.stop_gradient(t.img)
        mask = jax.lax.stop_gradient(ctx.apply("P", t_img)) if use_mask else None
        metrics = {}
        loss = jnp.float32(0.0)
        if l1_mode == "Output_Only":
            l1 = masked_l1(t_img, s.img, mask)
        elif l1_mode == "Intermediate":
            l1 = intermediate_rgb_l1(jax.lax.stop_gradient(t.features), s.features)
        else:
            l1 = None
        if l1 is not None:
            metrics["G_S/kd_l1"] = l1
            loss = loss + l1_w * l1
        if percept != "none":
            s_m = resize_to(apply_mask(s.img, mask), size, resize)
            t_m = resize_to(apply_mask(t_img, mask), size, resize)
            if percept == "LPIPS":
                p = jnp.mean(ctx.apply("LPIPS", s_m, t_m))
                metrics["G_S/kd_lpips"] = p
            else:
                feats = ctx.apply("VGG", jnp.concatenate([s_m, t_m], axis=0))
                n = s_m.shape[0]
                p, content, style = vgg_perceptual({k: v[:n] for k, v in feats.items()},
                                                   {k: jax.lax.stop_gradient(v[n:]) for k, v in feats.items()})
                metrics.update({"G_S/kd_vgg": p, "G_S/kd_vgg_content": content, "G_S/kd_vgg_style": style})
            loss = loss + p_w * p
        return loss, metrics
    return kd


def base_networks(m, dtype: Any = jnp.float32) -> dict[str, NetworkSpec]:
    """G_T, G_S, D_S (+ parser / LPIPS / VGG) of a CAGC-style distillation."""
    stored_config(m.teacher, m.teacher_g_name, "config.method.teacher")
    d_t_cfg = stored_config(m.teacher, m.teacher_d_name, "config.method.teacher")
    stored_config(m.student, m.student_g_name, "config.method.student")
    networks = {
        "G_T": NetworkSpec("generator", None, source=m.teacher, source_name=m.teacher_g_name, trainable=False),
        "G_S": NetworkSpec("generator", None, source=m.student, source_name=m.student_g_name, ema=True, export="G"),
    }
    if m.d_student == "teacher":
        networks["D_S"] = NetworkSpec("discriminator", None, source=m.teacher, source_name=m.teacher_d_name,
                                      export="D")
    elif m.d_student == "fresh":
        networks["D_S"] = NetworkSpec("discriminator", d_t_cfg, source="init", export="D")
    else:
        stored_config(m.student, "D", "config.method.student")
        networks["D_S"] = NetworkSpec("discriminator", None, source=m.student, source_name="D", export="D")
    networks.update(feature_networks(m, dtype))
    return networks


def assemble(config, env: BuildEnv, networks, g_main, *, d_extra=None, d_extra_roles=(), extra_state=None,
             extra_optimizers=None, metadata=None) -> Method:
    """The standard four phases around a distillation ``g_main``.

    ``d_extra(ctx) -> (loss, metrics)`` is added to ``Dmain`` (which then also updates
    ``d_extra_roles``, e.g. ITGC's energy network with its own optimiser from ``extra_optimizers``).
    """
    m = config.method
    c_dim = stored_config(m.teacher, m.teacher_g_name, "config.method.teacher").c_dim
    B = env.batch_size
    r1_gamma = float(get(config, "r1_gamma", 10.0))
    pl_weight = float(get(config, "pl_weight", 2.0))
    pl_batch = max(1, B // int(get(config, "pl_batch_shrink", 2)))

    def d_main(ctx: Context):
        s = ctx.generate("G_S")
        gen_logits = ctx.discriminate("D_S", jax.lax.stop_gradient(s.img), s.c)
        real_logits = ctx.discriminate("D_S", ctx.reals, ctx.real_labels(c_dim))
        g, r = logistic_d_loss(gen_logits, real_logits)
        loss = jnp.mean(g) + jnp.mean(r)
        metrics = {"D_S/loss_fake": jnp.mean(g), "D_S/loss_real": jnp.mean(r),
                   "D_S/scores_fake": jnp.mean(gen_logits), "D_S/scores_real": jnp.mean(real_logits)}
        if d_extra is not None:
            extra_loss, extra_metrics = d_extra(ctx)
            loss = loss + extra_loss
            metrics.update(extra_metrics)
        return loss, metrics

    def d_reg(ctx: Context):
        c = ctx.real_labels(c_dim)
        pen, _ = r1_penalty(lambda x: ctx.discriminate("D_S", x, c), ctx.reals)
        return jnp.mean(pen * (r1_gamma / 2)), {"D_S/r1_penalty": jnp.mean(pen)}

    phases = [Phase("Gmain", "G_S", g_main, loss_metric="G_S/loss", key_id=0)]
    pl_interval = int(get(config, "pl_interval", 4))
    if pl_weight > 0 and pl_interval > 0:
        phases.append(Phase("Greg", "G_S", path_length_phase_loss("G_S", pl_weight, pl_batch,
                                                                  float(get(config, "pl_decay", 0.01))),
                            interval=pl_interval, loss_metric="G_S/reg_loss", key_id=1))
    phases.append(Phase("Dmain", ("D_S",) + tuple(d_extra_roles), d_main, loss_metric="D/loss", key_id=2))
    r1_interval = int(get(config, "r1_interval", 16))
    if r1_gamma > 0 and r1_interval > 0:
        phases.append(Phase("Dreg", "D_S", d_reg, interval=r1_interval, loss_metric="D/reg_loss", key_id=3))
    adam = OptimizerSpec(lr=float(get(config, "lr", 0.002)),
                         betas=tuple(float(b) for b in get(config, "betas", (0.0, 0.99))),
                         eps=float(get(config, "adam_eps", 1e-8)))
    optimizers = {r: adam for r, s in networks.items() if s.trainable}
    optimizers.update(extra_optimizers or {})
    return Method(
        networks=networks,
        optimizers=optimizers,
        phases=phases,
        extra_state={"pl_mean": jnp.zeros((), jnp.float32), **(extra_state or {})},
        style_mixing_prob=float(get(config, "style_mixing_prob", 0.9)),
        noise=m.noise,
        ema_kimg=float(get(config, "ema_kimg", 5.0)),   # CAGC: 0.5^(32/10000) per iteration at batch 16
        ema_rampup=float(get(config, "ema_rampup", 0.0)) or None,
        sample_network="G_ema",
        metadata={"teacher": m.teacher, "student": m.student, "kd_l1_mode": m.kd_l1_mode,
                  "kd_percept_mode": m.kd_percept_mode, "mask": m.mask, **(metadata or {})},
    )


def g_adversarial(ctx: Context, s):
    logits = ctx.discriminate("D_S", s.img, s.c)
    adv = jnp.mean(jax.nn.softplus(-logits))
    return adv, {"G_S/adversarial": adv, "G_S/scores_fake": jnp.mean(logits)}


def build(config, env: BuildEnv) -> Method:
    resolve(config)
    m = config.method
    networks = base_networks(m, feature_dtype(env))
    kd = make_kd_terms(m)

    def g_main(ctx: Context):
        s, t = ctx.generate("G_S"), ctx.generate("G_T")
        adv, metrics = g_adversarial(ctx, s)
        kd_loss, kd_metrics = kd(ctx, s, t)
        metrics.update(kd_metrics)
        return adv + kd_loss, metrics

    return assemble(config, env, networks, g_main, metadata={"method": "cagc"})
