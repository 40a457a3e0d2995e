"""Train a StyleGAN2 teacher from scratch, as NVlabs trains it.

    python -m gancomp_jax.main --config experiments/train_stylegan2.py --workdir runs/sg2 \
        --config.model.preset=paper256 --config.data.source=zip --config.data.path=ffhq256.zip

Defaults: the small32 preset on the embedded digits dataset. Any field can be overridden,
e.g. ``--config.total_kimg=5000 --config.r1_gamma=1 --config.model.mixed_precision=True``.
Re-running with the same --workdir resumes from the latest checkpoint.
"""

from gancomp_jax.train.config import default_train_config


def get_config():
    return default_train_config()
