"""DCP-GAN (Chung et al., CVPR 2024): prune a teacher with diversity-aware channel scores.

    python -m gancomp_jax.main --config experiments/dcp_gan.py --workdir runs/dcp70 \\
        --config.teacher=ffhq-res256-mirror-paper256-noaug.pkl

Variants (``--config experiments/dcp_gan.py:VARIANT``):

- ``ffhq256`` (default): the released ``prune.py`` settings — criterion ``dcp``, uniform
  removal ratio 0.7, 5 000 samples in batches of 5, edit strength 5.0, 10 PCA directions per
  batch from 10 000 mapped latents, no truncation (the criterion's defaults,
  :mod:`gancomp_jax.prune.dcp`). The released teacher is the rosinality config-f 256 px model
  (30.0 M params); the SVS repository runs the same scoring on NVlabs ``paper256`` with edit
  strength 10.0 (``experiments/svs.py``).
- ``released``: ``ffhq256`` with surgery ``as_released`` (DCP-GAN's ``prune.py`` rebuilds the
  student at the new widths and copies the sliced weights, so ToRGB gains are not rescaled).
- ``digits``: the quickstart's digits teacher (pass ``--config.teacher``), 200 samples in batches
  of 5, ratio 0.7: a few seconds on a CPU.

DCP-GAN then fine-tunes the pruned student with StyleKD's losses (L1 3, LPIPS 3, relation KL 30,
offset latents, mapping network from the teacher; 450k iterations, batch 16): train with the
``stylekd`` method and ``--config.method.student=runs/dcp70/model``.
"""

from gancomp_jax.jobs.prune import default_config

VARIANTS = ("ffhq256", "released", "digits")


def get_config(variant: str = "ffhq256"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown dcp_gan variant {variant!r}; choose from {VARIANTS}")
    c = default_config()
    c.criterion = "dcp"
    c.ratio = 0.7
    c.noise_mode = "random"
    if variant in ("ffhq256", "released"):
        c.n_sample = 5000
        c.batch_size = 5
    else:
        c.n_sample = 200
        c.batch_size = 5
    if variant == "released":
        c.surgery = "as_released"
        c.noise_mode = "random"
        c.ratio = 0.7
    return c
