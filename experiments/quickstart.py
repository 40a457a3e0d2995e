"""Quickstart: compress a digits StyleGAN2 teacher end to end — prune, distil, evaluate (CPU).

    python -m gancomp_jax.main --config experiments/quickstart.py --workdir runs/quickstart

Starts from the small teacher shipped with the package (trained on the embedded digits by the
``train_teacher`` stage; add that stage to ``config.stages`` to retrain it, ~10 min), prunes it
70 % with the content-aware criterion, distils the pruned student with NICKEL & DiME and with
DGL-GAN, and writes a report comparing teacher, pruned and distilled students (MACs,
compression rate, images/s, fid_digits, class coverage, grids, plot). Each stage
works in runs/quickstart/<stage>/; re-running resumes, and a finished stage whose settings
changed is refused with the changed keys. Any setting can be overridden, e.g.
``--config.prune.ratio=0.5`` or ``--config.teacher.total_kimg=10``.
"""

import ml_collections

import importlib.util
from pathlib import Path

from gancomp_jax.jobs.prune import default_config as prune_config
from gancomp_jax.train.config import default_train_config


def _experiment(name: str, variant: str):
    """``get_config(variant)`` of another experiment file beside this one."""
    spec = importlib.util.spec_from_file_location(f"_quickstart_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def get_config():
    config = ml_collections.ConfigDict()
    config.job = "quickstart"
    config.stages = "prune,distil_nickel_dime,distil_dgl_gan,evaluate"
    config.teacher_model = ""        # '': the shipped digits teacher (gancomp_jax/assets/digits_teacher)

    # train_teacher (optional): how the shipped teacher was made.
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

    # prune: content-aware (CAGC), no content mask (digits have no faces), 70 % of channels removed.
    p = prune_config()
    p.criterion = "content_aware"
    p.mask = "none"
    p.ratio = 0.7
    p.n_sample = 64
    p.batch_size = 16
    p.grid_seeds = "0-7"
    config.prune = p

    # distil: each method's digits variant (teacher and pruned student are filled in by the stages).
    config.nickel_dime = _experiment("nickel_dime", "digits")
    config.dgl_gan = _experiment("dgl_gan", "digits")
    # Budgets: the same 20 kimg for both students, sized for ~15 min in all on 2 idle CPU cores
    # (README states the measured time; the variants' own defaults train longer).
    config.nickel_dime.total_kimg = 20.0
    config.dgl_gan.method.stage1_kimg = 4.0
    config.dgl_gan.method.stage2_kimg = 16.0

    # evaluate: the report (teacher vs pruned vs distilled): MACs, compression, images/s,
    # fid_digits and class coverage from the project's digits classifier (not a network the
    # students were distilled with), grid and quality-vs-MACs plot.
    e = ml_collections.ConfigDict()
    e.metrics = "fid_digits"
    e.data = default_train_config().data
    e.num_gen = 2000
    e.seeds = "0-7"
    e.batch_size = 64
    e.speed_batch = 16
    e.seed = 0
    e.progress = True
    config.evaluate = e
    return config
