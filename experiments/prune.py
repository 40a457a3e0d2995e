"""Prune a teacher generator into a narrower student (CAGC, NICKEL & DiME, DGL-GAN widths).

    python -m gancomp_jax.main --config experiments/prune.py --workdir OUT \
        --config.teacher=ffhq-res256-mirror-paper256-noaug.pkl \
        --config.criterion=content_aware --config.ratio=0.7

Writes OUT/model (G, G_ema = student, D), OUT/scores.npz, OUT/grid.png and OUT/report.md.
Set exactly one width rule: ratio, channel_multiplier or target_reduction. Every field is
documented in gancomp_jax/jobs/prune.py (default_config).
"""

from gancomp_jax.jobs.prune import default_config


def get_config():
    return default_config()
