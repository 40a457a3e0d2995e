"""A forward-only re-tracing of a JAX function in primitives every ONNX exporter can express.

jax2onnx 0.17.1 lowers ``lax.pad`` to ONNX ``Pad`` but (a) rejects interior padding (the zero
insertion of ``upfirdn2d``'s upsampling, used by ``upsample2d`` in every skip generator) and
(b) fails on a symbolic (dynamic) batch dimension in any ``Pad``. :func:`expressible` evaluates
the function's jaxpr equation by equation and re-emits

* every ``pad`` as zero blocks joined with ``concatenate`` (edges), ``reshape`` of an
  ``[..., L, 1 + interior, ...]`` stack (interior zeros) and ``slice`` (negative padding = crop);
  the result holds exactly the same numbers (only zeros are placed, nothing is computed);
* ``custom_vjp_call`` / ``custom_jvp_call`` (``upfirdn2d``'s hand-written gradient) as their
  primal jaxpr inline — the export is forward-only, so the gradient rule is irrelevant;
* ``pjit`` / ``closed_call`` by recursing into the called jaxpr;

and binds every other primitive unchanged. The numbers computed are therefore the same
operations on the same values as the original function (bit-identical under JAX itself).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jcore

_INLINE = ("pjit", "jit", "closed_call", "core_call", "custom_vjp_call", "custom_jvp_call",
           "custom_vjp_call_jaxpr", "remat", "checkpoint")


def pad_without_pad(x: jnp.ndarray, padding_value: jnp.ndarray,
                    padding_config: tuple[tuple[int, int, int], ...]) -> jnp.ndarray:
    """``lax.pad(x, padding_value, padding_config)`` from concatenate / reshape / slice only.

    Each axis ``a`` with ``(lo, hi, interior)``: interior values are inserted by stacking
    ``interior`` constant blocks after every element and dropping the trailing ones; then the
    edges are added (``lo, hi > 0``) or cropped (``< 0``).
    """
    value = jnp.asarray(padding_value, x.dtype)
    for axis, (lo, hi, interior) in enumerate(padding_config):
        lo, hi, interior = int(lo), int(hi), int(interior)
        if interior > 0 and x.shape[axis] > 1:
            fill = jnp.broadcast_to(value, (*x.shape[:axis + 1], interior, *x.shape[axis + 1:]))
            xs = jnp.concatenate([jnp.expand_dims(x, axis + 1), fill], axis=axis + 1)
            length = x.shape[axis]
            x = xs.reshape(*x.shape[:axis], length * (1 + interior), *x.shape[axis + 1:])
            x = lax.slice_in_dim(x, 0, (length - 1) * (1 + interior) + 1, axis=axis)
        if lo < 0:
            x = lax.slice_in_dim(x, -lo, x.shape[axis], axis=axis)
            lo = 0
        if hi < 0:
            x = lax.slice_in_dim(x, 0, x.shape[axis] + hi, axis=axis)
            hi = 0
        parts = []
        if lo:
            parts.append(jnp.broadcast_to(value, (*x.shape[:axis], lo, *x.shape[axis + 1:])))
        parts.append(x)
        if hi:
            parts.append(jnp.broadcast_to(value, (*x.shape[:axis], hi, *x.shape[axis + 1:])))
        if len(parts) > 1:
            x = jnp.concatenate(parts, axis=axis)
    return x


def _sub_jaxpr(eqn) -> jcore.ClosedJaxpr | None:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is None:
            continue
        if isinstance(sub, jcore.ClosedJaxpr):
            return sub
        if isinstance(sub, jcore.Jaxpr):
            return jcore.ClosedJaxpr(sub, ())
    return None


def eval_expressible(closed: jcore.ClosedJaxpr, *args: Any) -> list[Any]:
    """Evaluates ``closed`` on ``args`` with the substitutions listed in the module docstring."""
    jaxpr = closed.jaxpr
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, closed.consts):
        env[var] = val
    for var, val in zip(jaxpr.invars, args):
        env[var] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        sub = _sub_jaxpr(eqn) if name in _INLINE else None
        if name == "pad":
            outs = [pad_without_pad(invals[0], invals[1], eqn.params["padding_config"])]
        elif sub is not None:
            outs = eval_expressible(sub, *invals[len(invals) - len(sub.jaxpr.invars):])
        else:
            out = eqn.primitive.bind(*invals, **eqn.params)
            outs = list(out) if eqn.primitive.multiple_results else [out]
        for var, val in zip(eqn.outvars, outs):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


def expressible(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (positional array arguments, one array or tuple out) re-traced as described above."""
    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outs = eval_expressible(closed, *args)
        leaves, treedef = jax.tree.flatten(out_shape)
        return jax.tree.unflatten(treedef, outs)
    return wrapped
