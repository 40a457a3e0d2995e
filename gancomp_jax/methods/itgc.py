"""ITGC (Information-Theoretic GAN Compression with a variational energy-based model, NeurIPS
2022): CAGC's distillation plus a variational energy-based mutual-information term.
``config.method.name = 'itgc'``.

Released baseline: ``SangyeopYeo/NICKEL_AND_DIME`` (``training/loss_CAGC_with_VEM.py``,
``training/networks_CAGC_with_VEM.py``, ``train_CAGC_with_VEM.py``). Networks are CAGC's
(:mod:`gancomp_jax.methods.cagc`) plus ``EBM``, the spectral-norm ResNet energy network on
(teacher, student) image pairs (:mod:`gancomp_jax.models.energy`: ``ResnetEBM(input_nc=64,
n_blocks=7)``), trained by its own Adam (lr 1e-4, betas (0, 0.999)). Its spectral-norm power
iteration vectors are extra train state (``ebm_u.<layer>``), updated at every forward pass as
in the released code. One iteration::

    Gmain   CAGC's G loss + λ_MI · mean(E(T, S) − E(T̃, S))               (λ_MI = 0.05)
    Greg    path length on G_S
    Dmain   D_S logistic  +  EBM: mean E(T,S) − mean E(T̃,S) + λ_l2·mean(E(T,S)² + E(T̃,S)²)
    Dreg    R1 on D_S

with ``T = G_T(z)``, ``S = G_S(z)`` (stop-gradient in Dmain) and ``T̃`` the Langevin sample
(:func:`gancomp_jax.losses.ebm.langevin_sample`: 10 steps of size 50 and noise σ 0.005, from S).

Differences from the released code, and why:

- *Stale gradients (bug)*: the released loop calls ``ebm_opt.step()`` after every phase but
  zeroes the EBM's gradients only in the D phases. The EBM gradients that ``Dmain`` accumulates
  therefore stay in ``.grad`` and are applied again by the ``ebm_opt.step()`` of the next
  ``Gmain`` / ``Greg`` unless a ``Dreg`` (every 16 iterations) cleared them first. Here the EBM
  is updated once per iteration, in ``Dmain``, by the gradient of its own loss.
- *Misspelled key (bug)*: the released kwargs list (``main_utils_CAGC_with_VEM.py``) spells
  ``kd_VID_sigma_t`` as ``kd_VID_sigma_t_eta``, so a YAML without ``kd_VID_sigma_t`` makes
  ``args.kd_VID_sigma_t`` raise AttributeError (the key is never defaulted to None, so the
  0.005 default is unreachable); the run only works when the YAML names it. Here it is
  ``config.method.langevin_sigma`` (0.005).
- λ_MI: ``main_utils`` defaults it to 0.0 (the term off) and the loss signature to 0.05; no
  baseline YAML ships. We use 0.05 (``mi_lambda``), likewise ``l2_lambda`` = 0.05.
- The EBM's loss rides in ``Dmain`` (the trainer steps D_S's and the EBM's optimisers with
  their own settings); the released code runs it in the same D phase with its own backward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from gancomp_jax.losses.ebm import ebm_generator_term, ebm_loss, langevin_sample
from gancomp_jax.methods import cagc
from gancomp_jax.methods._distil_common import FunctionModule
from gancomp_jax.methods.base import BuildEnv, Context, Method, NetworkSpec, OptimizerSpec
from gancomp_jax.models.energy import block_widths, energy_apply, init_energy


def default_config() -> ml_collections.ConfigDict:
    m = cagc.default_config()
    m.name = "itgc"
    m.mi_lambda = 0.05              # kd_VID_MI_lambda
    m.l2_lambda = 0.05              # kd_VID_l2_lambda
    m.langevin_steps = 10           # kd_VID_langevin_steps
    m.langevin_step_size = 50.0     # kd_VID_step_size
    m.langevin_sigma = 0.005        # kd_VID_sigma_t
    m.ebm_channels = 64             # ResnetEBM input_nc (first width = input_nc // 2)
    m.ebm_blocks = 7                # ResnetEBM n_blocks (each halves the resolution)
    m.ebm_lr = 1e-4
    m.ebm_betas = (0.0, 0.999)
    m.ebm_sigma_grad = False        # released SN-GAN layers: σ is a constant for differentiation
    return m


def _u_key(layer: str) -> str:
    return "ebm_u." + layer.replace("/", ".")


def build(config, env: BuildEnv) -> Method:
    cagc.resolve(config)
    m = config.method
    from gancomp_jax.methods._distil_common import stored_config

    networks = cagc.base_networks(m, cagc.feature_dtype(env))
    R = stored_config(m.teacher, m.teacher_g_name, "config.method.teacher").img_resolution
    base, n_blocks = int(m.ebm_channels) // 2, int(m.ebm_blocks)
    if base < 1 or n_blocks < 0:
        raise ValueError(f"config.method.ebm_channels={m.ebm_channels} / ebm_blocks={m.ebm_blocks} are invalid")
    pooled = (R + 1) // 2
    if pooled < 2 ** n_blocks:
        raise ValueError(f"config.method.ebm_blocks={n_blocks}: the energy network's input ({pooled} px after the "
                         f"first pooling) is too small for {n_blocks} halvings")
    params0, u0 = init_energy(jax.random.key(0), base, n_blocks)
    sigma_grad = bool(m.ebm_sigma_grad)
    layers = sorted(u0)

    def ebm_apply(params, t, s, u):
        return energy_apply(params, u, t, s, sigma_grad=sigma_grad)

    networks["EBM"] = NetworkSpec(
        "module", source="init", module=FunctionModule(ebm_apply, "resnet_ebm"),
        init=lambda key: {"params": init_energy(key, base, n_blocks)[0]})
    extra_state = {_u_key(k): u0[k] for k in layers}
    kd = cagc.make_kd_terms(m)
    steps, step_size, sigma = int(m.langevin_steps), float(m.langevin_step_size), float(m.langevin_sigma)
    mi_w, l2_w = float(m.mi_lambda), float(m.l2_lambda)

    def energies(ctx: Context, t_img, s_img):
        u = {k: ctx.extra[_u_key(k)] for k in layers}
        energy = lambda t, s, u: ctx.apply("EBM", t, s, u)  # noqa: E731
        t_tilde, u = langevin_sample(energy, s_img, u, ctx.rng("langevin"), steps, step_size, sigma)
        e_pos, u = energy(t_img, s_img, u)
        e_neg, u = energy(t_tilde, s_img, u)
        for k in layers:
            ctx.set_extra(_u_key(k), u[k])
        return e_pos, e_neg

    def g_main(ctx: Context):
        s, t = ctx.generate("G_S"), ctx.generate("G_T")
        adv, metrics = cagc.g_adversarial(ctx, s)
        kd_loss, kd_metrics = kd(ctx, s, t)
        metrics.update(kd_metrics)
        e_pos, e_neg = energies(ctx, jax.lax.stop_gradient(t.img), s.img)
        mi = ebm_generator_term(e_pos, e_neg)
        metrics["G_S/kd_mi"] = mi
        return adv + kd_loss + mi_w * mi, metrics

    def d_extra(ctx: Context):
        s, t = ctx.generate("G_S"), ctx.generate("G_T")
        e_pos, e_neg = energies(ctx, jax.lax.stop_gradient(t.img), jax.lax.stop_gradient(s.img))
        loss = ebm_loss(e_pos, e_neg, l2_w)
        return loss, {"EBM/loss": loss, "EBM/energy_pos": jnp.mean(e_pos), "EBM/energy_neg": jnp.mean(e_neg)}

    return cagc.assemble(
        config, env, networks, g_main, d_extra=d_extra, d_extra_roles=("EBM",), extra_state=extra_state,
        extra_optimizers={"EBM": OptimizerSpec(lr=float(m.ebm_lr), betas=tuple(float(b) for b in m.ebm_betas))},
        metadata={"method": "itgc", "ebm_widths": block_widths(base, n_blocks)})
