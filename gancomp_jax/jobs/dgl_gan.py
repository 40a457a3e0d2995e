"""DGL-GAN job: stage 1 (narrow StyleGAN2) in ``WORKDIR/stage1``, then stage 2 (teacher-D
guidance, starting from stage 1's networks with fresh optimiser states) in ``WORKDIR/stage2``.

Each stage is an ordinary training run (exact resume, logs, exports); re-running the job
resumes the unfinished stage. Returns ``{'stage1': dir, 'stage2': dir, 'model': stage2/model}``.

``WORKDIR`` may be ``gs://bucket/prefix`` (each stage is a Cloud Storage run, see
train/remote_run.py). Stage 2 reads stage 1's networks from a local folder: its committed
``stage1/model`` (with ``model.json``) is copied to ``GANCOMP_JAX_CACHE`` (default
``~/.cache/gancomp_jax``) ``/gcs/<bucket>/<prefix>/stage1_model`` first, completed by a rename.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import ml_collections


def stage_config(config, stage: int, workdir: Path) -> ml_collections.ConfigDict:
    """The training config of one stage (``job='train'``, ``method.stage``, its kimg)."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.job = "train"
    m = c.method
    kimg = float(m.stage1_kimg if stage == 1 else m.stage2_kimg)
    del m["stage1_kimg"], m["stage2_kimg"]
    m.stage = stage
    if stage == 2:
        m.stage1 = str(workdir / "stage1")
    c.total_kimg = kimg
    c.total_steps = 0
    return c


def local_copy_of_model(url: str) -> Path:
    """A local copy of the committed model folder ``url`` (``gs://``), replaced as a whole."""
    from gancomp_jax.io import cloud_storage as gcs

    files = gcs.list_files(url)
    if "model.json" not in files:
        raise FileNotFoundError(f"{url} holds no complete model (no model.json); re-run the job to finish stage 1")
    bucket, prefix = gcs.split(url)
    root = Path(os.environ.get("GANCOMP_JAX_CACHE") or Path.home() / ".cache" / "gancomp_jax")
    target = root / "gcs" / bucket / (prefix.rstrip("/").removesuffix("/model") + "_model")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    fs = gcs.filesystem()
    try:
        for rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(gcs.join(url, rel), str(tmp / rel))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def run(config, workdir: str):
    from gancomp_jax.train.trainer import train

    if float(config.method.stage1_kimg) <= 0 or float(config.method.stage2_kimg) <= 0:
        raise ValueError("config.method.stage1_kimg and stage2_kimg must be positive")
    if str(workdir).startswith("gs://"):
        url = str(workdir).rstrip("/")
        train(stage_config(config, 1, Path(".")), f"{url}/stage1")
        c2 = stage_config(config, 2, Path("."))
        c2.method.stage1 = str(local_copy_of_model(f"{url}/stage1/model"))
        train(c2, f"{url}/stage2")
        return {"stage1": f"{url}/stage1", "stage2": f"{url}/stage2", "model": f"{url}/stage2/model"}
    root = Path(workdir)
    for stage in (1, 2):
        train(stage_config(config, stage, root), str(root / f"stage{stage}"))
    return {"stage1": str(root / "stage1"), "stage2": str(root / "stage2"), "model": str(root / "stage2" / "model")}
