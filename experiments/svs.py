"""SVS (Kim & Yoo, AAAI 2025): DCP-GAN pruning followed by Singular Value Scaling of the student.

    python -m gancomp_jax.main --config experiments/svs.py --workdir runs/svs70 \\
        --config.teacher=ffhq-res256-mirror-paper256-noaug.pkl

Writes ``runs/svs70/model``: the 70 %-pruned student whose synthesis weights have had every
singular value replaced by its square root and every bias divided by √(‖b‖ + 1e-8)
(:mod:`gancomp_jax.prune.svs`), ready for fine-tuning. On an already pruned model directory,
``python tools/svs.py PRUNED_MODEL OUT_MODEL`` does the same step alone.

Variants:

- ``ffhq256`` (default): the released ``prune_dcp.py`` + ``train_stylekd_scaling.py`` settings
  for the paper256 teacher (FID 6.60 at 70 % pruning): DCP scores from 5 000 samples in batches of
  5, 10 directions, edit strength 10.0 (``dcp.edit_strength``), ratio 0.7,
  ``--initialize scaling --initialize-torgb scaling``.
- ``released``: ``ffhq256`` with surgery ``as_released`` (``prune_dcp.py`` rebuilds the student
  at the new widths and copies the sliced weights: ToRGB gains not rescaled).
- ``digits``: the quickstart's digits teacher, 200 samples.

The released fine-tuning is StyleKD's (L1 3, LPIPS 3, relation KL 30 on layers 2–5, offset weight
5, ``load_style 0``, ``pretrained_discriminator 0``): train with the ``stylekd`` method and
``--config.method.student=runs/svs70/model``.
"""

from gancomp_jax.jobs.prune import default_config

VARIANTS = ("ffhq256", "released", "digits")


def get_config(variant: str = "ffhq256"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown svs variant {variant!r}; choose from {VARIANTS}")
    c = default_config()
    c.criterion = "dcp"
    c.ratio = 0.7
    c.svs = True
    c.n_sample = 200 if variant == "digits" else 5000
    c.batch_size = 5
    c.dcp.edit_strength = 10.0       # the SVS release's prune_dcp.py
    if variant == "released":
        c.surgery = "as_released"
        c.noise_mode = "random"
        c.ratio = 0.7
    return c
