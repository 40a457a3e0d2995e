"""StableHLO export of a deployable forward function through ``jax.export``.

Serializes a :class:`jax.export.Exported` (weights embedded as constants). It is
reloaded with ``jax.export.deserialize(bytearray(data))`` and called as ``exp.call(z, ...)``
with JAX alone. The batch dimension is symbolic (``N``) unless a fixed batch is asked for.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

from gancomp_jax.deploy.forward import InputSpec

BATCH_DIM = "N"
PLATFORMS = ("cpu", "cuda", "tpu")


def export_stablehlo(fn: Callable, specs: Sequence[InputSpec], batch: int | None,
                     platforms: Sequence[str] = PLATFORMS) -> tuple[jax.export.Exported, bytes]:
    """``jax.export.export(jax.jit(fn))`` for ``specs`` and its serialized bytes."""
    n = jax.export.symbolic_shape(BATCH_DIM)[0] if batch is None else int(batch)
    args = [jax.ShapeDtypeStruct(tuple(n if d is None else d for d in s.shape), np.dtype(s.dtype)) for s in specs]
    exported = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*args)
    return exported, exported.serialize()
