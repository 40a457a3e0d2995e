"""Jitted training steps built from a method's phases, plus the EMA step.

One iteration runs every phase of the method whose ``step % interval == 0`` in order (for
StyleGAN2: G main → G reg → D main → D reg), then the EMA step, which also increments
``step``. Each phase is one jitted function ``(state, frozen, batch) -> (state, metrics)``:
frozen networks are an argument (not closure constants), the state is donated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from gancomp_jax.methods.base import Context, Method, Phase
from gancomp_jax.train.state import TrainState


# The jitted steps donate the train state: XLA reuses its buffers for the new state instead of
# holding both (False only to measure that: tools/bench.py --no_donate).
DONATE_STATE = True


def phase_key(state: TrainState, key_id: int) -> jax.Array:
    key = jax.random.wrap_key_data(state.key)
    return jax.random.fold_in(jax.random.fold_in(key, state.step), key_id)


@dataclasses.dataclass
class Steps:
    """``phases``: (phase, jitted fn) in run order; ``ema``: the jitted EMA/step-increment."""

    phases: list[tuple[Phase, Callable]]
    ema: Callable


def sanitize_gradients(grads):
    """NVlabs' ``misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5)`` on every leaf."""
    return jax.tree.map(lambda g: jnp.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5), grads)


def make_phase_fn(phase: Phase, key_id: int, method: Method, modules: Mapping[str, Any],
                  txs: Mapping[str, optax.GradientTransformation], batch_size: int, z_sharding=None,
                  nan_to_num: bool = False):
    """The un-jitted step of one phase: ``(state, frozen, batch) -> (state, metrics)``.

    ``nan_to_num``: sanitise the gradients (:func:`sanitize_gradients`) before the optimisers,
    as the NVlabs-based training loops do (``config.grad_nan_to_num``)."""
    interval = int(phase.interval)

    def step_fn(state: TrainState, frozen: Mapping[str, Any], batch):
        key = phase_key(state, key_id)

        def loss_fn(train_params):
            variables = {}
            for role, v in state.params.items():
                v = dict(v)
                if role in train_params:
                    v["params"] = train_params[role]
                variables[role] = v
            variables.update(frozen)
            ctx = Context(step=state.step, key=key, batch=batch, batch_size=batch_size, variables=variables,
                          modules=modules, specs=method.networks, extra=state.extra,
                          style_mixing_prob=method.style_mixing_prob, noise=method.noise, z_sharding=z_sharding,
                          style_mixing_rounds=method.style_mixing_rounds)
            loss, metrics = phase.loss(ctx)
            if interval > 1:
                loss = loss * interval
            return loss, (dict(metrics), ctx.new_buffers, ctx.new_extra)

        train_params = {r: state.params[r]["params"] for r in phase.updates}
        (loss, (metrics, buffers, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(train_params)
        if nan_to_num:
            grads = sanitize_gradients(grads)
        params, opt = dict(state.params), dict(state.opt)
        for role in phase.updates:
            updates, opt[role] = txs[role].update(grads[role], state.opt[role], train_params[role])
            params[role] = {**params[role], "params": optax.apply_updates(train_params[role], updates)}
        for role, b in buffers.items():
            params[role] = {**params[role], "buffers": b}
        metrics[phase.metric_name] = loss
        return state.replace(params=params, opt=opt, extra={**state.extra, **extra}), metrics

    return step_fn


def make_ema_fn(method: Method, batch_size: int):
    """EMA of the roles declared with ``ema`` (NVlabs: half-life ``ema_kimg``, optional ramp-up),
    then ``step + 1``. Metrics ``<role>/ema_beta``."""
    B = batch_size

    def ema_fn(state: TrainState):
        cur_nimg = state.step.astype(jnp.float32) * B
        ema_nimg = jnp.float32(method.ema_kimg * 1000)
        if method.ema_rampup is not None:
            ema_nimg = jnp.minimum(ema_nimg, cur_nimg * method.ema_rampup)
        beta = jnp.power(0.5, B / jnp.maximum(ema_nimg, 1e-8))
        if method.ema_decay is not None:  # BigGAN-PyTorch: fixed decay, a copy before the start iteration
            beta = jnp.where(state.step + 1 < int(method.ema_start_step), 0.0, jnp.float32(method.ema_decay))
        ema, metrics = {}, {}
        for role, e in state.ema.items():
            cur = state.params[role]
            new = {"params": jax.tree.map(lambda p, q: p + beta * (q - p), cur["params"], e["params"])}
            for k, v in cur.items():
                if k == "params":
                    continue
                new[k] = (jax.tree.map(lambda p, q: p + beta * (q - p), v, e[k]) if method.ema_buffers and k in e
                          else v)  # buffers follow the network unless averaged
            ema[role] = new
            metrics[f"{role}/ema_beta"] = beta
        return state.replace(ema=ema, step=state.step + 1), metrics

    return ema_fn


def build_steps(method: Method, modules: Mapping[str, Any], txs: Mapping[str, optax.GradientTransformation],
                batch_size: int, state_sharding=None, frozen_sharding=None, batch_sharding=None,
                nan_to_num: bool = False) -> Steps:
    """Jitted steps. Shardings are NamedSharding trees (None: JAX places everything);
    ``nan_to_num``: see :func:`make_phase_fn`."""
    def jit(fn, n_args):
        if state_sharding is None:
            return jax.jit(fn, donate_argnums=0 if DONATE_STATE else ())
        in_sh = (state_sharding, frozen_sharding, batch_sharding)[:n_args]
        return jax.jit(fn, in_shardings=in_sh, out_shardings=(state_sharding, None),
                       donate_argnums=0 if DONATE_STATE else ())

    ids = method.phase_key_ids()
    phases = [(p, jit(make_phase_fn(p, k, method, modules, txs, batch_size, batch_sharding, nan_to_num), 3))
              for p, k in zip(method.phases, ids)]
    return Steps(phases=phases, ema=jit(make_ema_fn(method, batch_size), 1))


def run_iteration(steps: Steps, state: TrainState, frozen, batch, step: int) -> tuple[TrainState, dict[str, Any]]:
    """One iteration: the phases due at ``step`` in order, then the EMA step."""
    metrics: dict[str, Any] = {}
    for phase, fn in steps.phases:
        if step % int(phase.interval) == 0:
            state, m = fn(state, frozen, batch)
            metrics.update(m)
    state, m = steps.ema(state)
    metrics.update(m)
    return state, metrics
