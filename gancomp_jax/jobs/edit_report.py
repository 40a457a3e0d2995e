"""Editing report (CAGC's editing comparison): does a student still edit like its teacher?

    python -m gancomp_jax.main --config experiments/edit_report.py --workdir OUT \
        --config.teacher=T --config.students=S1,S2 --config.targets=FOLDER
    python -m gancomp_jax.main --config experiments/edit_report.py:digits --workdir OUT \
        --config.students=runs/quickstart/prune/model,runs/quickstart/distil_nickel_dime/model

For the teacher and every student, on the same inputs:

1. **projection**: every image of ``targets`` (a folder; the ``digits`` variant writes
   ``digits_targets`` real images of the embedded digits data set into ``OUT/targets``) is
   projected with the ``project`` job's algorithm and settings (``OUT/project/<model>/<image>/``,
   resumable); mean PSNR (dB) and, when ``vgg16`` is given, mean LPIPS v0.1 of the projections,
   and seconds per projection. With FFHQ-like targets (Helen-Set55) this is CAGC's protocol
   (CAGC optimises W+ with LBFGS and an MSE + LPIPS loss; set ``space='w_plus'``,
   ``loss='lpips'`` for the closest match with this projector);
2. **style mixing**: the same grid (``row_seeds`` × ``col_seeds``, ``col_styles``) with each model
   (``OUT/style_mixing/<model>.png``);
3. **morph**: the same seeds interpolated with every model, one row each (``OUT/morph.png``,
   ``OUT/morph.gif``).

``OUT/projections.png`` shows the first ``show_targets`` targets (top row) and each model's
projections below; ``report.md`` and ``report.json`` hold the table and point at the images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from gancomp_jax.editing import outputs
from gancomp_jax.editing.style_mixing import check_styles, mixing_grid, style_mix
from gancomp_jax.jobs import project as pj
from gancomp_jax.jobs.interpolate import morph_rows, split_list, write_morph
from gancomp_jax.models.generator import Generator
from gancomp_jax.utils.images import save_png
from gancomp_jax.utils.ranges import parse_seeds

TOOL = "edit_report"


def write_digits_targets(folder: Path, count: int, resolution: int) -> list[Path]:
    """The first ``count`` images of the embedded digits data set as PNGs (idempotent)."""
    from gancomp_jax.data.digits import DigitsSource

    if count < 1:
        raise ValueError(f"digits_targets must be >= 1, got {count}")
    src = DigitsSource(resolution)
    if count > len(src):
        raise ValueError(f"digits_targets={count} but the digits data set has {len(src)} images")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"digit{i:04d}.png"
        if not p.exists():
            save_png(p, np.asarray(src[i]["image"], np.uint8))
        paths.append(p)
    return paths


def model_names(config, paths: list[str]) -> list[str]:
    names = split_list(config.names)
    if not names:
        names = ["teacher"] + [f"student{i + 1}" if len(paths) > 2 else "student" for i in range(len(paths) - 1)]
    if len(names) != len(paths):
        raise ValueError(f"config.names has {len(names)} entries for {len(paths)} models (teacher + students)")
    if len(set(names)) != len(names):
        raise ValueError(f"config.names must be distinct, got {names}")
    return names


def project_settings(config, checkpoint: str, targets: str):
    """A ``project`` job config with this report's projection settings for one model."""
    import ml_collections

    c = ml_collections.ConfigDict()
    for k in ("num_steps", "w_avg_samples", "initial_learning_rate", "initial_noise_factor", "lr_rampdown_length",
              "lr_rampup_length", "noise_ramp_length", "regularize_noise_weight", "seed", "space", "loss",
              "vgg16", "lpips_lin", "render_noise", "network", "progress"):
        c[k] = config[k]
    c.checkpoint, c.target, c.targets = checkpoint, "", targets
    c.video, c.video_every = "none", 10
    return c


def run(config, workdir: str) -> dict[str, Any]:
    paths = [config.teacher] + split_list(config.students)
    if not config.teacher:
        raise ValueError("config.teacher is required (a model directory / .pkl / .pt)")
    names = model_names(config, paths)
    out = Path(workdir)
    if bool(config.targets) == bool(config.digits_targets):
        raise ValueError("set exactly one of config.targets (a folder of images) or config.digits_targets (N)")
    row_seeds, col_seeds = parse_seeds(config.row_seeds), parse_seeds(config.col_seeds)
    styles = parse_seeds(config.col_styles)
    morph_seeds = parse_seeds(config.morph_seeds)
    outputs.check_video_format(config.video)
    # Everything that can fail on the inputs fails here, before any output.
    projectors = []
    for name, path in zip(names, paths):
        _, proj = pj.make_projector(project_settings(config, path, config.targets or "digits"))
        check_styles(styles, proj.cfg.num_ws)
        projectors.append((name, path, proj))
    res = {p.cfg.img_resolution for _, _, p in projectors}
    if len(res) > 1:
        raise ValueError(f"teacher and students make images of different resolutions {sorted(res)}")
    resolution = res.pop()
    if config.targets:
        from gancomp_jax.editing import targets as tg

        for f in tg.list_targets(config.targets):
            tg.open_target(f, projectors[0][2].cfg.img_channels)
    settings = {"models": dict(zip(names, [str(Path(p).resolve()) for p in paths])),
                **{k: config[k] for k in ("targets", "digits_targets", "num_steps", "w_avg_samples", "space",
                                          "loss", "seed", "row_seeds", "col_seeds", "col_styles", "morph_seeds",
                                          "frames", "truncation_psi")}}
    outputs.claim_folder(out, TOOL, settings)
    targets_dir = Path(config.targets) if config.targets else out / "targets"
    if config.digits_targets:
        write_digits_targets(targets_dir, int(config.digits_targets), resolution)

    rows: list[dict[str, Any]] = []
    for name, path, proj in projectors:
        pc = project_settings(config, path, str(targets_dir))
        summary = pj.run_batch(pc, proj, name, out / "project" / name,
                               dict(video="none", video_every=10, progress=bool(config.progress)))
        nparams = int(sum(np.size(x) for x in jax.tree.leaves(proj.variables["params"])))
        rows.append({"model": name, "path": path, "params": nparams, "targets": summary["count"],
                     "mean_psnr": summary["mean_psnr"], "mean_lpips": summary["mean_lpips"],
                     "mean_loss": summary["mean_loss"], "seconds_per_projection": summary["median_seconds"],
                     "seconds_first_projection_with_compilation": summary["targets"][min(summary["targets"])]["seconds"]})

    # projections side by side
    stems = sorted(p.name for p in (out / "project" / names[0]).iterdir() if p.is_dir())[: int(config.show_targets)]
    grid_rows = [np.concatenate([np.asarray(Image.open(out / "project" / names[0] / s / "target.png")) for s in stems], 1)]
    for name in names:
        grid_rows.append(np.concatenate([np.asarray(Image.open(out / "project" / name / s / "proj.png"))
                                         for s in stems], 1))
    save_png(out / "projections.png", np.concatenate(grid_rows, 0))

    # style mixing, same grid per model
    (out / "style_mixing").mkdir(exist_ok=True)
    for name, _, proj in projectors:
        images = style_mix(proj.G, proj.variables, row_seeds, col_seeds, styles, float(config.truncation_psi),
                           "const")
        save_png(out / "style_mixing" / f"{name}.png", mixing_grid(images, row_seeds, col_seeds))

    # morph, same seeds per model
    models = [(name, _net_of(proj)) for name, _, proj in projectors]
    mrows = morph_rows(models, seeds=morph_seeds, frames=int(config.frames), space=config.morph_space,
                       truncation_psi=float(config.truncation_psi))
    (out / "morph").mkdir(exist_ok=True)
    write_morph(out / "morph", mrows, config.video)

    report = {"settings": settings, "models": rows,
              "lpips_note": None if rows[0]["mean_lpips"] is not None else
              "LPIPS not computed: no VGG16 weights given (config.vgg16=vgg16-397923af.pth)"}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "report.md").write_text(render_markdown(report, names, config))
    outputs.write_marker(out, TOOL, settings=settings, complete=True)
    print(format_table(rows))
    print(f"report: {out / 'report.md'}")
    return report


def _net_of(proj: pj.Projector):
    from gancomp_jax import checkpoints

    return checkpoints.Network("generator", proj.cfg, proj.variables)


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | params | targets | mean PSNR (dB) ↑ | mean LPIPS ↓ | s / projection (median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lp = "n/a" if r["mean_lpips"] is None else f"{r['mean_lpips']:.4f}"
        lines.append(f"| {r['model']} | {r['params']:,} | {r['targets']} | {r['mean_psnr']:.2f} | {lp} | "
                     f"{r['seconds_per_projection']:.1f} |")
    return "\n".join(lines)


def render_markdown(report: dict[str, Any], names: list[str], config) -> str:
    s = report["settings"]
    md = [f"# Editing report: {names[0]} vs {', '.join(names[1:]) or '(no students)'}", "",
          "## Projection", "",
          f"Targets: {s['targets'] or str(s['digits_targets']) + ' real images of the embedded digits data'}; "
          f"{s['num_steps']} steps, space `{s['space']}`, loss `{s['loss']}`, {s['w_avg_samples']} w_avg samples "
          f"(NVlabs projector algorithm). PSNR of `proj.png` against `target.png` (uint8, peak 255). Seconds: "
          f"median over targets on this machine (the first projection of each model also compiles the step).", "",
          format_table(report["models"]), ""]
    if report.get("lpips_note"):
        md += [report["lpips_note"], ""]
    md += ["Top row: targets; then one row per model (" + ", ".join(names) + ").", "",
           "![projections](projections.png)", "",
           "## Style mixing", "",
           f"Rows {s['row_seeds']} take styles {s['col_styles']} from columns {s['col_seeds']} "
           f"(truncation ψ = {s['truncation_psi']}, const noise).", ""]
    for n in names:
        md += [f"**{n}**", "", f"![style mixing {n}](style_mixing/{n}.png)", ""]
    md += ["## Morph", "", f"Seeds {s['morph_seeds']}, {s['frames']} frames per segment, one row per model "
           f"({', '.join(names)}).", "", "![morph](morph/strip.png)", ""]
    return "\n".join(md)
