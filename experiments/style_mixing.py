"""Style mixing grid (NVlabs style_mixing.py): rows take layers col_styles from the columns.

    python -m gancomp_jax.main --config experiments/style_mixing.py --workdir OUT \
        --config.checkpoint=MODEL --config.row_seeds=85,100,75,458,1500 --config.col_seeds=55,821,1789,293

Writes OUT/{row}-{col}.png for every pair (and {seed}-{seed}.png for the sources) and OUT/grid.png.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.job = "style_mixing"
    c.checkpoint = ""             # model directory / .pkl / .pt / training run (required)
    c.network = "auto"
    c.row_seeds = "85,100,75,458,1500"
    c.col_seeds = "55,821,1789,293"
    c.col_styles = "0-6"          # NVlabs default; layers taken from the column seeds
    c.truncation_psi = 1.0
    c.noise_mode = "const"        # 'const' | 'random' | 'none'
    c.noise_seed = 0              # for noise_mode='random'
    return c
