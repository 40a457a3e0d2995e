"""Prune a teacher generator into a narrower student (CAGC, NICKEL & DiME, DGL-GAN widths).

    python -m gancomp_jax.main --config experiments/prune.py --workdir OUT \
        --config.teacher=ffhq-res256-mirror-paper256-noaug.pkl \
        --config.criterion=content_aware --config.ratio=0.7

Writes OUT/model (G, G_ema = student, D), OUT/scores.npz, OUT/grid.png and OUT/report.md.
Set exactly one width rule: ratio, channel_multiplier or target_reduction. Every field is
documented in gancomp_jax/jobs/prune.py (default_config).

Variants (``--config experiments/prune.py:VARIANT``):

- ``released``: NICKEL & DiME's ``configs/prune/CAGC-Pruning-ratio-0.9-ffhq-256.yml``
  (``prune.py``): content-aware scores from 400 samples in batches of 8, salt-and-pepper 0.05
  inside the BiSeNet face mask (``mask=face_parser``: pass ``--config.mask_weights=79999_iter.pth``),
  random noise, ratio 0.9, surgery ``as_released`` (the student rebuilt at the new widths with
  the teacher's sliced weights, ToRGB gains not rescaled).
- ``released_cagc``: the same for CAGC's own ``prune.py``: ratio 0.7, batches of 10.

Both are checked key by key in ``tests/test_released_presets.py``.
"""

from gancomp_jax.jobs.prune import default_config

VARIANTS = ("released", "released_cagc")


def get_config(variant: str = ""):
    c = default_config()
    if not variant:
        return c
    if variant not in VARIANTS:
        raise ValueError(f"unknown prune variant {variant!r}; choose from {VARIANTS}")
    c.criterion = "content_aware"
    c.n_sample, c.noise_prob, c.noise_mode = 400, 0.05, "random"
    c.mask = "face_parser"
    c.surgery = "as_released"
    c.discriminator = "teacher"
    c.student_init = "sliced"
    c.ratio, c.batch_size = (0.9, 8) if variant == "released" else (0.7, 10)
    return c
