"""The prune job's BigGAN branch (:mod:`gancomp_jax.jobs.prune` dispatches here on a BigGAN teacher).

    python -m gancomp_jax.main --config experiments/prune.py --workdir OUT \
        --config.teacher=runs/bg_digits --config.criterion=l1 --config.ratio=0.5
    # DGL-GAN's uniform-width student (teacher widths / 2): --config.channel_multiplier=2

Prunes G and G_ema of a BigGAN-PyTorch teacher with :func:`gancomp_jax.prune.biggan.prune_networks`
(channel groups, which widths are prunable, the identity with the masked teacher: that module's
docstring). Criteria: ``l1`` (largest ℓ1 norms of the producing filters) and ``first`` (lowest
indices). Width rules: ``ratio`` r (each prunable group keeps ``round(C·(1−r))`` channels) or
``channel_multiplier`` k (``round(C/k)``). D is the teacher's, unchanged. Options that only exist
for StyleGAN2 (sampling criteria, ``target_reduction``, ``overrides``, ``discriminator``
narrow/fresh, ``student_init`` scratch, ``svs``, ``surgery`` as_released) are refused, naming the
option and the family.

Writes, as the StyleGAN2 branch: ``OUT/model`` (G, G_ema = the student, D; ``model.json``
metadata ``pruning`` with criterion, rule, teacher source and sha256, per group the teacher and
student widths and the kept indices), ``OUT/scores.npz`` (per group, float64 ``[C_teacher]``: the
ℓ1 scores, or for ``first`` decreasing ranks), ``OUT/grid.png`` (teacher top row, student bottom
row; seeds of ``grid_seeds``, class ``i mod n_classes`` in column ``i``, no truncation, eval mode)
and ``OUT/report.md`` (widths per group, parameters and MACs of G).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gancomp_jax import checkpoints
from gancomp_jax.convert.common import count_parameters
from gancomp_jax.models.biggan import BigGANGenerator
from gancomp_jax.models.biggan.cost import generator_macs
from gancomp_jax.prune import biggan as pb
from gancomp_jax.utils.atomic_dir import prepare_workdir, replace_file
from gancomp_jax.utils.images import make_grid, save_png, to_uint8

CRITERIA = ("l1", "first")

# StyleGAN2-only options: (config key, value that is accepted for BigGAN)
_STYLEGAN2_ONLY = (("target_reduction", None), ("overrides", ""), ("discriminator", "teacher"),
                   ("student_init", "sliced"), ("svs", False), ("surgery", "exact"))


def validate(config, where: str) -> None:
    """Raises ValueError naming the first option a BigGAN teacher cannot take."""
    if config.criterion not in CRITERIA:
        raise ValueError(f"criterion {config.criterion!r} is for StyleGAN2 teachers; the teacher {where} is a "
                         f"BigGAN generator (family biggan), which supports criterion {' or '.join(CRITERIA)}")
    for key, ok in _STYLEGAN2_ONLY:
        value = config.get(key, ok)
        if (value or None) != (ok or None):
            raise ValueError(f"config.{key}={value!r} is a StyleGAN2-only prune option; a BigGAN teacher ({where}) "
                             f"needs {key}={ok!r}")
    rules = {k: config[k] for k in ("ratio", "channel_multiplier") if config[k] is not None}
    if len(rules) != 1:
        raise ValueError("set exactly one width rule for a BigGAN teacher: ratio (e.g. 0.5) or channel_multiplier "
                         f"(the channel divisor, e.g. 2); got {rules or 'none'}")
    if config.ratio is not None and not 0.0 <= float(config.ratio) < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {config.ratio}")
    if config.channel_multiplier is not None and int(config.channel_multiplier) < 1:
        raise ValueError(f"channel_multiplier (the channel divisor) must be >= 1, got {config.channel_multiplier}")


def comparison_grid(teacher, student, seeds: list[int]) -> np.ndarray:
    """uint8 grid: teacher (top row) and student (bottom row), ``z = RandomState(seed).randn``,
    class ``i mod n_classes`` in column ``i``, eval mode."""
    cfg = teacher.config
    z = np.stack([np.random.RandomState(s).randn(cfg.z_dim) for s in seeds]).astype(np.float32)
    y = (np.arange(len(seeds)) % cfg.n_classes).astype(np.int32)
    rows = []
    for net in (teacher, student):
        G = BigGANGenerator(net.config)
        img = jax.jit(lambda v, z, y, G=G: G.apply(v, z, y))(jax.tree.map(jnp.asarray, net.variables), z, y)
        rows.append(to_uint8(np.asarray(img)))
    return make_grid(np.concatenate(rows), cols=len(seeds))


def _fmt(n: int) -> str:
    return f"{n / 1e9:.3f} G" if n >= 1e9 else f"{n / 1e6:.3f} M" if n >= 1e6 else f"{n:,}"


def render_report(meta: dict, seconds: float, grid_name: str) -> tuple[str, list[str]]:
    p, m = meta["params"], meta["macs"]
    rule = (f"ratio {meta['ratio']}" if meta.get("ratio") is not None
            else f"channel_multiplier {meta['channel_multiplier']}")
    summary = [f"BigGAN, criterion {meta['criterion']}, {rule}, D {meta['discriminator']}",
               f"G params {p['teacher']:,} -> {p['student']:,}",
               f"G MACs {_fmt(m['teacher'])} -> {_fmt(m['student'])}: reduction {m['reduction']:.2%} "
               f"(compression {m['teacher'] / m['student']:.2f}x)"]
    lines = ["# Pruning report (BigGAN)", "",
             f"- teacher: `{meta['teacher']['source']}` (network {meta['teacher']['network']}, "
             f"sha256 `{meta['teacher']['sha256']}`)", *[f"- {s}" for s in summary],
             f"- choosing channels and slicing took {seconds:.1f} s", "",
             "Groups: `res{j}` residual width j (res0: the first linear's 4×4 output), `hidden{i}` block i's "
             "conv1 width; a width feeding self-attention is not pruned.", "",
             "| group | teacher | student | kept |", "|---|---:|---:|---:|"]
    for name, ct, cs in zip(meta["layers"], meta["teacher_channels"], meta["student_channels"]):
        lines.append(f"| {name} | {ct} | {cs} | {cs / ct:.1%} |")
    lines += ["", "| | teacher | student |", "|---|---:|---:|",
              f"| G params | {p['teacher']:,} | {p['student']:,} |",
              f"| G MACs per image | {_fmt(m['teacher'])} | {_fmt(m['student'])} |",
              f"| MAC reduction (compression rate) | | {m['reduction']:.2%} |", "",
              f"Teacher (top) vs untrained student (bottom), same z and class per column: ![grid]({grid_name})", ""]
    return "\n".join(lines), summary


def run(config, out: Path, networks: dict, digest: str, seeds: list[int], output_names) -> dict[str, Any]:
    """The BigGAN branch of :func:`gancomp_jax.jobs.prune.run` (workdir and model/ already checked)."""
    from gancomp_jax.jobs.prune import _write_npz

    validate(config, str(config.teacher))
    t0 = time.time()
    divisor = None if config.channel_multiplier is None else float(config.channel_multiplier)
    ratio = 0.0 if config.ratio is None else float(config.ratio)
    student_nets, keep = pb.prune_networks(networks, ratio=ratio, divisor=divisor, criterion=config.criterion)
    ref_name = "G_ema" if "G_ema" in networks and networks["G_ema"].kind == "biggan_generator" else \
        next(n for n, v in networks.items() if v.kind == "biggan_generator")
    teacher, student = networks[ref_name], student_nets[ref_name]
    groups = pb.channel_groups(teacher.config)
    if config.criterion == "l1":
        scores = {n: pb.l1_scores(teacher.variables, g) for n, g in groups.items()}
    else:
        scores = {n: np.arange(g["width"], 0, -1, dtype=np.float64) for n, g in groups.items()}
    seconds = time.time() - t0
    grid = comparison_grid(teacher, student, seeds)
    tm, sm = generator_macs(teacher.config), generator_macs(student.config)
    names = list(groups)
    meta = {"family": "biggan", "criterion": config.criterion, "ratio": config.ratio,
            "channel_multiplier": config.channel_multiplier, "discriminator": "teacher", "student_init": "sliced",
            "teacher": {"source": str(config.teacher), "sha256": digest, "network": ref_name},
            "layers": names, "teacher_channels": [int(groups[n]["width"]) for n in names],
            "student_channels": [int(len(keep[n])) for n in names],
            "prunable": {n: bool(groups[n]["prunable"]) for n in names},
            "kept": {n: [int(i) for i in keep[n]] for n in names},
            "params": {"teacher": count_parameters(teacher.variables), "student": count_parameters(student.variables)},
            "macs": {"teacher": int(tm), "student": int(sm), "reduction": 1 - sm / tm}}
    report, summary = render_report(meta, seconds, "grid.png")

    model_dir = out / "model"
    prepare_workdir(out, "prune", output_names)
    checkpoints.save_model(model_dir, student_nets, {"source": f"pruned from {config.teacher}", "pruning": meta},
                           overwrite=bool(config.overwrite), sources=(config.teacher,))
    scores_path, grid_path, report_path = out / "scores.npz", out / "grid.png", out / "report.md"
    _write_npz(scores_path, scores)
    save_png(grid_path, grid)
    replace_file(report_path, report.encode())
    logging.info("wrote %s, %s, %s, %s", model_dir, scores_path, grid_path, report_path)
    print("pruned student: " + "; ".join(summary))
    print("widths: " + " ".join(f"{n} {ct}->{cs}" for n, ct, cs in
                                 zip(names, meta["teacher_channels"], meta["student_channels"])))
    print(f"wrote {model_dir}, {scores_path.name}, {grid_path.name}, {report_path.name}")
    return {"model": str(model_dir), "scores": str(scores_path), "grid": str(grid_path),
            "report": str(report_path), "summary": summary, "macs": {"teacher": int(tm), "student": int(sm)},
            "params": {"teacher": meta["params"]["teacher"], "student": meta["params"]["student"]}}
