"""Generate images from a model checkpoint with NVlabs seed conventions.

    python -m gancomp_jax.main --config experiments/generate.py --workdir OUT \
        --config.checkpoint=DIR --config.seeds=0-7 --config.truncation_psi=0.7 \
        --config.noise_mode=const

Writes OUT/seed0000.png ... and OUT/grid.png.
"""

import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.job = "generate"
    config.checkpoint = ""          # model directory, or an NVlabs .pkl / rosinality .pt (required)
    config.network = "auto"         # 'auto' (G_ema, else G) or a network name in the checkpoint
    config.seeds = "0-7"            # e.g. '0-7' or '1,5,10-12'
    config.truncation_psi = 1.0
    config.truncation_cutoff = config_dict.placeholder(int)  # None: truncate all layers
    config.noise_mode = "const"     # 'const' | 'random' | 'none'
    config.noise_seed = 0           # base key for noise_mode='random'
    config.class_idx = -1           # class for conditional generators
    config.batch_size = 8
    config.grid = True
    config.force_fp32 = True        # run mixed-precision models in float32
    config.projected_w = ""         # a projected_w.npz (key 'w', [N, num_ws, w_dim]): writes projNN.png, seeds ignored
    return config
