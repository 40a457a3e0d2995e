"""Interpolation job: morph between seeds or projected w files, one row per model.

    python -m gancomp_jax.main --config experiments/interpolate.py --workdir OUT \
        --config.checkpoints=TEACHER,STUDENT --config.seeds=1,2,3 --config.frames=8 --config.space=z
    python -m gancomp_jax.main --config experiments/interpolate.py --workdir OUT \
        --config.checkpoints=TEACHER --config.projected_w=a/projected_w.npz,b/projected_w.npz

Writes ``strip.png`` (one row per model, frames left to right), ``morph.gif`` (every frame with
the models side by side; ``video='mp4'`` writes ``morph.mp4`` when imageio-ffmpeg is installed,
``'none'`` neither) and ``interpolate.json`` (models, keyframes, frame count). Semantics in
:mod:`gancomp_jax.editing.interpolate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.editing import outputs
from gancomp_jax.editing.interpolate import SPACES, render_morph
from gancomp_jax.editing.latents import load_projected_w
from gancomp_jax.models.generator import NOISE_MODES, Generator
from gancomp_jax.utils.images import save_png
from gancomp_jax.utils.ranges import parse_seeds

TOOL = "interpolate"


def split_list(spec: str) -> list[str]:
    return [s.strip() for s in str(spec).split(",") if s.strip()]


def morph_rows(models: list[tuple[str, object]], *, seeds=None, w_files=None, frames=8, space="w",
               truncation_psi=1.0, noise_mode="const") -> list[np.ndarray]:
    """``[F, R, R, C]`` frames per model (``models``: ``(name, Network)`` pairs), same latents for all."""
    rows = []
    for name, net in models:
        cfg = net.config
        ws = None
        if w_files:
            ws = np.concatenate([load_projected_w(f, cfg.num_ws, cfg.w_dim) for f in w_files])
        rows.append(render_morph(Generator(cfg), jax.tree.map(jnp.asarray, net.variables), seeds=seeds, ws=ws,
                                 frames=frames, space=space, truncation_psi=truncation_psi, noise_mode=noise_mode))
    shapes = {r.shape[1:] for r in rows}
    if len(shapes) > 1:
        raise ValueError(f"the models make images of different shapes {sorted(shapes)}; cannot show them side by side")
    return rows


def write_morph(out: Path, rows: list[np.ndarray], video: str = "gif", fps: float = 10.0) -> list[Path]:
    """``strip.png`` (rows = models) and ``morph.<video>`` (frames, models side by side)."""
    f, h, w, c = rows[0].shape
    strip = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    save_png(out / "strip.png", strip)
    written = [out / "strip.png"]
    if video != "none":
        frames = [np.concatenate([r[i] for r in rows], axis=1) for i in range(f)]
        written.append(outputs.write_animation(out / f"morph.{video}", frames, fps=fps))
    return written


def run(config, workdir: str) -> Path:
    from gancomp_jax.jobs.project import load_generator

    paths = split_list(config.checkpoints)
    if not paths:
        raise ValueError("config.checkpoints is required: one model or several, comma-separated")
    if config.space not in SPACES:
        raise ValueError(f"config.space must be one of {SPACES}, got {config.space!r}")
    if config.noise_mode not in NOISE_MODES:
        raise ValueError(f"config.noise_mode must be one of {NOISE_MODES}, got {config.noise_mode!r}")
    outputs.check_video_format(config.video)
    w_files = split_list(config.projected_w)
    seeds = None if w_files else parse_seeds(config.seeds)
    names = split_list(config.names) or [Path(p).name for p in paths]
    if len(names) != len(paths):
        raise ValueError(f"config.names has {len(names)} entries for {len(paths)} checkpoints")
    models = [(n, load_generator(p, config.network)[1]) for n, p in zip(names, paths)]
    out = Path(workdir)
    if out.exists() and any(out.iterdir()) and not outputs.is_ours(out, TOOL):
        raise FileExistsError(f"output folder {out} already holds files that are not an interpolate output of "
                              f"gancomp_jax; choose an empty or new folder")
    rows = morph_rows(models, seeds=seeds, w_files=w_files, frames=int(config.frames), space=config.space,
                      truncation_psi=float(config.truncation_psi), noise_mode=config.noise_mode)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_marker(out, TOOL, complete=False)
    written = write_morph(out, rows, config.video, float(config.fps))
    info = {"models": dict(zip(names, paths)), "seeds": seeds, "projected_w": w_files, "space": config.space,
            "frames_per_segment": int(config.frames), "num_frames": int(rows[0].shape[0]),
            "truncation_psi": float(config.truncation_psi), "noise_mode": config.noise_mode}
    (out / "interpolate.json").write_text(json.dumps(info, indent=2))
    outputs.write_marker(out, TOOL, complete=True)
    print(f"wrote {', '.join(p.name for p in written)} ({rows[0].shape[0]} frames x {len(rows)} model(s)) to {out}")
    return out
