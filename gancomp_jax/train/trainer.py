"""The trainer: one place for the mesh, steps, input pipeline, checkpoints, logging and samples.

``train(config, workdir)`` trains a StyleGAN2 G/D pair as NVlabs does (see ``steps.py``),
resuming from ``WORKDIR/checkpoints`` when they exist. What ends up in WORKDIR::

    config.json           resolved config (preset defaults filled in)
    checkpoints/<step>/   Orbax: train state, data-pipeline position, metadata (keep-last-N)
    metrics.jsonl         scalars, one JSON object per logged step
    tb/                   TensorBoard events (scalars and sample grids)
    samples/reals.png     a grid of training images
    samples/fakes<step>.png, samples/fakes_final.png   G_ema on fixed latents
    model/                final networks (G, G_ema, D) in the model-checkpoint format
"""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from tqdm import tqdm

from gancomp_jax import checkpoints, data
from gancomp_jax.models import Discriminator, Generator, get_preset
from gancomp_jax.train import sharding as shd
from gancomp_jax.train.checkpointing import TrainCheckpointer
from gancomp_jax.train.metrics_writer import MetricsWriter, write_grid
from gancomp_jax.train.state import TrainState, init_state, lazy_adam
from gancomp_jax.train.steps import Hyper, build_steps, run_iteration
from gancomp_jax.utils.images import to_uint8


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/Inf; the run stops and the last good checkpoint stays."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    step: int
    kimg: float
    seconds: float
    workdir: Path
    grid_path: Path | None
    model_dir: Path | None
    peak_rss_gib: float


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The config after preset defaults are applied."""

    config: ml_collections.ConfigDict
    g_cfg: Any
    d_cfg: Any
    hyper: Hyper
    total_steps: int
    mesh_devices: int
    mbstd_num_shards: int


def _pick(value, default):
    return default if value is None else value


def resolve_config(config: ml_collections.ConfigDict) -> Resolved:
    """Fills preset defaults, checks consistency; raises ValueError naming the bad key."""
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
    m = config.model
    preset = get_preset(m.preset, conv_clamp=m.conv_clamp, mixed_precision=m.mixed_precision,
                        resolution=m.resolution or None, channel_base=m.channel_base or None,
                        channel_max=m.channel_max or None)
    g_cfg, d_cfg = preset.generator, preset.discriminator
    if m.get("g_architecture"):
        g_cfg = g_cfg.replace(architecture=m.g_architecture)
    if m.get("d_architecture"):
        d_cfg = d_cfg.replace(architecture=m.d_architecture)
    if m.get("mbstd_group_size"):
        d_cfg = d_cfg.replace(mbstd_group_size=int(m.mbstd_group_size))
    t = preset.training
    config.batch_size = int(_pick(config.batch_size, t["batch_size"]))
    config.lr = float(_pick(config.lr, t["lr"]))
    config.r1_gamma = float(_pick(config.r1_gamma, t["r1_gamma"]))
    config.pl_weight = float(_pick(config.pl_weight, t["pl_weight"]))
    config.style_mixing_prob = float(_pick(config.style_mixing_prob, t["style_mixing_prob"]))
    config.ema_kimg = float(_pick(config.ema_kimg, t["ema_kimg"]))
    ramp = _pick(config.ema_rampup, t["ema_rampup"] or 0.0)
    config.ema_rampup = float(ramp)
    config.data.resolution = config.data.resolution or g_cfg.img_resolution
    if config.data.resolution != g_cfg.img_resolution:
        raise ValueError(f"config.data.resolution={config.data.resolution} does not match the model "
                         f"resolution {g_cfg.img_resolution}")

    n_dev = len(jax.devices()) if config.mesh_devices in (-1, 0) else int(config.mesh_devices)
    shards = n_dev if config.mbstd_num_shards in (-1, 0) else int(config.mbstd_num_shards)
    B = config.batch_size
    if B < 1 or B % n_dev:
        raise ValueError(f"config.batch_size={B} must be a positive multiple of the {n_dev} devices")
    if B % shards or (B // shards) % min(d_cfg.mbstd_group_size or B // shards, B // shards):
        raise ValueError(f"config.batch_size={B} cannot be split into {shards} minibatch-std shards with "
                         f"groups of {d_cfg.mbstd_group_size}")
    if config.pl_weight > 0 and ((B // config.pl_batch_shrink) % n_dev or B // config.pl_batch_shrink < 1):
        raise ValueError(f"path-length batch {B}//{config.pl_batch_shrink} must be a positive multiple of "
                         f"the {n_dev} devices")
    if config.total_steps <= 0:
        if config.total_kimg <= 0:
            raise ValueError("set config.total_kimg or config.total_steps to a positive value")
        config.total_steps = int(math.ceil(config.total_kimg * 1000 / B))
    hyper = Hyper(
        batch_size=B, style_mixing_prob=config.style_mixing_prob, r1_gamma=config.r1_gamma,
        r1_interval=int(config.r1_interval), pl_weight=config.pl_weight, pl_interval=int(config.pl_interval),
        pl_decay=float(config.pl_decay), pl_batch_shrink=int(config.pl_batch_shrink), ema_kimg=config.ema_kimg,
        ema_rampup=config.ema_rampup or None,
        g_terms=tuple((k, float(v)) for k, v in config.loss.g.items()),
        d_terms=tuple((k, float(v)) for k, v in config.loss.d.items()))
    return Resolved(config, g_cfg, d_cfg, hyper, int(config.total_steps), n_dev, shards)


def _setup_runtime(config) -> None:
    if config.get("distributed") and not jax.distributed.is_initialized():
        kwargs = {}
        if config.get("coordinator_address"):  # else: auto-detected (TPU pods, SLURM, ...)
            kwargs = dict(coordinator_address=config.coordinator_address,
                          num_processes=int(config.num_processes), process_id=int(config.process_id))
        jax.distributed.initialize(**kwargs)
    if config.get("compilation_cache_dir"):
        jax.config.update("jax_compilation_cache_dir", str(config.compilation_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _grid_latents(seed: int, n: int, z_dim: int) -> np.ndarray:
    return np.random.RandomState(seed).randn(n, z_dim).astype(np.float32)


class _Averager:
    """Means of per-step scalar metrics over a logging interval."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return out


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainResult:
    _setup_runtime(config)
    r = resolve_config(config)
    cfg, hyper = r.config, r.hyper
    workdir = Path(workdir).absolute()
    is_main = jax.process_index() == 0
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)

    # Mesh, models, optimisers ---------------------------------------------------------------
    mesh = shd.make_mesh(r.mesh_devices)
    batch_sh = shd.batch_sharding(mesh)
    G = Generator(r.g_cfg)
    D = Discriminator(r.d_cfg, mbstd_num_shards=r.mbstd_num_shards)
    betas = tuple(float(b) for b in cfg.betas)
    g_tx = lazy_adam(cfg.lr, betas, cfg.adam_eps, cfg.pl_interval if cfg.pl_weight > 0 else None)
    d_tx = lazy_adam(cfg.lr, betas, cfg.adam_eps, cfg.r1_interval if cfg.r1_gamma > 0 else None)
    root_key = jax.random.key(cfg.seed)
    init_fn = lambda: init_state(r.g_cfg, r.d_cfg, g_tx, d_tx, root_key)
    abstract = jax.eval_shape(init_fn)
    state_sh = shd.state_shardings(abstract, mesh, cfg.sharding)

    # Input pipeline ---------------------------------------------------------------------------
    source = data.build_source(cfg.data)
    pipeline = data.make_pipeline(source, global_batch_size=cfg.batch_size, seed=cfg.seed, xflip=cfg.data.xflip,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  worker_count=cfg.data.worker_count)

    # Checkpoints: resume or start -------------------------------------------------------------
    ckpt = TrainCheckpointer(workdir / "checkpoints", max_to_keep=cfg.keep_checkpoints,
                             async_save=cfg.async_checkpointing)
    meta_model = {"generator": r.g_cfg.to_dict(), "discriminator": r.d_cfg.to_dict()}
    latest = ckpt.latest_step()
    if latest is not None:
        saved_model = ckpt.restore_meta(latest).get("model")
        if saved_model != json.loads(json.dumps(meta_model)):
            ckpt.close()
            raise ValueError(f"{workdir} holds a run of a different model; use a new --workdir "
                             f"(saved: {saved_model}, now: {meta_model})")
        state, data_state, _ = ckpt.restore(latest, abstract, state_sh)
        pipeline.set_state(data_state)
        logging.info("resumed from %s at step %d", ckpt.directory, latest)
    else:
        state = jax.jit(init_fn, out_shardings=state_sh)()
    start_step = int(jax.device_get(state.step))
    if is_main:
        (workdir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str))

    steps = build_steps(G, D, g_tx, d_tx, hyper, state_sh, batch_sh)
    writer = MetricsWriter(workdir, enabled=is_main)
    if latest is not None:
        writer.truncate_after(start_step)

    # Sample grids -----------------------------------------------------------------------------
    grid_n = int(cfg.grid_rows * cfg.grid_cols)
    grid_z = _grid_latents(cfg.seed, grid_n, r.g_cfg.z_dim)
    sample_fn = jax.jit(lambda v, z: G.apply(v, z, None, noise_mode="const"))

    def write_samples(tag: str, state: TrainState) -> Path | None:
        if grid_n == 0 or r.g_cfg.c_dim > 0:
            return None
        # Every process joins the (possibly sharded) computation and the gather; process 0 writes.
        imgs = multihost_utils.process_allgather(sample_fn(state.g_ema, grid_z), tiled=True)
        if not is_main:
            return None
        imgs = to_uint8(np.asarray(imgs))
        path = workdir / "samples" / f"fakes{tag}.png"
        grid = write_grid(path, imgs, cfg.grid_cols)
        writer.image(int(jax.device_get(state.step)), "samples/fakes", grid)
        return path

    it = iter(pipeline)
    if is_main and start_step == 0 and grid_n:
        reals = next(iter(data.make_pipeline(source, global_batch_size=grid_n, seed=cfg.seed)))["image"]
        write_grid(workdir / "samples" / "reals.png", to_uint8(reals), cfg.grid_cols)

    # Train loop -------------------------------------------------------------------------------
    total = r.total_steps
    B = cfg.batch_size
    avg = _Averager()
    t_start = time.time()
    t_tick, n_tick = time.time(), 0
    last_ckpt = latest
    pbar = tqdm(total=total, initial=start_step, unit="step", disable=not (is_main and cfg.progress),
                dynamic_ncols=True, mininterval=2.0)
    logging.info("training %s %dpx for %d steps (batch %d, %d device(s), %s sharding) in %s",
                 cfg.model.preset, r.g_cfg.img_resolution, total, B, r.mesh_devices, cfg.sharding, workdir)
    step = start_step
    try:
        while step < total:
            batch = shd.global_batch(next(it), batch_sh)
            state, metrics = run_iteration(steps, state, batch, step, hyper)
            metrics = jax.device_get(metrics)
            bad = {k: float(v) for k, v in metrics.items() if not math.isfinite(float(v))}
            if bad:
                raise NonFiniteLossError(
                    f"non-finite loss at step {step}: {bad}; stopped. Last good checkpoint: "
                    f"{'step ' + str(last_ckpt) if last_ckpt is not None else 'none'} in {ckpt.directory}")
            step += 1
            n_tick += 1
            avg.add(metrics)
            pbar.update(1)
            if step % cfg.log_every_steps == 0 or step == total:
                dt = time.time() - t_tick
                scalars = avg.pop()
                scalars.update({"Progress/kimg": step * B / 1000, "Timing/img_per_sec": n_tick * B / max(dt, 1e-9),
                                "Timing/sec_per_step": dt / max(n_tick, 1)})
                writer.scalars(step, scalars)
                pbar.set_postfix_str(
                    f"kimg {step * B / 1000:.1f} | {scalars['Timing/img_per_sec']:.0f} img/s | "
                    f"G {scalars.get('G/loss', float('nan')):.3f} | D {scalars.get('D/loss', float('nan')):.3f}",
                    refresh=False)
                t_tick, n_tick = time.time(), 0
            if cfg.sample_every_steps and step % cfg.sample_every_steps == 0 and step != total:
                write_samples(f"{step:06d}", state)
            if (cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0) or step == total:
                ckpt.save(step, state, pipeline.get_state(), {"model": meta_model, "step": step, "kimg": step * B / 1000})
                last_ckpt = step
    finally:
        pbar.close()
        ckpt.close()
        writer.flush()

    seconds = time.time() - t_start
    grid_path = write_samples("_final", state)
    model_dir = None
    host = multihost_utils.process_allgather(state, tiled=True)  # full arrays, also under FSDP
    if is_main:
        nets = {"G": checkpoints.Network("generator", r.g_cfg, host.g),
                "G_ema": checkpoints.Network("generator", r.g_cfg, host.g_ema),
                "D": checkpoints.Network("discriminator", r.d_cfg, host.d)}
        model_dir = checkpoints.save_model(workdir / "model", nets, {"source": "gancomp_jax trainer", "step": step,
                                                                     "kimg": step * B / 1000}, overwrite=True)
    writer.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    trained = step - start_step
    print(f"done: {step} steps ({step * B / 1000:.1f} kimg) — this session {trained} steps in {seconds:.0f} s "
          f"({trained * B / max(seconds, 1e-9):.1f} img/s), peak RSS {peak:.2f} GiB; model: {model_dir}; "
          f"samples: {grid_path}")
    return TrainResult(state, step, step * B / 1000, seconds, workdir, grid_path, model_dir, peak)
