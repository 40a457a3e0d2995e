"""Prune job: teacher (model directory, NVlabs ``.pkl`` or rosinality ``.pt``) → student model.

A BigGAN teacher (model directory, run, BigGAN-PyTorch ``G.pth``) is pruned by
:mod:`gancomp_jax.jobs.prune_biggan` (criteria ``l1``/``first``; imported only for BigGAN teachers).

    python -m gancomp_jax.main --config experiments/prune.py --workdir OUT \
        --config.teacher=ffhq-res256-mirror-paper256-noaug.pkl \
        --config.criterion=content_aware --config.ratio=0.7

Writes (only once everything succeeded; bad input writes nothing):

* ``OUT/model``       — an ordinary model directory (G, G_ema = the student, D) whose
  ``model.json`` metadata holds ``pruning`` (criterion, ratio, teacher source and sha256,
  ``kept``: per NVlabs layer name the kept teacher output-channel indices, ...);
* ``OUT/scores.npz``  — the criterion's scores, one float64 array per layer name;
* ``OUT/grid.png``    — teacher (top row) vs student (bottom row) on the same seeds;
* ``OUT/report.md``   — per-layer widths teacher → student, parameters, MACs, compression rate.

:func:`run` returns ``{'model', 'scores', 'grid', 'report', 'summary'}``; :func:`quickstart_stage`
is the quickstart's ``prune`` stage.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from ml_collections import config_dict

from gancomp_jax import checkpoints
from gancomp_jax.jobs.generate import latents_for_seeds, make_generate_fn
from gancomp_jax.models.generator import Generator
from gancomp_jax.prune.pipeline import PruneOptions, prune, teacher_sha256
from gancomp_jax.prune.widths import layer_names
from gancomp_jax.utils.atomic_dir import check_output_dir, check_workdir, prepare_workdir, replace_file
from gancomp_jax.utils.images import make_grid, save_png, to_uint8
from gancomp_jax.utils.ranges import parse_seeds

#: What the job writes into its workdir (the workdir is marked as ours; a folder of other files is refused).
OUTPUT_NAMES = ("model", "scores.npz", "grid.png", "report.md")
SCORING_STATE = ".scoring_state.npz"  # running sums of a sampling criterion, sealed per batch


def default_config() -> ml_collections.ConfigDict:
    """The prune job's settings (``experiments/prune.py`` returns this)."""
    c = ml_collections.ConfigDict()
    c.job = "prune"
    c.teacher = ""                   # model directory, NVlabs .pkl or rosinality .pt (required)
    c.criterion = "content_aware"    # content_aware | l1_out | gan_slimming | random | first (BigGAN teacher: l1 | first)
    # width rule: exactly one of the three
    c.ratio = config_dict.placeholder(float)               # remove int(r*C) channels per layer (0.7: CAGC)
    c.channel_multiplier = config_dict.placeholder(int)    # divide every width of G (and D) by k (DGL-GAN)
    c.target_reduction = config_dict.placeholder(float)    # MAC reduction to aim for (e.g. 0.9573)
    c.macs_key = "macs"              # target_reduction's MAC convention: macs (executed) | macs_nominal | macs_cagc
    c.overrides = ""                 # per-layer widths, e.g. 'b4.const=512,b8.conv0=100'
    c.surgery = "exact"              # exact (ToRGB gain rescaled) | as_released (CAGC/NICKEL: not rescaled)
    c.discriminator = "teacher"      # teacher (unchanged) | narrow (same rule, fresh init) | fresh (full width)
    c.student_init = "sliced"        # sliced from the teacher | scratch (random init at the student widths)
    # scoring
    c.n_sample = 400
    c.batch_size = 10
    c.noise_prob = 0.05
    c.noise_mode = "random"          # the generator's noise while scoring (random, as released)
    c.mask = "none"                  # none | face_parser (content mask for content_aware)
    c.mask_weights = ""              # face_parser: BiSeNet 79999_iter.pth (or a converted directory)
    c.l1_weights = "effective"       # l1_out: effective (CAGC) | raw
    c.seed = 0
    c.dcp = ml_collections.ConfigDict()  # criterion 'dcp' (DCP-GAN) settings
    c.dcp.edit_strength = 5.0        # α of w + α·d (DCP-GAN; the SVS release uses 10)
    c.dcp.n_direction = 10           # PCA directions per batch
    c.dcp.n_pca = 10000              # mapped latents for the PCA
    c.dcp.stop_perturbed_grad = False  # True: the paper's stop-gradient (released code lets it flow)
    c.force_fp32 = True              # score mixed-precision teachers in float32 (False: the model's precision)
    # outputs
    c.grid_seeds = "0-7"             # teacher vs student grid (noise_mode const, psi 1)
    c.overwrite = False
    c.progress = True
    c.svs = False                    # Singular Value Scaling of the student's synthesis weights (gancomp_jax/prune/svs.py)
    return c


def options_from_config(config) -> PruneOptions:
    return PruneOptions(
        criterion=config.criterion, ratio=config.ratio, channel_multiplier=config.channel_multiplier,
        target_reduction=config.target_reduction, macs_key=config.macs_key, overrides=config.overrides or None,
        surgery=config.surgery,
        discriminator=config.discriminator, student_init=config.student_init, n_sample=config.n_sample,
        batch_size=config.batch_size, noise_prob=config.noise_prob, noise_mode=config.noise_mode,
        mask=config.mask, mask_weights=config.mask_weights, l1_weights=config.l1_weights, seed=config.seed,
        force_fp32=config.force_fp32, progress=config.progress,
        dcp_edit_strength=config.dcp.edit_strength, dcp_n_direction=config.dcp.n_direction,
        dcp_n_pca=config.dcp.n_pca, dcp_stop_perturbed_grad=config.dcp.stop_perturbed_grad)


# --------------------------------------------------------------------------- accounting


def count_params(net) -> dict[str, int]:
    """Trainable parameters of a generator: mapping, synthesis, total."""
    p = net.variables["params"]
    size = lambda t: int(sum(np.size(a) for a in jax.tree.leaves(t)))
    out = {"mapping": size(p.get("mapping", {})), "synthesis": size(p.get("synthesis", {}))}
    out["total"] = size(p)
    return out


def _macs(cfg) -> tuple[int | None, int | None]:
    """(executed MACs, MACs under CAGC's convention) of one image, or Nones without the cost module."""
    try:
        from gancomp_jax.metrics.cost import generator_cost
    except ImportError:
        return None, None
    cost = generator_cost(cfg)
    return int(cost["macs"]), int(cost["macs_cagc"]) if "macs_cagc" in cost else None


# --------------------------------------------------------------------------- outputs


def comparison_grid(teacher, student, seeds: list[int]) -> np.ndarray:
    """uint8 grid: teacher images on the top row, the student's on the bottom row (same z, const noise)."""
    z = latents_for_seeds(seeds, teacher.config.z_dim)
    c = None
    if teacher.config.c_dim > 0:
        c = np.zeros((len(seeds), teacher.config.c_dim), np.float32)
        c[:, 0] = 1
    rows = []
    for net in (teacher, student):
        cfg = net.config.replace(num_mixed_res=0)
        gen = make_generate_fn(Generator(cfg), 1.0, None, "const")
        rows.append(to_uint8(np.asarray(gen(jax.tree.map(jnp.asarray, net.variables), z, c, jax.random.key(0)))))
    return make_grid(np.concatenate(rows), cols=len(seeds))


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fmt(n) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e9:.3f} G" if n >= 1e9 else f"{n / 1e6:.3f} M" if n >= 1e6 else f"{n:,}"


def render_report(meta: dict, teacher_params, student_params, teacher_macs, student_macs, grid_name: str,
                  seconds: float) -> tuple[str, list[str]]:
    """``(report.md text, summary lines)``."""
    rule = (f"ratio {meta['ratio']}" if "ratio" in meta else f"channel_multiplier {meta.get('channel_multiplier')}")
    if "target_reduction" in meta:
        rule += f" (target MAC reduction {meta['target_reduction']:.4f}, achieved {meta['achieved_reduction']:.4f})"
    summary = [
        f"criterion {meta['criterion']}, {rule}, surgery {meta['surgery']}, D {meta['discriminator']}",
        f"G params {teacher_params['total']:,} -> {student_params['total']:,} "
        f"(synthesis {teacher_params['synthesis']:,} -> {student_params['synthesis']:,})",
    ]
    if teacher_macs and student_macs:
        summary.append(f"G MACs {_fmt(teacher_macs)} -> {_fmt(student_macs)}: reduction "
                       f"{1 - student_macs / teacher_macs:.2%} (compression {teacher_macs / student_macs:.2f}x)")
    else:
        summary.append("G MACs: n/a (gancomp_jax.metrics.cost is not available)")
    lines = ["# Pruning report", "",
             f"- teacher: `{meta['teacher']['source']}` (network {meta['teacher']['network']}, "
             f"sha256 `{meta['teacher']['sha256']}`)",
             *[f"- {s}" for s in summary],
             f"- scoring: {meta['scoring']}",
             f"- scoring and surgery took {seconds:.1f} s", "",
             "| layer | teacher | student | kept |", "|---|---:|---:|---:|"]
    for name, ct, cs in zip(meta["layers"], meta["teacher_channels"], meta["student_channels"]):
        lines.append(f"| {name} | {ct} | {cs} | {cs / ct:.1%} |")
    lines += ["", "| | teacher | student |", "|---|---:|---:|",
              f"| params (mapping) | {teacher_params['mapping']:,} | {student_params['mapping']:,} |",
              f"| params (synthesis) | {teacher_params['synthesis']:,} | {student_params['synthesis']:,} |",
              f"| params (total) | {teacher_params['total']:,} | {student_params['total']:,} |",
              f"| MACs (executed) | {_fmt(teacher_macs)} | {_fmt(student_macs)} |"]
    if teacher_macs and student_macs:
        lines.append(f"| MAC reduction (compression rate) | | {1 - student_macs / teacher_macs:.2%} |")
    if meta.get("macs_cagc"):
        m = meta["macs_cagc"]
        lines += [f"| MACs (CAGC convention) | {_fmt(m['teacher'])} | {_fmt(m['student'])} |",
                  f"| MAC reduction (CAGC convention) | | {m['reduction']:.2%} |"]
    lines += ["", f"Teacher (top) vs untrained student (bottom), same seeds, const noise: ![grid]({grid_name})", ""]
    return "\n".join(lines), summary


#: model family -> module with ``run(config, out, networks, digest, seeds, output_names)``
FAMILY_BRANCHES = {"biggan": "gancomp_jax.jobs.prune_biggan"}


def _family_hint(teacher) -> str | None:
    """The teacher generator's model family read from ``model.json`` (no arrays loaded), or None
    when the teacher is not a model directory (known only after loading)."""
    from gancomp_jax.models.registry import GENERATOR_KINDS, family
    try:
        form, where = checkpoints.resolve_model(teacher)
        if form != "model_dir":
            return None
        nets = checkpoints.read_description(where)["networks"]
    except (OSError, ValueError, KeyError):
        return None  # the load reports it
    kinds = [nets[n]["kind"] for n in ("G_ema", "G") if n in nets and nets[n].get("kind") in GENERATOR_KINDS]
    kinds = kinds or [v.get("kind") for v in nets.values() if v.get("kind") in GENERATOR_KINDS]
    return family(kinds[0]) if kinds else None


def _family(networks, teacher) -> str:
    """The loaded teacher's model family; one that cannot be pruned is refused."""
    from gancomp_jax.models.registry import family
    name, net = checkpoints.pick_generator(networks)
    fam = family(net.kind)
    if fam != "stylegan2" and fam not in FAMILY_BRANCHES:
        raise ValueError(f"the teacher {teacher} ({name}: {net.kind}, family {fam}) cannot be pruned: the prune job "
                         f"supports the families stylegan2, {', '.join(FAMILY_BRANCHES)}")
    return fam


def run(config, workdir: str) -> dict[str, Any]:
    if not config.teacher:
        raise ValueError("config.teacher is required: a model directory, an NVlabs .pkl or a rosinality .pt")
    out = Path(workdir).absolute()
    model_dir = out / "model"
    # Before any work: the workdir is new, empty or ours, and model/ replaces only a model of ours
    # (never the teacher itself, e.g. --config.teacher=WORKDIR/model).
    check_workdir(out, OUTPUT_NAMES)
    check_output_dir(model_dir, (config.teacher,), bool(config.overwrite), option="--config.overwrite=True",
                     what="model directory")
    seeds = parse_seeds(config.grid_seeds)
    options = options_from_config(config)
    from gancomp_jax.prune.pipeline import validate_options
    family = _family_hint(config.teacher)  # from model.json when it has one; else known after loading
    if family == "stylegan2":
        validate_options(options)  # before the (possibly slow) teacher load
    elif family in FAMILY_BRANCHES:
        import importlib
        importlib.import_module(FAMILY_BRANCHES[family]).validate(config, str(config.teacher))
    networks = checkpoints.load_any(config.teacher)
    digest = teacher_sha256(config.teacher)
    family = _family(networks, config.teacher)
    if family in FAMILY_BRANCHES:  # another model family: its own branch, imported only now
        import importlib
        branch = importlib.import_module(FAMILY_BRANCHES[family])
        return branch.run(config, out, networks, digest, seeds, OUTPUT_NAMES)
    validate_options(options)
    t0 = time.time()
    # Sampling criteria seal their running sums after every batch in WORKDIR/.scoring_state.npz
    # (the workdir is created and marked only then); a re-run resumes; Ctrl-C returns at once.
    from gancomp_jax.prune.resume import ScoreAccumulator
    from gancomp_jax.train.interrupt import GracefulInterrupt
    acc = ScoreAccumulator(out / SCORING_STATE, {"teacher_sha256": digest, "mask": config.mask,
                                                 "mask_weights": str(config.mask_weights),
                                                 "force_fp32": bool(config.force_fp32)},
                           prepare=lambda: prepare_workdir(out, "prune", OUTPUT_NAMES))
    options.score_accumulator = acc
    stop = GracefulInterrupt()
    stop.describe = acc.describe
    stop.install()
    try:
        result = prune(networks, options, teacher_source=str(config.teacher), teacher_digest=digest)
    finally:
        stop.uninstall()
    if config.get("svs", False):
        from gancomp_jax.prune.svs import svs_network
        for name in ("G", "G_ema"):
            result.networks[name] = svs_network(result.networks[name])
        result.metadata["svs"] = {"synthesis": True, "torgb": True}
    seconds = time.time() - t0
    student = result.networks["G_ema"]
    grid = comparison_grid(result.teacher, student, seeds)
    tp, sp = count_params(result.teacher), count_params(student)
    (tm, tm_cagc), (sm, sm_cagc) = _macs(result.teacher.config), _macs(student.config)
    meta = result.metadata
    meta["params"] = {"teacher": tp, "student": sp}
    if tm and sm:
        meta["macs"] = {"teacher": tm, "student": sm, "reduction": 1 - sm / tm}
    if tm_cagc and sm_cagc:
        meta["macs_cagc"] = {"teacher": tm_cagc, "student": sm_cagc, "reduction": 1 - sm_cagc / tm_cagc}
    report, summary = render_report(meta, tp, sp, tm, sm, "grid.png", seconds)

    prepare_workdir(out, "prune", OUTPUT_NAMES)
    checkpoints.save_model(model_dir, result.networks, {"source": f"pruned from {config.teacher}", "pruning": meta},
                           overwrite=bool(config.overwrite), sources=(config.teacher,))
    scores_path, grid_path, report_path = out / "scores.npz", out / "grid.png", out / "report.md"
    _write_npz(scores_path, result.scores)
    save_png(grid_path, grid)
    replace_file(report_path, report.encode())
    acc.finish()
    logging.info("wrote %s, %s, %s, %s", model_dir, scores_path, grid_path, report_path)
    widths = " ".join(f"{ct}->{cs}" for ct, cs in zip(meta["teacher_channels"], meta["student_channels"]))
    print("pruned student: " + "; ".join(summary))
    print(f"widths ({', '.join(layer_names(result.teacher.config)[:1])}...): {widths}")
    print(f"wrote {model_dir}, {scores_path.name}, {grid_path.name}, {report_path.name}")
    return {"model": str(model_dir), "scores": str(scores_path), "grid": str(grid_path),
            "report": str(report_path), "summary": summary,
            "macs": {"teacher": tm, "student": sm}, "params": {"teacher": tp["total"], "student": sp["total"]}}


def quickstart_stage(teacher: str, stage_dir: str | os.PathLike, **overrides) -> dict[str, Any]:
    """The quickstart's ``prune`` stage: content-aware, mask none, ratio 0.7 (any field overridable).

    Prints the cost table and writes ``stage_dir/grid.png`` (teacher vs the pruned, untrained
    student); returns :func:`run`'s dict (``model``, ``grid``, ``report``, ...).
    """
    config = default_config()
    config.teacher = str(teacher)
    config.ratio = 0.7
    config.criterion = "content_aware"
    config.mask = "none"
    config.overwrite = True  # a re-run of an interrupted stage replaces partial outputs
    for k, v in overrides.items():
        setattr(config, k, v)
    result = run(config, str(stage_dir))
    print(Path(result["report"]).read_text())
    return result
