"""Minibatch standard deviation (StyleGAN2 discriminator epilogue), NVlabs grouping, NHWC.

The batch of ``N`` samples is split into ``G = min(group_size, N)`` *strided* groups: sample
``j`` is grouped with ``j + N/G, j + 2N/G, ...`` (NVlabs reshapes the batch to ``[G, N/G, ...]``).
For every group and each of ``num_channels`` channel slices the population standard deviation
over the group is averaged over pixels and channels, and the result is appended to the input
as ``num_channels`` constant feature maps.
"""

from __future__ import annotations

import jax.numpy as jnp


def minibatch_std(x: jnp.ndarray, group_size: int | None, num_channels: int = 1) -> jnp.ndarray:
    """Appends minibatch-std feature maps.

    Args:
      x: ``[N, H, W, C]``; ``N`` must be divisible by ``min(group_size, N)`` and ``C`` by
        ``num_channels``.
      group_size: samples per group; ``None`` uses the whole batch.
      num_channels: number of std features (``F``).

    Returns:
      ``[N, H, W, C + F]`` (input channels first, then the std features).
    """
    n, h, w, c = x.shape
    g = n if group_size is None else min(int(group_size), n)
    f = int(num_channels)
    if n % g:
        raise ValueError(f"minibatch-std: batch {n} is not divisible by the group size {g}")
    if c % f:
        raise ValueError(f"minibatch-std: {c} channels are not divisible by {f} std channels")
    y = x.astype(jnp.float32).reshape(g, n // g, h, w, f, c // f)
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [n/g, h, w, f, c/f]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n/g, f]
    y = jnp.tile(y, (g, 1))  # sample i takes group statistics i % (n/g)
    y = jnp.broadcast_to(y[:, None, None, :], (n, h, w, f)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)
