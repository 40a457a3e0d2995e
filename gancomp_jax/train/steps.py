"""Jitted training steps: G main, G regularisation (path length), D main, D regularisation (R1), EMA.

One NVlabs iteration is::

    G main  →  G reg (every pl_interval)  →  D main  →  D reg (every r1_interval)  →  G EMA

Each phase draws its own latents from ``fold_in(fold_in(key, step), phase)``. Loss terms are
looked up by name in ``G_TERMS`` / ``D_TERMS`` and weighted from the config, so a compression
method is this trainer with other (or extra) terms.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from gancomp_jax.losses import logistic_d_loss, nonsaturating_g_loss, path_length_penalty, r1_penalty
from gancomp_jax.models import Discriminator, Generator, mix_styles, sample_mixing_cutoff
from gancomp_jax.train.state import TrainState

PHASE_G_MAIN, PHASE_G_REG, PHASE_D_MAIN, PHASE_D_REG = range(4)


@dataclasses.dataclass(frozen=True)
class Hyper:
    """Static training hyper-parameters the steps close over."""

    batch_size: int
    style_mixing_prob: float = 0.9
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    g_terms: tuple[tuple[str, float], ...] = (("nonsaturating", 1.0),)
    d_terms: tuple[tuple[str, float], ...] = (("logistic", 1.0),)


class GeneratorPass:
    """Latents → (mixed) ws → images → D logits for one phase, computed lazily on first use.

    Loss terms read the attributes they need; the generator's ``w_avg`` update (NVlabs updates
    it on every training-mode mapping call) is available as ``buffers``.
    """

    def __init__(self, G: Generator, D: Discriminator, g_vars, d_vars, key, batch_size: int,
                 hyper: Hyper, z_sharding=None):
        self.G, self.D, self.g_vars, self.d_vars, self.hyper = G, D, g_vars, d_vars, hyper
        kz, kc, kmix_z, kmix, self.noise_key = jax.random.split(key, 5)
        cfg = G.config
        z = jax.random.normal(kz, (batch_size, cfg.z_dim), jnp.float32)
        self.z = z if z_sharding is None else jax.lax.with_sharding_constraint(z, z_sharding)
        self.c = sample_labels(kc, batch_size, cfg.c_dim)
        self._mix_keys = (kmix_z, kmix)

    @functools.cached_property
    def _mapped(self):
        ws, upd = self.G.apply(self.g_vars, self.z, self.c, update_emas=True, method=Generator.map,
                               mutable=["buffers"])
        if self.hyper.style_mixing_prob > 0:
            kz, kcut = self._mix_keys
            z2 = jax.random.normal(kz, self.z.shape, jnp.float32)
            ws2 = self.G.apply(self.g_vars, z2, self.c, method=Generator.map)
            cutoff = sample_mixing_cutoff(kcut, ws.shape[1], self.hyper.style_mixing_prob)
            ws = mix_styles(ws, ws2, cutoff)
        return ws, upd["buffers"]

    @property
    def ws(self) -> jnp.ndarray:
        return self._mapped[0]

    @property
    def buffers(self):
        return self._mapped[1]

    def synthesize(self, ws):
        return self.G.apply(self.g_vars, ws, "random", method=Generator.synthesize,
                            rngs={"noise": self.noise_key})

    @functools.cached_property
    def img(self) -> jnp.ndarray:
        return self.synthesize(self.ws)

    @functools.cached_property
    def logits(self) -> jnp.ndarray:
        return self.D.apply(self.d_vars, self.img, self.c)


def sample_labels(key, batch_size: int, c_dim: int):
    """One-hot labels drawn uniformly (None for unconditional models)."""
    if c_dim == 0:
        return None
    return jax.nn.one_hot(jax.random.randint(key, (batch_size,), 0, c_dim), c_dim)


def one_hot_labels(labels, c_dim: int):
    if c_dim == 0:
        return None
    return jax.nn.one_hot(labels, c_dim)


# ---------------------------------------------------------------------------------------------
# Loss terms: name -> fn(pass) -> scalar. Methods register more terms here.
G_TERMS: dict[str, Callable[[GeneratorPass], jnp.ndarray]] = {
    "nonsaturating": lambda p: jnp.mean(nonsaturating_g_loss(p.logits)),
}


def _logistic_d(gen_logits, real_logits):
    gen, real = logistic_d_loss(gen_logits, real_logits)
    return jnp.mean(gen) + jnp.mean(real)


D_TERMS: dict[str, Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]] = {
    "logistic": _logistic_d,
}


def check_terms(hyper: Hyper) -> None:
    for name, _ in hyper.g_terms:
        if name not in G_TERMS:
            raise ValueError(f"unknown generator loss term {name!r}; available: {sorted(G_TERMS)}")
    for name, _ in hyper.d_terms:
        if name not in D_TERMS:
            raise ValueError(f"unknown discriminator loss term {name!r}; available: {sorted(D_TERMS)}")


def _phase_key(state: TrainState, phase: int) -> jax.Array:
    key = jax.random.wrap_key_data(state.key)
    return jax.random.fold_in(jax.random.fold_in(key, state.step), phase)


@dataclasses.dataclass
class Steps:
    """The five jitted step functions (all take and return the whole state)."""

    g_main: Callable
    g_reg: Callable
    d_main: Callable
    d_reg: Callable
    ema: Callable


def build_steps(G: Generator, D: Discriminator, g_tx: optax.GradientTransformation,
                d_tx: optax.GradientTransformation, hyper: Hyper, state_sharding=None,
                batch_sharding=None) -> Steps:
    """Builds the jitted steps. ``state_sharding`` / ``batch_sharding`` are NamedShardings (or
    None to let JAX place everything on the default device)."""
    check_terms(hyper)
    B = hyper.batch_size

    def g_main(state: TrainState):
        key = _phase_key(state, PHASE_G_MAIN)

        def loss_fn(params):
            gp = GeneratorPass(G, D, {"params": params, "buffers": state.g["buffers"]}, state.d, key, B,
                               hyper, batch_sharding)
            terms = {name: G_TERMS[name](gp) for name, _ in hyper.g_terms}
            loss = sum(w * terms[name] for name, w in hyper.g_terms)
            metrics = {f"G/{k}": v for k, v in terms.items()}
            metrics["G/scores_fake"] = jnp.mean(gp.logits)
            return loss, (metrics, gp.buffers)

        (loss, (metrics, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g["params"])
        updates, g_opt = g_tx.update(grads, state.g_opt, state.g["params"])
        params = optax.apply_updates(state.g["params"], updates)
        metrics["G/loss"] = loss
        return state.replace(g={"params": params, "buffers": buffers}, g_opt=g_opt), metrics

    def g_reg(state: TrainState):
        key = _phase_key(state, PHASE_G_REG)
        kpass, kpl = jax.random.split(key)
        pl_batch = B // hyper.pl_batch_shrink

        def loss_fn(params):
            gp = GeneratorPass(G, D, {"params": params, "buffers": state.g["buffers"]}, state.d, kpass,
                               pl_batch, hyper, batch_sharding)
            penalty, lengths, pl_mean = path_length_penalty(gp.synthesize, gp.ws, kpl, state.pl_mean,
                                                            hyper.pl_decay)
            loss = jnp.mean(penalty * hyper.pl_weight) * hyper.pl_interval
            return loss, ({"G/pl_penalty": jnp.mean(penalty), "G/pl_length": jnp.mean(lengths)},
                          gp.buffers, pl_mean)

        (loss, (metrics, buffers, pl_mean)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g["params"])
        updates, g_opt = g_tx.update(grads, state.g_opt, state.g["params"])
        params = optax.apply_updates(state.g["params"], updates)
        metrics["G/reg_loss"] = loss
        return state.replace(g={"params": params, "buffers": buffers}, g_opt=g_opt, pl_mean=pl_mean), metrics

    def d_main(state: TrainState, batch):
        key = _phase_key(state, PHASE_D_MAIN)
        gp = GeneratorPass(G, D, state.g, state.d, key, B, hyper, batch_sharding)
        gen_img = jax.lax.stop_gradient(gp.img)
        real_c = one_hot_labels(batch["label"], G.config.c_dim)

        def loss_fn(params):
            gen_logits = D.apply({"params": params}, gen_img, gp.c)
            real_logits = D.apply({"params": params}, batch["image"], real_c)
            terms = {name: D_TERMS[name](gen_logits, real_logits) for name, _ in hyper.d_terms}
            loss = sum(w * terms[name] for name, w in hyper.d_terms)
            metrics = {f"D/{k}": v for k, v in terms.items()}
            metrics.update({"D/scores_fake": jnp.mean(gen_logits), "D/scores_real": jnp.mean(real_logits)})
            return loss, metrics

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d["params"])
        updates, d_opt = d_tx.update(grads, state.d_opt, state.d["params"])
        params = optax.apply_updates(state.d["params"], updates)
        metrics["D/loss"] = loss
        g = {"params": state.g["params"], "buffers": gp.buffers}
        return state.replace(d={"params": params}, d_opt=d_opt, g=g), metrics

    def d_reg(state: TrainState, batch):
        real_c = one_hot_labels(batch["label"], G.config.c_dim)

        def loss_fn(params):
            penalty, _ = r1_penalty(lambda x: D.apply({"params": params}, x, real_c), batch["image"])
            loss = jnp.mean(penalty * (hyper.r1_gamma / 2)) * hyper.r1_interval
            return loss, {"D/r1_penalty": jnp.mean(penalty)}

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d["params"])
        updates, d_opt = d_tx.update(grads, state.d_opt, state.d["params"])
        params = optax.apply_updates(state.d["params"], updates)
        metrics["D/reg_loss"] = loss
        return state.replace(d={"params": params}, d_opt=d_opt), metrics

    def ema(state: TrainState):
        cur_nimg = state.step.astype(jnp.float32) * B
        ema_nimg = jnp.float32(hyper.ema_kimg * 1000)
        if hyper.ema_rampup is not None:
            ema_nimg = jnp.minimum(ema_nimg, cur_nimg * hyper.ema_rampup)
        beta = jnp.power(0.5, B / jnp.maximum(ema_nimg, 1e-8))
        params = jax.tree.map(lambda p, e: p + beta * (e - p), state.g["params"], state.g_ema["params"])
        g_ema = {"params": params, "buffers": state.g["buffers"]}
        return state.replace(g_ema=g_ema, step=state.step + 1), {"G/ema_beta": beta}

    def jit(fn, with_batch: bool):
        if state_sharding is None:
            return jax.jit(fn, donate_argnums=0)
        in_sh = (state_sharding, batch_sharding) if with_batch else (state_sharding,)
        return jax.jit(fn, in_shardings=in_sh, out_shardings=(state_sharding, None), donate_argnums=0)

    return Steps(g_main=jit(g_main, False), g_reg=jit(g_reg, False), d_main=jit(d_main, True),
                 d_reg=jit(d_reg, True), ema=jit(ema, False))


def run_iteration(steps: Steps, state: TrainState, batch, step: int, hyper: Hyper
                  ) -> tuple[TrainState, dict[str, Any]]:
    """One NVlabs iteration (phases in order, lazy regularisation by ``step``)."""
    metrics: dict[str, Any] = {}
    state, m = steps.g_main(state)
    metrics.update(m)
    if hyper.pl_weight > 0 and hyper.pl_interval and step % hyper.pl_interval == 0:
        state, m = steps.g_reg(state)
        metrics.update(m)
    state, m = steps.d_main(state, batch)
    metrics.update(m)
    if hyper.r1_gamma > 0 and hyper.r1_interval and step % hyper.r1_interval == 0:
        state, m = steps.d_reg(state, batch)
        metrics.update(m)
    state, m = steps.ema(state)
    metrics.update(m)
    return state, metrics
