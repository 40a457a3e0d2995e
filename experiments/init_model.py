"""Write a random-weight model checkpoint from a named preset (for trying the tools).

    python -m gancomp_jax.main --config experiments/init_model.py --workdir MODEL_DIR \
        --config.preset=paper256 --config.seed=0
"""

import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.job = "init_model"
    config.preset = "tiny16"        # see gancomp_jax.models.presets
    config.resolution = 0           # 0: the preset's resolution
    config.conv_clamp = config_dict.placeholder(float)
    config.seed = 0
    config.with_discriminator = True
    config.overwrite = False
    return config
