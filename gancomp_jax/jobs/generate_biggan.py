"""Generation from a BigGAN generator (called by the generate job for ``biggan_generator`` networks).

For each seed: ``z = np.random.RandomState(seed).randn(z_dim)``; with ``truncation_psi < 1`` the
BigGAN truncation trick: entries with ``|z| > 2`` are redrawn from the same ``RandomState``
until none is left (a standard normal truncated to [-2, 2], by resampling as in the BigGAN
paper), then scaled by ``psi`` (DeepMind's / pytorch-pretrained-biggan's
``truncation * truncnorm(-2, 2)`` convention; that package draws with ``scipy.stats.truncnorm``,
so its streams differ). ``psi = 1`` is no truncation. The class is ``config.class_idx``
(required). Image = ``G(z, G.shared(y))`` in eval mode (stored BN statistics, no spectral-norm
update), written as ``WORKDIR/seed%04d.png`` (``clip(img * 127.5 + 128, 0, 255)``) and a grid.

pytorch-pretrained-biggan networks (``pretrained_biggan_generator``, BigGAN-deep) take the
truncation as a network input too: ``G(z, y, truncation=psi)`` with the same latents, so
``psi < 1`` gives the package's ``psi * truncnorm(-2, 2)`` distribution and its standing
statistics for ``psi``; ``psi = 1`` uses an untruncated normal ``z`` (the package would still
truncate at 2) and the statistics tabulated for 1.0. ``psi`` must lie in ``(0, 1]``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gancomp_jax.models.biggan import BigGANGenerator
from gancomp_jax.utils.atomic_dir import prepare_workdir
from gancomp_jax.utils.images import make_grid, save_png, to_uint8

TRUNCATION_BOUND = 2.0


def biggan_latent(seed: int, z_dim: int, truncation_psi: float = 1.0) -> np.ndarray:
    """``[z_dim]`` float32 latent for ``seed`` (see module docstring)."""
    rs = np.random.RandomState(seed)
    z = rs.randn(z_dim)
    if truncation_psi < 1:
        bad = np.abs(z) > TRUNCATION_BOUND
        while bad.any():
            z[bad] = rs.randn(int(bad.sum()))
            bad = np.abs(z) > TRUNCATION_BOUND
        z = z * truncation_psi
    return z.astype(np.float32)


def run_biggan(config, workdir: str, name: str, net, seeds: list[int]) -> list[Path]:
    cfg = net.config
    if not 0 <= config.class_idx < cfg.n_classes:
        raise ValueError(f"the BigGAN generator has {cfg.n_classes} classes: set config.class_idx in "
                         f"[0, {cfg.n_classes})")
    if config.get("truncation_cutoff") is not None and config.truncation_cutoff >= 0:
        raise ValueError("config.truncation_cutoff applies to StyleGAN2 layers; BigGAN truncates z (leave it unset)")
    psi = float(config.truncation_psi)
    if net.kind == "pretrained_biggan_generator":
        from gancomp_jax.models.biggan.pretrained import PretrainedBigGANGenerator, stats_weights

        if not 0 < psi <= 1:
            raise ValueError(f"config.truncation_psi={psi}: a pytorch-pretrained-biggan generator takes the truncation "
                             f"as an input and needs it in (0, 1]")
        stats_weights(psi, cfg.n_stats)
        G = PretrainedBigGANGenerator(cfg)
        generate = jax.jit(lambda v, z, y: G.apply(v, z, y, truncation=psi))
    else:
        G = BigGANGenerator(cfg)
        generate = jax.jit(lambda v, z, y: G.apply(v, z, y))
    out = prepare_workdir(workdir, "generate", ("grid.png",))
    variables = jax.tree.map(jnp.asarray, net.variables)
    z_all = np.stack([biggan_latent(s, cfg.z_dim, psi) for s in seeds])
    logging.info("generating %d BigGAN images (%s, class %d) into %s", len(seeds), name, config.class_idx, out)
    bs = int(config.batch_size)
    images, paths = [], []
    for start in range(0, len(seeds), bs):
        chunk = seeds[start:start + bs]
        n = len(chunk)
        z = np.concatenate([z_all[start:start + n], np.zeros((bs - n, cfg.z_dim), np.float32)])
        y = np.full((bs,), config.class_idx, np.int32)
        u8 = to_uint8(np.asarray(generate(variables, z, y))[:n])
        for s, img in zip(chunk, u8):
            path = out / f"seed{s:04d}.png"
            save_png(path, img)
            paths.append(path)
        images.append(u8)
    if config.grid:
        save_png(out / "grid.png", make_grid(np.concatenate(images)))
    from gancomp_jax.utils.seed_images import remove_stale_seed_images

    stale = remove_stale_seed_images(out, paths)
    print(f"wrote {len(paths)} images to {out} (network {name}, BigGAN class {config.class_idx}, "
          f"truncation_psi={psi})" + (f"; removed {stale} stale seedNNNN.png" if stale else ""))
    return paths
