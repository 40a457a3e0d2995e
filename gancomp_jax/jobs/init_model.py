"""Writes a freshly initialised (random-weight) model checkpoint from a named preset.

Useful to try generation and the tools before a converted teacher is available; the weights
are NVlabs' initialisation, seeded by ``config.seed``. The normal draws are taken on the host with
numpy (:func:`gancomp_jax.checkpoints.init_network_host_draws`; compiling paper256's jax draws
took ~20 s), so the numbers differ from the trainer's initialisation with the same seed.
"""

from __future__ import annotations

import jax

from gancomp_jax import checkpoints
from gancomp_jax.models import get_preset


def run(config, workdir: str):
    from gancomp_jax.utils.atomic_dir import check_output_dir

    # before the (slow) initialisation: workdir may only replace a model directory of ours
    check_output_dir(workdir, (), bool(config.overwrite), option="--config.overwrite=True", what="workdir")
    preset = get_preset(config.preset, conv_clamp=config.conv_clamp,
                        resolution=config.resolution or None)
    key_g, key_d = jax.random.split(jax.random.key(config.seed))
    g = checkpoints.init_network_host_draws("generator", preset.generator, key_g)
    networks = {"G": g, "G_ema": checkpoints.Network(g.kind, g.config, g.variables)}
    if config.with_discriminator:
        networks["D"] = checkpoints.init_network_host_draws("discriminator", preset.discriminator, key_d)
    path = checkpoints.save_model(workdir, networks, {"source": f"random init, preset {config.preset}, seed {config.seed}"},
                                  overwrite=config.overwrite)
    print(f"wrote random-weight model ({config.preset}, seed {config.seed}) to {path}")
    return path
