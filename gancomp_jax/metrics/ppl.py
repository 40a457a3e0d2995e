"""Perceptual path length (Karras et al. 2019): NVlabs ``ppl2_wend`` and CAGC's variant.

NVlabs (``perceptual_path_length.py``, ``PPLSampler``), per batch of ``N`` pairs:

1. ``t ~ U(0, 1)`` (``sampling='full'``) or ``t = 0`` (``'end'``); ``z0, z1 ~ N(0, I)``.
2. ``space='w'``: ``w0, w1 = mapping(z0), mapping(z1)``; ``wt0 = lerp(w0, w1, t)``,
   ``wt1 = lerp(w0, w1, t + ε)``. ``space='z'``: slerp in z, then mapping.
3. Every ``noise_const`` buffer is re-drawn from N(0, 1) (shared by the batch), and the
   synthesis runs with ``noise_mode='const'`` in float32 (``force_fp32``), so both images of
   a pair get the same noise.
4. Optional centre crop (``crop=True``: rows ``[3c, 7c)``, columns ``[2c, 6c)``, ``c = R/8``),
   box downsampling to 256 when ``R > 256``, and LPIPS-VGG between the two images.
5. ``d = LPIPS(img_t0, img_t1) / ε²`` (NVlabs' ``vgg16.pt`` returns LPIPS feature vectors
   whose summed squared difference is the LPIPS distance; here the LPIPS network returns the
   distance itself).

Score: mean of the ``d`` within the [1st percentile (``'lower'``), 99th percentile
(``'higher'``)]. ``ppl2_wend`` = 50k samples, ε = 1e-4, W, ``'end'``, no crop.

CAGC's "PPL" (``get_ppl.py`` → ``Evaluation/ppl.py::Get_PPL_Score``, reported by CAGC) differs:
``t ~ U(0, 1)`` in W, the generator's *random* noise drawn independently for each of the two
images, images larger than 256 resized bilinearly to 256, LPIPS **not** divided by ε², and
5000 samples in batches of 50. It is registered as ``ppl_cagc`` and is not comparable to
NVlabs' PPL (it mostly measures the noise difference).

The LPIPS network is passed as ``lpips(params, x0, x1) -> [N]`` with images NHWC in [-1, 1].
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from tqdm import tqdm

from gancomp_jax.models.generator import Generator

LpipsFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def trimmed_mean(dist) -> float:
    """NVlabs' PPL reduction: mean of values within [P1 ('lower'), P99 ('higher')]."""
    dist = np.asarray(dist, np.float64)
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())


def slerp(a, b, t):
    """Spherical interpolation of (normalised) ``a, b [N, D]`` at ``t [N, 1]`` (NVlabs)."""
    a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
    b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
    d = (a * b).sum(-1, keepdims=True)
    p = t * jnp.arccos(d)
    c = b - d * a
    c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    d = a * jnp.cos(p) + c * jnp.sin(p)
    return d / jnp.linalg.norm(d, axis=-1, keepdims=True)


def randomize_noise_const(variables, key):
    """Copy of ``variables`` with every ``noise_const`` buffer re-drawn from N(0, 1)."""
    flat = traverse_util.flatten_dict(dict(variables))
    out = {}
    for i, (k, v) in enumerate(sorted(flat.items())):
        out[k] = jax.random.normal(jax.random.fold_in(key, i), v.shape, jnp.float32) if k[-1] == "noise_const" else v
    return traverse_util.unflatten_dict(out)


def box_downsample(img, size: int):
    """Mean over ``factor × factor`` boxes, ``factor = R // size`` (NVlabs; no-op if ≤ 1)."""
    factor = img.shape[1] // size
    if factor <= 1:
        return img
    n, h, w, c = img.shape
    return img.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def make_ppl_sampler(G: Generator, lpips: LpipsFn, epsilon: float = 1e-4, space: str = "w",
                     sampling: str = "end", crop: bool = False):
    """NVlabs sampler ``(variables, lpips_params, c [n, c_dim] | None, key, n) -> d [n]`` (jit-able, ``n`` static).

    ``G`` should be built with ``num_mixed_res=0`` (NVlabs ``force_fp32=True``).
    """
    if space not in ("z", "w") or sampling not in ("full", "end"):
        raise ValueError(f"PPL space must be 'z'|'w' and sampling 'full'|'end', got {space!r}, {sampling!r}")
    cfg = G.config

    def sample_n(variables, lpips_params, c, key, n):
        k_t, k_z, k_noise = jax.random.split(key, 3)
        t = jax.random.uniform(k_t, (n,)) * (1.0 if sampling == "full" else 0.0)
        z = jax.random.normal(k_z, (2 * n, cfg.z_dim))
        z0, z1 = z[:n], z[n:]
        cc = None if c is None else jnp.concatenate([c, c])
        if space == "w":
            ws = G.apply(variables, z, cc, method=Generator.map)
            w0, w1 = ws[:n], ws[n:]
            tt = t[:, None, None]
            wt0 = w0 + (w1 - w0) * tt
            wt1 = w0 + (w1 - w0) * (tt + epsilon)
        else:
            zt0 = slerp(z0, z1, t[:, None])
            zt1 = slerp(z0, z1, t[:, None] + epsilon)
            ws = G.apply(variables, jnp.concatenate([zt0, zt1]), cc, method=Generator.map)
            wt0, wt1 = ws[:n], ws[n:]
        v = randomize_noise_const(variables, k_noise)
        img = G.apply(v, jnp.concatenate([wt0, wt1]), "const", method=Generator.synthesize)
        if crop:
            cpx = img.shape[1] // 8
            img = img[:, cpx * 3:cpx * 7, cpx * 2:cpx * 6, :]
        img = box_downsample(img, 256)
        if img.shape[-1] == 1:
            img = jnp.repeat(img, 3, axis=-1)
        d = lpips(lpips_params, img[:n], img[n:])
        return d / epsilon ** 2

    return sample_n


def make_cagc_ppl_sampler(G: Generator, lpips: LpipsFn, epsilon: float = 1e-4):
    """CAGC's sampler ``(variables, lpips_params, c, key, n) -> d [n]`` (see module docstring)."""
    cfg = G.config

    def sample_n(variables, lpips_params, c, key, n):
        k_t, k_z, k_n0, k_n1 = jax.random.split(key, 4)
        z = jax.random.normal(k_z, (2 * n, cfg.z_dim))
        cc = None if c is None else jnp.concatenate([c, c])
        ws = G.apply(variables, z, cc, method=Generator.map)
        w0, w1 = ws[:n], ws[n:]
        t = jax.random.uniform(k_t, (n,))[:, None, None]
        we0 = w0 + (w1 - w0) * t
        we1 = w0 + (w1 - w0) * (t + epsilon)
        img0 = G.apply(variables, we0, "random", method=Generator.synthesize, rngs={"noise": k_n0})
        img1 = G.apply(variables, we1, "random", method=Generator.synthesize, rngs={"noise": k_n1})
        if img0.shape[1] > 256:
            img0 = jax.image.resize(img0, (n, 256, 256, img0.shape[-1]), "bilinear", antialias=False)
            img1 = jax.image.resize(img1, (n, 256, 256, img1.shape[-1]), "bilinear", antialias=False)
        if img0.shape[-1] == 1:
            img0, img1 = jnp.repeat(img0, 3, axis=-1), jnp.repeat(img1, 3, axis=-1)
        return lpips(lpips_params, img0, img1)

    return sample_n


def compute_ppl(G: Generator, variables, lpips: LpipsFn, lpips_params, num_samples: int,
                epsilon: float = 1e-4, space: str = "w", sampling: str = "end", crop: bool = False,
                batch_size: int = 2, seed: int = 0, labels: np.ndarray | None = None,
                variant: str = "nvlabs", progress: bool = True) -> float:
    """PPL of generator ``G`` (NVlabs reduction: 1–99 percentile trimmed mean).

    ``variant='nvlabs'`` runs :func:`make_ppl_sampler`; ``'cagc'`` runs
    :func:`make_cagc_ppl_sampler` (``space``/``sampling``/``crop`` are then ignored).
    Pairs are drawn with ``fold_in(key(seed), batch_index)``; conditional generators get
    labels drawn from ``labels`` (or uniform classes).
    """
    from gancomp_jax.metrics.runner import LatentStream, make_mesh
    from jax.sharding import NamedSharding, PartitionSpec as P

    if variant == "nvlabs":
        G = Generator(G.config.replace(num_mixed_res=0))  # force_fp32
        sample_n = make_ppl_sampler(G, lpips, epsilon, space, sampling, crop)
    elif variant == "cagc":
        sample_n = make_cagc_ppl_sampler(G, lpips, epsilon)
    else:
        raise ValueError(f"PPL variant must be 'nvlabs' or 'cagc', got {variant!r}")
    mesh = make_mesh()
    ndev = mesh.devices.size
    bs = -(-int(batch_size) // ndev) * ndev
    repl = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    fn = jax.jit(lambda v, lp, c, k: sample_n(v, lp, c, k, bs), out_shardings=data)
    variables = jax.device_put(variables, repl)
    lpips_params = jax.device_put(lpips_params, repl)
    stream = LatentStream(G.config.z_dim, G.config.c_dim, seed, labels)
    key = jax.random.key(seed)
    dist = []
    bar = tqdm(total=num_samples, desc=f"ppl ({variant})", unit="pair", disable=not progress, leave=False)
    done, index = 0, 0
    while done < num_samples:
        _, c = stream.next(bs)
        c = None if c is None else jax.device_put(c, data)
        d = np.asarray(fn(variables, lpips_params, c, jax.random.fold_in(key, index)))
        dist.append(d)
        done += bs
        index += 1
        bar.update(min(bs, num_samples - (done - bs)))
    bar.close()
    return trimmed_mean(np.concatenate(dist)[:num_samples])
