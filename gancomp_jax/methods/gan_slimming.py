"""GAN Slimming (Wang et al., ECCV 2020) for StyleGAN2, as released in the NICKEL & DiME baselines.
``config.method.name = 'gan_slimming'``.

Released code: ``SangyeopYeo/NICKEL_AND_DIME`` ``training/loss_GS.py`` + ``networks_GS.py``
(``main_utils_GS.py`` asserts ``sparse_loss XOR pruning_ratio != 0``), the same port in
``LAIT-CVLab/Singular-Value-Scaling`` (``train_gs.py``, ``prune_gs.py``; scripts: η = 1e-5,
KD λ = 3, ratio 0.7, 400 samples in batches of 8). Three stages, chained by
``experiments/gan_slimming.py`` (job ``gan_slimming``):

1. **Sparsity training** (``sparse_loss=True``): the full-width student starts as the teacher's
   ``G_ema`` (``student`` = the teacher) and minimises::

       softplus(-D_S(G_S(z))) + η · Σ_layers Σ_c |mean_batch s_c| + λ_P · P

   where ``s = A(w)`` are the modulation scalars of every modulated conv (``conv0``, ``conv1``)
   and every ToRGB — ToRGB's including its weight gain ``1/√(C_in)``, as NVlabs' ``ToRGBLayer``
   returns them — each from the (style-mixed) ``w`` that layer reads; ``P`` is CAGC's perceptual
   term *unmasked* (:mod:`gancomp_jax.methods.cagc`, ``mask='none'``), VGG content + Gram
   (released default ``kd_percept_mode='VGG'``, λ 3). No released GAN Slimming for StyleGAN2
   (the SVS repository's, NICKEL & DiME's ``loss_GS.py``, CAGC's sparsity stage) has a pixel L1
   term, so ``kd_l1_mode`` defaults to ``'none'`` here (CAGC's ``'Output_Only'``, λ 3, can be
   switched on; the ``digits`` experiment does, in place of the VGG term it cannot download).
2. **Pruning** with criterion ``gan_slimming`` (mean |s_c| over 400 samples; the prune job).
3. **Fine-tuning** the pruned student with the same terms and ``sparse_loss=False``.

D: the student's D starts from the teacher's (released: both are loaded from the same pickle).

Where we differ from the released code, and why:

* The NICKEL & DiME pruning step crashes, and CAGC never shipped one (its issue #17); we prune
  with our prune job's ``gan_slimming`` criterion, which scores each channel by mean |s_c| of
  the style of the layer that *reads* it (its consumer). That is a fix, not what the SVS
  release's ``get_gan_slimming_scores`` computes: it concatenates every layer's style vector
  into one and slices it by the layer widths in order, so from the second layer on each layer
  is scored with (part of) another layer's styles. CAGC's own ``l1-style`` metric scores
  |mean_batch s_c|; ours is mean_batch |s_c| (a style that changes sign across samples is not
  cancelled out).
* ``styles.squeeze()`` in the released sparsity term would sum over the wrong axis with a
  per-GPU batch of 1; we always average over the batch axis.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import ml_collections

from gancomp_jax.methods import cagc
from gancomp_jax.methods.base import BuildEnv, Context, Method


def default_config() -> ml_collections.ConfigDict:
    m = cagc.default_config()
    m.name = "gan_slimming"
    m.mask = "none"                 # GS distils unmasked images
    m.kd_l1_mode = "none"           # no released GS has CAGC's pixel L1 term ('Output_Only' to add it)
    m.kd_percept_mode = "VGG"       # released default (loss_GS.py)
    m.sparse_loss = True            # stage 1: sparsity training; False: fine-tuning a pruned student
    m.sparsity_eta = 1e-5           # η (SVS repository's GS scripts)
    return m


def style_layers(params_synthesis) -> list[tuple[str, str, int]]:
    """``[(block, layer, ws index)]`` of every layer with an affine, in NVlabs order
    (per block ``conv0``, ``conv1``, ``torgb``; a block's ToRGB reads the w after its convs and
    the next block starts one w earlier)."""
    blocks = sorted((k for k in params_synthesis if k.startswith("b")), key=lambda k: int(k[1:]))
    out, w_idx = [], 0
    for blk in blocks:
        p = params_synthesis[blk]
        convs = [name for name in ("conv0", "conv1") if name in p]
        for j, name in enumerate(convs):
            out.append((blk, name, w_idx + j))
        if "torgb" in p:
            out.append((blk, "torgb", w_idx + len(convs)))
        w_idx += len(convs)
    return out


def modulation_styles(params, ws: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """``{'b{r}.{layer}': s [N, C_in]}`` for generator ``params`` and ``ws [N, num_ws, w_dim]``:
    ``s = w @ (A / √w_dim) + b``, times ``1/√(C_in · k²)`` for ToRGB layers."""
    syn = params["synthesis"]
    w_dim = ws.shape[-1]
    out = {}
    for blk, layer, idx in style_layers(syn):
        aff = syn[blk][layer]["affine"]
        s = ws[:, idx].astype(jnp.float32) @ (aff["weight"] / math.sqrt(w_dim)) + aff["bias"]
        if layer == "torgb":
            kh, kw, c_in, _ = syn[blk][layer]["weight"].shape
            s = s / math.sqrt(c_in * kh * kw)
        out[f"{blk}.{layer}"] = s
    return out


def sparsity_term(styles: dict[str, jnp.ndarray]) -> jnp.ndarray:
    """``Σ_layers Σ_c |mean_batch s_c|`` (unweighted)."""
    return sum(jnp.sum(jnp.abs(jnp.mean(s, axis=0))) for s in styles.values())


def resolve(config) -> None:
    m = config.method
    if float(m.sparsity_eta) < 0:
        raise ValueError(f"config.method.sparsity_eta must be >= 0, got {m.sparsity_eta}")
    cagc.resolve(config)


def build(config, env: BuildEnv) -> Method:
    resolve(config)
    m = config.method
    networks = cagc.base_networks(m, cagc.feature_dtype(env))
    kd = cagc.make_kd_terms(m)
    sparse = bool(m.sparse_loss)
    eta = float(m.sparsity_eta)

    def g_main(ctx: Context):
        s, t = ctx.generate("G_S"), ctx.generate("G_T")
        adv, metrics = cagc.g_adversarial(ctx, s)
        loss = adv
        if sparse:
            sp = sparsity_term(modulation_styles(ctx.variables("G_S")["params"], s.ws))
            metrics["G_S/sparse"] = sp
            loss = loss + eta * sp
        kd_loss, kd_metrics = kd(ctx, s, t)
        metrics.update(kd_metrics)
        return loss + kd_loss, metrics

    return cagc.assemble(config, env, networks, g_main,
                         metadata={"method": "gan_slimming", "sparse_loss": sparse, "sparsity_eta": eta})
