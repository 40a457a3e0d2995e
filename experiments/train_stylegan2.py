"""Train a StyleGAN2 teacher from scratch, as NVlabs trains it.

    python -m gancomp_jax.main --config experiments/train_stylegan2.py --workdir runs/sg2 \
        --config.model.preset=paper256 --config.data.source=zip --config.data.path=ffhq256.zip

Defaults: the small32 preset on the embedded digits dataset. Any field can be overridden,
e.g. ``--config.total_kimg=5000 --config.r1_gamma=1 --config.model.mixed_precision=True``.
Re-running with the same --workdir resumes from the latest checkpoint.

Variant ``released`` (``--config experiments/train_stylegan2.py:released``): NVlabs
stylegan2-ada-pytorch ``train.py --cfg=paper256`` — batch 64, lr 0.0025, R1 γ 1, EMA 20 kimg
without ramp-up, minibatch-std group 8, float16 in the 4 highest resolutions with
``conv_clamp`` 256 (here bfloat16, ``model.mixed_precision``) and ``nan_to_num`` on every
gradient (``grad_nan_to_num``); the data (``--config.data.*``) is yours.
"""

from gancomp_jax.train.config import default_train_config


def get_config(variant: str = ""):
    c = default_train_config()
    if variant not in ("", "released"):
        raise ValueError(f"unknown train_stylegan2 variant {variant!r}; choose from ('released',)")
    if variant == "released":
        c.model.preset = "paper256"
        c.model.mbstd_group_size = 8
        c.model.mixed_precision = True
        c.model.conv_clamp = 256.0
        c.grad_nan_to_num = True
        c.batch_size, c.lr, c.betas = 64, 0.0025, (0.0, 0.99)
        c.r1_gamma, c.r1_interval, c.pl_weight, c.pl_interval = 1.0, 16, 2.0, 4
        c.style_mixing_prob, c.ema_kimg, c.ema_rampup = 0.9, 20.0, 0.0
    return c
