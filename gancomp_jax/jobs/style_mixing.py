"""Style-mixing job (NVlabs ``style_mixing.py``): ``{row}-{col}.png`` for every pair and
``(seed, seed)`` source, and ``grid.png`` with the sources in the first row and column.

    python -m gancomp_jax.main --config experiments/style_mixing.py --workdir OUT \
        --config.checkpoint=MODEL --config.row_seeds=85,100,75 --config.col_seeds=55,821 \
        --config.col_styles=0-6 --config.truncation_psi=1 --config.noise_mode=const

Semantics in :mod:`gancomp_jax.editing.style_mixing`.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from gancomp_jax.editing import outputs
from gancomp_jax.editing.style_mixing import check_styles, mixing_grid, style_mix
from gancomp_jax.models.generator import NOISE_MODES, Generator
from gancomp_jax.utils.images import save_png
from gancomp_jax.utils.ranges import parse_seeds

TOOL = "style_mixing"


def parse_styles(spec) -> list[int]:
    """``'0-6'`` or ``'0,1,2'`` (NVlabs ``num_range``) → layer indices."""
    try:
        return parse_seeds(spec)
    except ValueError:
        raise ValueError(f"invalid col_styles {spec!r}: use a range like '0-6' or a list like '0,1,2'") from None


def run(config, workdir: str) -> Path:
    from gancomp_jax.jobs.project import load_generator

    row_seeds, col_seeds = parse_seeds(config.row_seeds), parse_seeds(config.col_seeds)
    styles = parse_styles(config.col_styles)
    if config.noise_mode not in NOISE_MODES:
        raise ValueError(f"config.noise_mode must be one of {NOISE_MODES}, got {config.noise_mode!r}")
    name, net = load_generator(config.checkpoint, config.network)
    check_styles(styles, net.config.num_ws)
    out = Path(workdir)
    if out.exists() and any(out.iterdir()) and not outputs.is_ours(out, TOOL):
        raise FileExistsError(f"output folder {out} already holds files that are not a style_mixing output of "
                              f"gancomp_jax; choose an empty or new folder")
    images = style_mix(Generator(net.config), jax.tree.map(jnp.asarray, net.variables), row_seeds, col_seeds,
                       styles, float(config.truncation_psi), config.noise_mode, int(config.noise_seed))
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_marker(out, TOOL, checkpoint=str(config.checkpoint), complete=False)
    for (r, c), img in images.items():
        save_png(out / f"{r}-{c}.png", img)
    save_png(out / "grid.png", mixing_grid(images, row_seeds, col_seeds))
    outputs.write_marker(out, TOOL, checkpoint=str(config.checkpoint), complete=True)
    print(f"wrote {len(images)} images and grid.png to {out} (network {name}, styles {styles}, "
          f"truncation_psi={config.truncation_psi}, noise_mode={config.noise_mode})")
    return out
