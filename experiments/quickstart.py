"""Quickstart: train a small StyleGAN2 teacher on the embedded digits dataset (CPU, ~11 min).

    python -m gancomp_jax.main --config experiments/quickstart.py --workdir runs/quickstart

Writes runs/quickstart/teacher_grid.png (samples of the trained teacher), the teacher model in
runs/quickstart/train_teacher/model, and TensorBoard logs in runs/quickstart/train_teacher/tb.
Stages run in order (``config.stages``); later issues add prune → distil → evaluate. Re-running
resumes. Every teacher setting can be overridden, e.g. ``--config.teacher.total_kimg=10``.
"""

import ml_collections

from gancomp_jax.train.config import default_train_config


def get_config():
    config = ml_collections.ConfigDict()
    config.job = "quickstart"
    config.stages = "train_teacher"

    t = default_train_config()
    # small32: 32x32, widths 64 (4-16 px) and 32 (32 px), 2 mapping layers, z/w 64, batch 16,
    # lr 0.0025, R1 gamma 1, no path-length regularisation or style mixing (like NVlabs' cifar).
    t.model.preset = "small32"
    t.data.source = "digits"         # embedded: scikit-learn's digits, tinted per class, 32x32 RGB
    t.total_kimg = 60.0              # ~10 min on 2 CPU cores (~100 img/s)
    t.log_every_steps = 100
    t.checkpoint_every_steps = 500
    t.sample_every_steps = 500
    t.grid_rows, t.grid_cols = 4, 8
    config.teacher = t
    return config
