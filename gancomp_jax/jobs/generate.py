"""Generation job: PNGs for a list of seeds with NVlabs conventions, plus a grid.

For each seed: ``z = np.random.RandomState(seed).randn(z_dim)``, image =
``G(z, c, truncation_psi, truncation_cutoff, noise_mode)``, uint8 =
``clip(img * 127.5 + 128, 0, 255)``, written to ``WORKDIR/seed%04d.png``; all images are also
tiled into ``WORKDIR/grid.png``. The workdir must be new, empty or an earlier output of ours (marked
``.gancomp_jax_output.json``); ``seedNNNN.png`` of an earlier run's other seeds are removed (the
count is printed). With ``noise_mode='random'`` the noise comes from
``jax.random.fold_in(key(noise_seed), seed)``, so re-runs are byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gancomp_jax import checkpoints
from gancomp_jax.models.generator import NOISE_MODES, Generator
from gancomp_jax.utils.atomic_dir import check_workdir, prepare_workdir
from gancomp_jax.utils.images import make_grid, save_png, to_uint8
from gancomp_jax.utils.ranges import parse_seeds
from gancomp_jax.utils.seed_images import remove_stale_seed_images  # noqa: F401  (re-exported)




def latents_for_seeds(seeds: list[int], z_dim: int) -> np.ndarray:
    """``[len(seeds), z_dim]`` float32 latents, one ``RandomState(seed).randn(z_dim)`` per seed."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def _validate(config) -> None:
    if not config.checkpoint:
        raise ValueError("config.checkpoint is required: a model directory (from tools/convert_pt_weights.py, "
                         "init_model, prune or training), an NVlabs .pkl, a rosinality .pt, or a training run "
                         "directory / its checkpoints/<step> folder")
    if config.noise_mode not in NOISE_MODES:
        raise ValueError(f"config.noise_mode must be one of {NOISE_MODES}, got {config.noise_mode!r}")
    from gancomp_jax.utils.ranges import check_batch_size, check_truncation_psi

    check_batch_size(config.batch_size, "config.batch_size")
    parse_seeds(config.seeds)  # bounded count: before the model is read

    check_truncation_psi(config.truncation_psi, "config.truncation_psi")


def load_generator_source(path: str, network: str = "auto") -> dict[str, checkpoints.Network]:
    """The networks to sample from: any MODEL :func:`gancomp_jax.checkpoints.load_any` reads (a
    model directory, a training or DGL-GAN run directory or ``checkpoints/<step>`` folder, our
    ``.nvlabs.safetensors`` export, an NVlabs ``.pkl`` or a rosinality ``.pt``)."""
    names = None if network == "auto" else [network]
    return checkpoints.load_any(path, names)


def make_generate_fn(G: Generator, truncation_psi: float, truncation_cutoff: int | None, noise_mode: str):
    """Jitted ``(variables, z, c, key) -> images [N, R, R, C]`` float32."""
    @jax.jit
    def generate(variables, z, c, key):
        return G.apply(variables, z, c, truncation_psi=truncation_psi,
                       truncation_cutoff=truncation_cutoff, noise_mode=noise_mode,
                       rngs={"noise": key})
    return generate


def run(config, workdir: str) -> list[Path]:
    _validate(config)
    if config.get("projected_w"):  # NVlabs generate.py --projected-w
        from gancomp_jax.jobs.project import render_projected_w

        return render_projected_w(config, workdir)
    seeds = parse_seeds(config.seeds)
    check_workdir(workdir, ("grid.png",))  # new, empty or an earlier output of ours; never other files
    networks = load_generator_source(config.checkpoint, config.network)
    if config.network == "auto":
        name, net = checkpoints.pick_generator(networks)
    else:
        name, net = config.network, networks[config.network]
    if net.kind in ("biggan_generator", "pretrained_biggan_generator"):  # the BigGAN family (imported only here)
        from gancomp_jax.jobs.generate_biggan import run_biggan

        return run_biggan(config, workdir, name, net, seeds)
    if net.kind != "generator":
        raise ValueError(f"config.network={name!r} in {config.checkpoint} is a {net.kind}; generation needs "
                         f"a generator (e.g. 'G_ema' or 'G', or 'auto')")
    gcfg = net.config
    if config.force_fp32:
        gcfg = gcfg.replace(num_mixed_res=0)
    c = None
    if gcfg.c_dim > 0:
        if not 0 <= config.class_idx < gcfg.c_dim:
            raise ValueError(f"the generator is conditional (c_dim={gcfg.c_dim}): set config.class_idx in [0, {gcfg.c_dim})")
        c = np.zeros((len(seeds), gcfg.c_dim), np.float32)
        c[:, config.class_idx] = 1
    elif config.class_idx >= 0:
        raise ValueError(f"config.class_idx={config.class_idx} was given but the generator in "
                         f"{config.checkpoint} is unconditional (c_dim=0); leave class_idx at -1")
    cutoff = config.truncation_cutoff if config.truncation_cutoff is not None and config.truncation_cutoff >= 0 else None

    out = prepare_workdir(workdir, "generate", ("grid.png",))
    generate = make_generate_fn(Generator(gcfg), float(config.truncation_psi), cutoff, config.noise_mode)
    z_all = latents_for_seeds(seeds, gcfg.z_dim)
    variables = jax.tree.map(jnp.asarray, net.variables)
    base_key = jax.random.key(config.noise_seed)
    logging.info("generating %d images from %s (%s, %dpx) into %s", len(seeds), config.checkpoint, name,
                 gcfg.img_resolution, out)
    images, paths = [], []
    bs = int(config.batch_size)
    for start in range(0, len(seeds), bs):
        chunk = seeds[start:start + bs]
        z = z_all[start:start + bs]
        n = len(chunk)
        if n < bs:  # pad to a fixed batch so only one program is compiled
            z = np.concatenate([z, np.zeros((bs - n, gcfg.z_dim), np.float32)])
        cc = None if c is None else np.concatenate([c[start:start + n], np.zeros((bs - n, gcfg.c_dim), np.float32)])
        # Random noise is keyed by the seed, so an image does not depend on its batch-mates.
        if config.noise_mode == "random":
            imgs = np.concatenate([
                np.asarray(generate(variables, z[i:i + 1], None if cc is None else cc[i:i + 1],
                                    jax.random.fold_in(base_key, s)))
                for i, s in enumerate(chunk)])
        else:
            imgs = np.asarray(generate(variables, z, cc, base_key))[:n]
        u8 = to_uint8(imgs)
        for s, img in zip(chunk, u8):
            path = out / f"seed{s:04d}.png"
            save_png(path, img)
            paths.append(path)
        images.append(u8)
    if config.grid:
        grid_path = out / "grid.png"
        save_png(grid_path, make_grid(np.concatenate(images)))
        logging.info("wrote %s", grid_path)
    stale = remove_stale_seed_images(out, paths)
    print(f"wrote {len(paths)} images to {out} (network {name}, truncation_psi={config.truncation_psi}, "
          f"noise_mode={config.noise_mode})"
          + (f"; removed {stale} seedNNNN.png of an earlier run with other seeds" if stale else ""))
    return paths
