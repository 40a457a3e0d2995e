"""GAN Slimming job: sparsity training → ``gan_slimming`` pruning → fine-tuning, chained.

* ``WORKDIR/stage1``: training run of method ``gan_slimming`` with ``sparse_loss=True``; the
  full-width student starts as the teacher's generator (``method.teacher_g_name``) and D_S as
  the teacher's D; ``method.stage1_kimg``.
* ``WORKDIR/stage2``: the prune job on ``stage1/model`` (its ``G_ema``) with ``config.prune``
  (criterion ``gan_slimming``, ratio 0.7, 400 samples in batches of 8 as released); the pruned
  model keeps stage 1's D.
* ``WORKDIR/stage3``: training run with ``sparse_loss=False`` from ``stage2/model`` (``G`` and
  its D: ``d_student='pruned'``); ``method.stage3_kimg``. Its ``model/`` is the result.

Re-running resumes the unfinished stage (a finished prune stage is not redone). Returns
``{'stage1', 'stage2', 'stage3', 'model'}``.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections


def stage_config(config, stage: int, workdir: Path) -> ml_collections.ConfigDict:
    """The training config of stage 1 or 3 (``job='train'``)."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.job = "train"
    del c["prune"]
    m = c.method
    kimg = float(m.stage1_kimg if stage == 1 else m.stage3_kimg)
    del m["stage1_kimg"], m["stage3_kimg"]
    if stage == 1:
        m.sparse_loss = True
        m.student = m.teacher
        m.student_g_name = m.teacher_g_name
        m.d_student = "teacher"
    else:
        m.sparse_loss = False
        m.student = str(workdir / "stage2" / "model")
        m.student_g_name = "G"
        m.d_student = "pruned"
    c.total_kimg = kimg
    c.total_steps = 0
    return c


def prune_config(config, workdir: Path) -> ml_collections.ConfigDict:
    from gancomp_jax.jobs.prune import default_config
    c = default_config()
    for k, v in config.prune.items():
        c[k] = v
    c.teacher = str(workdir / "stage1" / "model")
    c.discriminator = "teacher"     # keep stage 1's D
    c.overwrite = True              # an interrupted prune stage is redone
    return c


def run(config, workdir: str):
    from gancomp_jax.jobs import prune as prune_job
    from gancomp_jax.train.trainer import train

    root = Path(workdir)
    m = config.method
    if not m.teacher:
        raise ValueError("config.method.teacher is required (model directory, .pkl or .pt with G_ema and D)")
    if float(m.stage1_kimg) <= 0 or float(m.stage3_kimg) <= 0:
        raise ValueError("config.method.stage1_kimg and stage3_kimg must be positive")
    if config.prune.get("criterion", "gan_slimming") != "gan_slimming":
        raise ValueError(f"config.prune.criterion must be 'gan_slimming', got {config.prune.criterion!r}")
    train(stage_config(config, 1, root), str(root / "stage1"))
    if not (root / "stage2" / "model" / "model.json").is_file():
        prune_job.run(prune_config(config, root), str(root / "stage2"))
    train(stage_config(config, 3, root), str(root / "stage3"))
    return {"stage1": str(root / "stage1"), "stage2": str(root / "stage2"), "stage3": str(root / "stage3"),
            "model": str(root / "stage3" / "model")}
