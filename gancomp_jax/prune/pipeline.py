"""Teacher networks → pruned student networks (+ scores and the ``pruning`` metadata).

:func:`prune` validates everything (options, teacher, widths, content mask) before it scores,
so bad input fails before any work or any file is written; writing is the job's business
(:mod:`gancomp_jax.jobs.prune`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from gancomp_jax.checkpoints import KINDS, Network, pick_generator
from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig, block_resolutions
from gancomp_jax.prune import criteria as crit
from gancomp_jax.prune.masks import get_mask_fn
from gancomp_jax.prune.surgery import select_kept, slice_generator
from gancomp_jax.prune.widths import (MACS_KEYS, check_multiplier, check_ratio, default_macs_fn,
                                      discriminator_widths, layer_names, parse_overrides, ratio_for_reduction,
                                      student_widths)

SURGERIES = ("exact", "as_released")
DISCRIMINATORS = ("teacher", "narrow", "fresh")
STUDENT_INITS = ("sliced", "scratch")


@dataclasses.dataclass
class PruneOptions:
    """How to prune (see ``experiments/prune.py`` for the meaning of every field)."""

    criterion: str = "content_aware"
    ratio: float | None = None
    channel_multiplier: int | None = None
    target_reduction: float | None = None
    macs_key: str = "macs"
    overrides: str | Mapping[str, int] | None = None
    surgery: str = "exact"
    discriminator: str = "teacher"
    student_init: str = "sliced"
    n_sample: int = 400
    batch_size: int = 10
    noise_prob: float = 0.05
    noise_mode: str = "random"
    mask: Any = "none"
    mask_weights: str = ""
    l1_weights: str = "effective"
    seed: int = 0
    force_fp32: bool = True
    progress: bool = True
    # DCP-GAN criterion ('dcp'): edit strength α, number of PCA directions, PCA latents, and the
    # paper's stop-gradient on the perturbed image (the released code lets it flow).
    dcp_edit_strength: float = 5.0
    dcp_n_direction: int = 10
    dcp_n_pca: int = 10_000
    dcp_stop_perturbed_grad: bool = False
    # resume.ScoreAccumulator (or None): sampling criteria seal their running sums per batch
    score_accumulator: Any = None


@dataclasses.dataclass
class PruneResult:
    networks: dict[str, Network]      # G, G_ema (the student) and D
    scores: dict[str, np.ndarray]     # per layer, float64 [C_teacher]
    kept: dict[str, np.ndarray] | None
    metadata: dict[str, Any]          # the model.json ``pruning`` entry
    teacher: Network                  # the teacher generator used


def validate_options(o: PruneOptions) -> None:
    """Raises ValueError naming the first bad option."""
    crit.get_criterion(o.criterion)
    rules = {k: v for k, v in (("ratio", o.ratio), ("channel_multiplier", o.channel_multiplier),
                               ("target_reduction", o.target_reduction)) if v is not None}
    if len(rules) != 1:
        raise ValueError("set exactly one width rule: ratio (e.g. 0.7), channel_multiplier (e.g. 2) or "
                         f"target_reduction (e.g. 0.9573); got {rules or 'none'}")
    if o.ratio is not None:
        check_ratio(o.ratio)
    if o.channel_multiplier is not None:
        check_multiplier(o.channel_multiplier)
    if o.target_reduction is not None and not 0 < float(o.target_reduction) < 1:
        raise ValueError(f"target_reduction must be in (0, 1), got {o.target_reduction}")
    parse_overrides(o.overrides)
    for name, value, allowed in (("macs_key", o.macs_key, MACS_KEYS), ("surgery", o.surgery, SURGERIES),
                                 ("discriminator", o.discriminator, DISCRIMINATORS),
                                 ("student_init", o.student_init, STUDENT_INITS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    crit.check_inputs(o.criterion, _scoring_inputs(o, None, None, None))


def _scoring_inputs(o: PruneOptions, cfg, variables, mask_fn) -> crit.ScoringInputs:
    inputs = crit.ScoringInputs(cfg, variables, n_sample=int(o.n_sample), batch_size=int(o.batch_size),
                                noise_prob=float(o.noise_prob), mask_fn=mask_fn, noise_mode=o.noise_mode,
                                l1_weights=o.l1_weights, seed=int(o.seed), progress=bool(o.progress))
    # criterion-specific settings ride along as attributes (read by gancomp_jax.prune.dcp)
    inputs.dcp_edit_strength = float(o.dcp_edit_strength)
    inputs.dcp_n_direction = int(o.dcp_n_direction)
    inputs.dcp_n_pca = int(o.dcp_n_pca)
    inputs.dcp_stop_perturbed_grad = bool(o.dcp_stop_perturbed_grad)
    inputs.accumulator = o.score_accumulator
    return inputs


def plan_widths(cfg: GeneratorConfig, o: PruneOptions, macs_fn=None) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Student widths and how they were chosen (``{'ratio': r, 'achieved_reduction': ...}``)."""
    info: dict[str, Any] = {}
    ratio = o.ratio
    if o.target_reduction is not None:
        ratio, achieved = ratio_for_reduction(cfg, o.target_reduction, macs_fn or default_macs_fn(o.macs_key),
                                              o.overrides)
        info.update(ratio=ratio, target_reduction=float(o.target_reduction), achieved_reduction=achieved,
                    macs_convention=o.macs_key)
    elif ratio is not None:
        info["ratio"] = float(ratio)
    else:
        info["channel_multiplier"] = int(o.channel_multiplier)
    widths = student_widths(cfg, ratio=ratio, channel_multiplier=None if ratio is not None else o.channel_multiplier,
                            overrides=o.overrides)
    return widths, info


def discriminator_from_generator(cfg: GeneratorConfig) -> DiscriminatorConfig:
    """A NVlabs-style D whose width at each resolution is the generator's ``b{res}.conv1`` width."""
    names = layer_names(cfg)
    width = {res: cfg.channels[names.index(f"b{res}.conv1")] for res in block_resolutions(cfg.img_resolution)}
    return DiscriminatorConfig(img_resolution=cfg.img_resolution, c_dim=cfg.c_dim, img_channels=cfg.img_channels,
                               channels=tuple(width[r] for r in sorted(width, reverse=True)))


def init_network(kind: str, config, key: jax.Array) -> Network:
    """A freshly initialised network (NVlabs initialisation), initialised under one ``jax.jit``."""
    module = KINDS[kind][1](config)
    c = jax.numpy.zeros((1, config.c_dim)) if config.c_dim else None
    if kind == "generator":
        x = jax.numpy.zeros((1, config.z_dim))
        init = jax.jit(lambda k: module.init({"params": k}, x, c, noise_mode="const"))
    else:
        x = jax.numpy.zeros((1, config.img_resolution, config.img_resolution, config.img_channels))
        init = jax.jit(lambda k: module.init({"params": k}, x, c))
    return Network(kind, config, jax.tree.map(np.asarray, dict(init(key))))


def teacher_sha256(path: str | os.PathLike) -> str:
    """sha256 of a teacher file; for a model directory, of every file's relative path and bytes."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def prepare(networks: Mapping[str, Network], o: PruneOptions, macs_fn=None):
    """Checks the teacher against the options; returns ``(teacher name, teacher G, widths, info, mask_fn)``."""
    validate_options(o)
    g_name, teacher = pick_generator(networks)
    if teacher.kind != "generator":
        raise ValueError(f"network {g_name!r} is a {teacher.kind}, not a generator")
    if o.discriminator == "teacher":
        d = networks.get("D")
        if d is None or d.kind != "discriminator":
            raise ValueError(f"the teacher has no discriminator 'D' (networks: {sorted(networks)}), which "
                             "discriminator='teacher' needs; use discriminator='fresh' or 'narrow'")
    widths, info = plan_widths(teacher.config, o, macs_fn)
    mask_fn = get_mask_fn(o.mask, o.mask_weights) if o.criterion == "content_aware" else None
    return g_name, teacher, widths, info, mask_fn


def prune(networks: Mapping[str, Network], o: PruneOptions, teacher_source: str = "",
          teacher_digest: str | None = None, macs_fn=None) -> PruneResult:
    """Scores the teacher generator, slices the student and builds its D and metadata."""
    g_name, teacher, widths, info, mask_fn = prepare(networks, o, macs_fn)
    cfg = teacher.config
    score_cfg = cfg.replace(num_mixed_res=0) if o.force_fp32 else cfg
    scores = crit.compute_scores(o.criterion, _scoring_inputs(o, score_cfg, teacher.variables, mask_fn))
    key_g, key_d = jax.random.split(jax.random.fold_in(jax.random.key(int(o.seed)), 1))
    if o.student_init == "sliced":
        kept = select_kept(scores, cfg, widths)
        student = slice_generator(teacher, kept, exact=o.surgery == "exact")
    else:
        kept = None
        student = init_network("generator", cfg.replace(channels=widths), key_g)

    if o.discriminator == "teacher":
        d = networks["D"]
    else:
        d_cfg = networks["D"].config if "D" in networks else discriminator_from_generator(cfg)
        if o.discriminator == "narrow":
            d_cfg = d_cfg.replace(channels=discriminator_widths(
                d_cfg, ratio=info.get("ratio"), channel_multiplier=info.get("channel_multiplier")))
        d = init_network("discriminator", d_cfg, key_d)

    names = layer_names(cfg)
    meta = {
        "criterion": o.criterion,
        **info,
        "overrides": parse_overrides(o.overrides),
        "surgery": o.surgery,
        "student_init": o.student_init,
        "discriminator": o.discriminator,
        "scoring": {"n_sample": int(o.n_sample), "batch_size": int(o.batch_size), "noise_prob": float(o.noise_prob),
                    "noise_mode": o.noise_mode, "mask": o.mask if isinstance(o.mask, str) else repr(o.mask),
                    "l1_weights": o.l1_weights, "seed": int(o.seed), "force_fp32": bool(o.force_fp32)},
        "teacher": {"source": str(teacher_source), "sha256": teacher_digest, "network": g_name},
        "layers": names,
        "teacher_channels": list(cfg.channels),
        "student_channels": list(widths),
        "kept": None if kept is None else {n: [int(i) for i in kept[n]] for n in names},
    }
    student_ema = Network(student.kind, student.config, student.variables)
    return PruneResult({"G": student, "G_ema": student_ema, "D": d}, scores, kept, meta, teacher)
