"""Project job: real images → latents of a generator (NVlabs ``projector.py``), one or a folder.

    python -m gancomp_jax.main --config experiments/project.py --workdir OUT \
        --config.checkpoint=MODEL --config.target=IMG            # one image
    python -m gancomp_jax.main --config experiments/project.py --workdir OUT \
        --config.checkpoint=MODEL --config.targets=FOLDER        # every image of a folder

Writes NVlabs' files, ``target.png`` (the centre-cropped, Lanczos-resized target),
``proj.png`` (the projection rendered with the generator's stored noise, ``noise_mode='const'``),
``projected_w.npz`` (key ``w``, ``[1, num_ws, w_dim]``, loadable by ``generate
--config.projected_w``), ``proj.gif`` / ``proj.mp4`` (target | projection every
``video_every`` steps; ``video='none'`` skips it) and ``metrics.json`` (PSNR of ``proj.png``
against ``target.png`` in dB, LPIPS v0.1 when ``vgg16`` is given, the final loss and distance,
seconds). One image: into OUT. A folder: one sub-folder ``OUT/<image stem>/`` per image, each
written beside and moved into place when complete (sealed), and ``OUT/summary.json`` with the
means; re-running the same command skips finished images (resume after an interruption).

The algorithm, its defaults and every difference from NVlabs are in
:mod:`gancomp_jax.editing.projector` and :mod:`gancomp_jax.editing.perceptual`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm import tqdm

from gancomp_jax import checkpoints
from gancomp_jax.editing import outputs, perceptual, targets
from gancomp_jax.editing.projector import (RENDER_NOISE, ProjectorOptions, make_step, noise_paths, project, w_stats,
                                           with_noise)
from gancomp_jax.models.generator import Generator
from gancomp_jax.utils.images import save_png, to_uint8

TOOL = "project"


def options_from_config(config) -> ProjectorOptions:
    return ProjectorOptions(
        num_steps=int(config.num_steps), w_avg_samples=int(config.w_avg_samples),
        initial_learning_rate=float(config.initial_learning_rate),
        initial_noise_factor=float(config.initial_noise_factor),
        lr_rampdown_length=float(config.lr_rampdown_length), lr_rampup_length=float(config.lr_rampup_length),
        noise_ramp_length=float(config.noise_ramp_length),
        regularize_noise_weight=float(config.regularize_noise_weight), space=str(config.space),
        seed=int(config.seed))


def load_generator(checkpoint: str, network: str = "auto") -> tuple[str, checkpoints.Network]:
    """The generator to project into (``G_ema`` by default), from anything ``generate`` loads."""
    if not checkpoint:
        raise ValueError("config.checkpoint is required: a model directory, an NVlabs .pkl, a rosinality .pt "
                         "or a training run directory")
    nets = checkpoints.load_any(checkpoint, None if network == "auto" else [network])
    name, net = checkpoints.pick_generator(nets) if network == "auto" else (network, nets[network])
    if net.kind != "generator":
        raise ValueError(f"config.network={name!r} in {checkpoint} is a {net.kind}, not a generator")
    return name, dataclass_fp32(net)


def dataclass_fp32(net: checkpoints.Network) -> checkpoints.Network:
    """The network run in float32 (projection differentiates through it)."""
    return checkpoints.Network(net.kind, net.config.replace(num_mixed_res=0), net.variables)


class Projector:
    """Everything one job needs to project several targets into one generator."""

    def __init__(self, net: checkpoints.Network, o: ProjectorOptions, loss: str, lpips_params: Any,
                 render_noise: str = "stored"):
        o.validate()
        if render_noise not in RENDER_NOISE:
            raise ValueError(f"render_noise must be one of {RENDER_NOISE}, got {render_noise!r}")
        self.cfg = net.config
        if self.cfg.c_dim > 0:
            raise ValueError(f"projection needs an unconditional generator; this one has c_dim={self.cfg.c_dim}")
        self.G = Generator(self.cfg)
        self.variables = jax.tree.map(jnp.asarray, net.variables)
        self.o, self.loss, self.lpips_params, self.render_noise = o, loss, lpips_params, render_noise
        self.prepare, self.dist = perceptual.make_distance(loss, lpips_params)
        self._stats = None
        self._step = None
        self._synth = jax.jit(lambda v, ws: self.G.apply(v, ws, "const", method=Generator.synthesize))

    @property
    def stats(self):
        if self._stats is None:
            self._stats = w_stats(self.G, self.variables, self.cfg.z_dim, self.o.w_avg_samples)
        return self._stats

    @property
    def step(self):
        """The jitted optimisation step, compiled once for all targets."""
        if self._step is None:
            self._step = make_step(self.G, self.dist, self.o, noise_paths(self.variables))
        return self._step

    def render(self, ws: np.ndarray, noise: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """uint8 images ``[N, R, R, C]`` of ws ``[N, num_ws, w_dim]`` (stored or given noise)."""
        v = self.variables
        if noise is not None:
            v = with_noise(v, [tuple(k.split("/")) for k in noise], [jnp.asarray(m) for m in noise.values()])
        out = [np.asarray(self._synth(v, jnp.asarray(ws[i:i + 16]))) for i in range(0, len(ws), 16)]
        return to_uint8(np.concatenate(out))

    def run_one(self, target_u8: np.ndarray, out: Path, *, video: str = "none", video_every: int = 10,
                desc: str = "projecting", progress: bool = True) -> dict[str, Any]:
        """Projects one prepared target and writes its files into the (new, empty) folder ``out``."""
        bar = tqdm(total=self.o.num_steps, desc=desc, unit="step", disable=not progress, leave=False)

        def tick(step, d, loss):
            bar.update(1)
            if step % 10 == 0 or step == self.o.num_steps - 1:
                bar.set_postfix(dist=f"{d:.4g}", loss=f"{loss:.4g}")

        t0 = time.perf_counter()
        try:
            res = project(self.G, self.variables, target_u8, self.prepare, self.dist, self.o,
                          w_avg_std=self.stats, step=self.step, progress=tick)
        finally:
            bar.close()
        seconds = time.perf_counter() - t0
        noise = res.noise if self.render_noise == "optimized" else None
        proj = self.render(res.w, noise)[0]
        save_png(out / "target.png", target_u8)
        save_png(out / "proj.png", proj)
        np.savez(out / "projected_w.npz", w=res.w.astype(np.float32))
        if noise is not None:
            np.savez(out / "projected_noise.npz", **{k.replace("/", "."): v for k, v in noise.items()})
        if video != "none":
            steps = list(range(0, self.o.num_steps, max(1, video_every)))
            if steps[-1] != self.o.num_steps - 1:
                steps.append(self.o.num_steps - 1)
            frames = self.render(res.ws[steps], noise)
            frames = [np.concatenate([target_u8, f], axis=1) for f in frames]
            outputs.write_animation(out / f"proj.{video}", frames, fps=10)
        metrics = {
            "psnr": perceptual.psnr(target_u8, proj),
            "lpips": None if self.lpips_params is None else perceptual.lpips_metric(self.lpips_params, target_u8, proj),
            "loss": float(res.losses[-1]), "dist": float(res.dists[-1]), "loss_kind": self.loss,
            "space": self.o.space, "num_steps": self.o.num_steps, "seconds": round(seconds, 3),
        }
        if metrics["lpips"] is None:
            metrics["lpips_note"] = "not computed: no VGG16 weights (config.vgg16)"
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics


def settings_of(config, name: str) -> dict[str, Any]:
    keys = ("checkpoint", "target", "targets", "num_steps", "w_avg_samples", "initial_learning_rate",
            "initial_noise_factor", "lr_rampdown_length", "lr_rampup_length", "noise_ramp_length",
            "regularize_noise_weight", "space", "loss", "vgg16", "lpips_lin", "seed", "video", "video_every",
            "render_noise")
    s = {k: config[k] for k in keys}
    for k in ("checkpoint", "target", "targets", "vgg16", "lpips_lin"):
        s[k] = str(Path(s[k]).resolve()) if s[k] else ""
    s["network"] = name
    return s


def validate(config) -> None:
    if bool(config.target) == bool(config.targets):
        raise ValueError("set exactly one of config.target (one image) or config.targets (a folder of images)")
    if config.loss not in perceptual.LOSSES:
        raise ValueError(f"config.loss must be one of {perceptual.LOSSES}, got {config.loss!r}")
    outputs.check_video_format(config.video)
    if config.video_every < 1:
        raise ValueError(f"config.video_every must be >= 1, got {config.video_every}")
    options_from_config(config).validate()


def make_projector(config) -> tuple[str, Projector]:
    """Checks everything that can be checked before work starts, and builds the projector."""
    validate(config)
    lpips_params = None
    if config.loss != "mse" or config.vgg16:
        lpips_params = perceptual.load_lpips_params(config.loss, config.vgg16, config.lpips_lin)
    name, net = load_generator(config.checkpoint, config.network)
    return name, Projector(net, options_from_config(config), config.loss, lpips_params, config.render_noise)


def run(config, workdir: str) -> dict[str, Any]:
    name, proj = make_projector(config)
    res, ch = proj.cfg.img_resolution, proj.cfg.img_channels
    out = Path(workdir)
    video_kw = dict(video=config.video, video_every=int(config.video_every), progress=bool(config.progress))
    if config.target:
        target = targets.load_target(config.target, res, ch)
        marker = outputs.claim_folder(out, TOOL, settings_of(config, name))
        if marker and marker.get("complete"):
            print(f"{out} already holds this projection (metrics.json); nothing to do")
            return json.loads((out / "metrics.json").read_text())
        tmp = outputs.new_temp_dir(out, "target")
        try:
            metrics = proj.run_one(target, tmp, desc=Path(config.target).name, **video_kw)
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
        finally:
            outputs.remove_stale_temps(out)
        outputs.write_marker(out, TOOL, settings=settings_of(config, name), complete=True)
        print(f"projected {config.target} into {config.checkpoint} ({name}): PSNR {metrics['psnr']:.2f} dB"
              + (f", LPIPS {metrics['lpips']:.4f}" if metrics["lpips"] is not None else "")
              + f", {metrics['seconds']:.1f} s → {out}")
        return metrics
    return run_batch(config, proj, name, out, video_kw)


def run_batch(config, proj: Projector, name: str, out: Path, video_kw: dict[str, Any]) -> dict[str, Any]:
    files = targets.list_targets(config.targets)
    res, ch = proj.cfg.img_resolution, proj.cfg.img_channels
    for f in files:  # every target is checked before any output is written
        targets.open_target(f, ch)
    outputs.claim_folder(out, TOOL, settings_of(config, name))
    outputs.remove_stale_temps(out)
    for f in files:
        sub = out / f.stem
        if sub.exists() and not outputs.is_ours(sub, TOOL):
            raise FileExistsError(f"{sub} exists and is not a projection written by this job; remove or rename it")
    results: dict[str, Any] = {}
    todo = [f for f in files if not (outputs.read_marker(out / f.stem) or {}).get("complete")]
    if len(todo) < len(files):
        print(f"resuming: {len(files) - len(todo)} of {len(files)} targets already projected")
    for i, f in enumerate(files):
        sub = out / f.stem
        if f in todo:
            target = targets.load_target(f, res, ch)
            tmp = outputs.new_temp_dir(out, f.stem)
            try:
                desc = f"[{files.index(f) + 1}/{len(files)}] {f.name}"
                proj.run_one(target, tmp, desc=desc, **video_kw)
                outputs.write_marker(tmp, TOOL, target=str(f.resolve()), complete=True)
                from gancomp_jax.utils.atomic_dir import move_into_place

                move_into_place(tmp, sub)
            finally:
                if tmp.exists():
                    import shutil

                    shutil.rmtree(tmp, ignore_errors=True)
        results[f.stem] = json.loads((sub / "metrics.json").read_text())
    summary = summarize(results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    outputs.write_marker(out, TOOL, settings=settings_of(config, name), complete=True)
    lp = summary["mean_lpips"]
    print(f"projected {len(files)} targets into {config.checkpoint} ({name}): mean PSNR "
          f"{summary['mean_psnr']:.2f} dB" + (f", mean LPIPS {lp:.4f}" if lp is not None else "")
          + f", {summary['mean_seconds']:.1f} s per projection → {out}")
    return summary


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over targets of PSNR, LPIPS (when every target has one), final loss and seconds."""
    vals = list(results.values())
    lpips = [r.get("lpips") for r in vals]
    return {
        "count": len(vals),
        "mean_psnr": float(np.mean([r["psnr"] for r in vals])),
        "mean_lpips": None if any(v is None for v in lpips) else float(np.mean(lpips)),
        "mean_loss": float(np.mean([r["loss"] for r in vals])),
        "mean_seconds": float(np.mean([r["seconds"] for r in vals])),
        "median_seconds": float(np.median([r["seconds"] for r in vals])),  # the first includes compilation
        "targets": results,
    }


def render_projected_w(config, workdir: str) -> list[Path]:
    """``generate --config.projected_w=FILE`` (NVlabs ``generate.py --projected-w``): ``projNN.png``
    for every w in the file, ``noise_mode`` as given (seeds and truncation are ignored)."""
    from gancomp_jax.editing.latents import load_projected_w

    name, net = load_generator(config.checkpoint, config.network)
    gcfg = net.config
    ws = load_projected_w(config.projected_w, gcfg.num_ws, gcfg.w_dim)
    G = Generator(gcfg)
    synth = jax.jit(lambda v, w, k: G.apply(v, w, config.noise_mode, rngs={"noise": k}, method=Generator.synthesize))
    variables = jax.tree.map(jnp.asarray, net.variables)
    base_key = jax.random.key(config.noise_seed)
    out = Path(workdir)
    if out.exists() and any(out.iterdir()) and not outputs.is_ours(out):
        raise FileExistsError(f"output folder {out} already holds files that are not an output of gancomp_jax; "
                              f"choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_marker(out, "generate", projected_w=str(Path(config.projected_w).resolve()))
    print(f"generating {len(ws)} image(s) from projected w {config.projected_w} (seeds are ignored)")
    paths = []
    for idx, w in enumerate(ws):
        img = to_uint8(np.asarray(synth(variables, jnp.asarray(w[None]), jax.random.fold_in(base_key, idx))))[0]
        path = out / f"proj{idx:02d}.png"
        save_png(path, img)
        paths.append(path)
    print(f"wrote {len(paths)} image(s) to {out} (network {name}, noise_mode={config.noise_mode})")
    return paths
