"""A minimal, trainer-independent driver for distillation-method tests: builds a method's
networks from their specs and runs one iteration's phases with plain SGD, so tests can check
which parameters each phase changes. (The real trainer is exercised by the resume/devices tests.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax import checkpoints
from gancomp_jax.methods.base import BuildEnv, Context
from gancomp_jax.models import Discriminator, Generator, get_preset


def make_models(tmp_path, divisor=2, pruned_d_divisor=None):
    """Teacher (tiny16: G_ema, G, D) and a narrower student model dir (G, G_ema, D)."""
    from gancomp_jax.methods._distil_common import narrow_discriminator, narrow_generator

    p = get_preset("tiny16")
    g = checkpoints.init_network("generator", p.generator, jax.random.key(1))
    d = checkpoints.init_network("discriminator", p.discriminator, jax.random.key(2))
    teacher = tmp_path / "teacher"
    checkpoints.save_model(teacher, {"G_ema": g, "G": g, "D": d})
    s_cfg = narrow_generator(p.generator, divisor, keep_const=False)
    s = checkpoints.init_network("generator", s_cfg, jax.random.key(3))
    d_cfg = narrow_discriminator(p.discriminator, pruned_d_divisor or 1)
    sd = checkpoints.init_network("discriminator", d_cfg, jax.random.key(4))
    student = tmp_path / "student"
    checkpoints.save_model(student, {"G": s, "G_ema": s, "D": sd})
    return str(teacher), str(student)


def build_networks(method, key=jax.random.key(0)):
    modules, variables = {}, {}
    for i, (role, spec) in enumerate(method.networks.items()):
        k = jax.random.fold_in(key, i)
        if spec.kind == "module":
            modules[role] = spec.module
            variables[role] = dict(spec.init(k))
            continue
        if spec.source == "init":
            net = checkpoints.init_network(spec.kind, spec.config, k)
        else:
            net = checkpoints.load_any(spec.source, [spec.source_name])[spec.source_name]
        modules[role] = Generator(net.config) if spec.kind == "generator" else Discriminator(net.config)
        v = jax.tree.map(jnp.asarray, dict(net.variables))
        variables[role] = v if spec.kind == "generator" else {"params": v["params"]}
    return modules, variables


def run_phase(method, phase, modules, variables, extra, step, batch, lr=1e-2):
    """One phase: loss, grads w.r.t. the params of ``phase.updates``, SGD; returns new variables."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(7), step), method.phase_key_ids()[
        [p.name for p in method.phases].index(phase.name)])

    def loss_fn(params, variables, extra, batch):
        v = dict(variables)
        for r in phase.updates:
            v[r] = {**variables[r], "params": params[r]}
        ctx = Context(step=jnp.int32(step), key=key, batch=batch, batch_size=batch["image"].shape[0],
                      variables=v, modules=modules, specs=method.networks, extra=extra,
                      style_mixing_prob=method.style_mixing_prob, noise=method.noise,
                      style_mixing_rounds=method.style_mixing_rounds)
        loss, metrics = phase.loss(ctx)
        return loss * phase.interval, (metrics, ctx.new_extra)

    params = {r: variables[r]["params"] for r in phase.updates}
    (loss, (metrics, new_extra)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params, variables, extra, batch)
    out = dict(variables)
    for r in phase.updates:
        out[r] = {**variables[r], "params": jax.tree.map(lambda p, g: p - lr * g, params[r], grads[r])}
    return loss, metrics, out, {**extra, **new_extra}, grads


def real_batch(n=4, res=16, seed=0):
    img = jax.random.uniform(jax.random.key(seed), (n, res, res, 3), minval=-1, maxval=1)
    return {"image": img, "label": jnp.zeros((n,), jnp.int32)}


def env(batch_size=4):
    return BuildEnv(batch_size=batch_size, num_devices=1, mbstd_num_shards=1, model=get_preset("tiny16"))


def changed(a, b):
    """True if any leaf differs."""
    return any(not np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def all_leaves_changed(a, b):
    return all(not np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
