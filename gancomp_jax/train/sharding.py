"""Device mesh and shardings for data-parallel (optionally FSDP) training.

One mesh axis, ``data``, spans the devices. The global batch is sharded on it; parameters and
optimiser states are replicated (``'replicate'``) or split along their largest divisible axis
(``'fsdp'``), in which case XLA inserts the all-gathers. Each process feeds only its own part
of the global batch (``jax.make_array_from_process_local_data``), so the same code runs on one
CPU, one GPU, or a multi-host TPU pod.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
STRATEGIES = ("replicate", "fsdp")


def make_mesh(num_devices: int = -1) -> Mesh:
    """A 1-D ``data`` mesh over the first ``num_devices`` devices (-1: all)."""
    devices = jax.devices()
    n = len(devices) if num_devices in (-1, 0, None) else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"mesh needs {n} devices but {len(devices)} are available")
    # Auto axes: shardings of intermediates are propagated by XLA (GSPMD), constrained only
    # where the steps say so (the batch axis).
    if n == len(devices):
        return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _fsdp_spec(shape: tuple[int, ...], n: int, min_size: int = 2 ** 12) -> P:
    """Shard the largest axis divisible by ``n`` (small arrays stay replicated)."""
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % n == 0:
            spec = [None] * len(shape)
            spec[axis] = DATA_AXIS
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, strategy: str = "replicate") -> Any:
    """Shardings for every leaf of a (abstract) train state."""
    if strategy not in STRATEGIES:
        raise ValueError(f"sharding strategy must be one of {STRATEGIES}, got {strategy!r}")
    n = mesh.shape[DATA_AXIS]
    if strategy == "replicate":
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    return jax.tree.map(lambda x: NamedSharding(mesh, _fsdp_spec(tuple(x.shape), n)), abstract_state)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles the global batch from each process's local part."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}
