"""The trainer: one place for the mesh, steps, input pipeline, checkpoints, logging and samples.

``train(config, workdir)`` trains the method named by ``config.method.name`` (default
``'stylegan2'``: a StyleGAN2 G/D pair as NVlabs trains it; see ``gancomp_jax/methods``),
resuming from ``WORKDIR/checkpoints`` when they exist. What ends up in WORKDIR::

    config.json           resolved config (preset defaults filled in)
    checkpoints/<step>/   Orbax: train state, data-pipeline position, metadata (keep-last-N),
                          sealed by checksums.json (verified at resume)
    metrics.jsonl         scalars, one JSON object per logged step
    tb/                   TensorBoard events (scalars and sample grids)
    samples/reals.png     a grid of training images
    samples/fakes<step>.png, samples/fakes_final.png   the sample network on fixed latents
    samples/teacher.png   distillation: the frozen teacher generator on the same latents (once)
    model/                final exported networks (e.g. G, G_ema, D) in the model-checkpoint format
    best_model/           with config.eval.best_metric: the networks of the best evaluation
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from tqdm import tqdm

from gancomp_jax import checkpoints, data, methods
from gancomp_jax.methods.base import BuildEnv, Method
from gancomp_jax.models import get_preset
from gancomp_jax.models.presets import Preset
from gancomp_jax.train import sharding as shd
from gancomp_jax.train.checkpointing import TrainCheckpointer, select_intact
from gancomp_jax.utils.atomic_dir import check_run_workdir, write_marker
from gancomp_jax.train.errors import NonFiniteLossError, TrainingDataError, TrainingInterrupted
from gancomp_jax.train.interrupt import GracefulInterrupt
from gancomp_jax.train.metrics_writer import MetricsWriter, write_grid
from gancomp_jax.train.networks import Networks
from gancomp_jax.train.state import TrainState, init_state, lazy_adam
from gancomp_jax.train.steps import build_steps, run_iteration
from gancomp_jax.utils.images import to_uint8

STATE_FORMAT = 2  # checkpoints of the method trainer (role-keyed state)

# An evaluation hook: (step, {exported name: checkpoints.Network on the host}) -> {name: value}.
Hook = Callable[[int, Mapping[str, checkpoints.Network]], Mapping[str, float]]

__all__ = ["NonFiniteLossError", "Prepared", "TrainingInterrupted", "TrainResult", "prepare", "resolve_config",
           "train"]


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
    method: Method | None = None
    eval_history: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The config after preset and method defaults are applied."""

    config: ml_collections.ConfigDict
    g_cfg: Any
    d_cfg: Any
    total_steps: int
    mesh_devices: int
    mbstd_num_shards: int
    method_module: Any


def _pick(value, default):
    return default if value is None else value


def _finite(config, key: str, value, positive: bool = False, minimum: float | None = None) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"config.{key}={value!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"config.{key}={value!r} must be a finite number")
    if positive and x <= 0:
        raise ValueError(f"config.{key}={value!r} must be positive")
    if minimum is not None and x < minimum:
        raise ValueError(f"config.{key}={value!r} must be >= {minimum}")
    return x


def _check_betas(betas) -> tuple[float, float]:
    msg = f"config.betas={betas!r} must be two numbers in [0, 1), e.g. (0.0, 0.99)"
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise ValueError(msg)
    try:
        b = tuple(float(x) for x in betas)
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if not all(0.0 <= x < 1.0 for x in b):
        raise ValueError(msg)
    return b


def _merge_method_defaults(config: ml_collections.ConfigDict, module) -> None:
    """Fills keys of the method's ``default_config()`` missing from ``config.method``."""
    if not hasattr(module, "default_config"):
        return
    defaults = module.default_config()
    for k, v in defaults.items():
        if k not in config.method:
            config.method[k] = v


def resolve_config(config: ml_collections.ConfigDict) -> Resolved:
    """Fills preset and method defaults, checks consistency; raises ValueError naming the bad key."""
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
    if "method" not in config:
        config.method = ml_collections.ConfigDict({"name": "stylegan2"})
    if "eval" not in config:
        config.eval = ml_collections.ConfigDict({"every_kimg": 0.0, "hooks": (), "best_metric": "",
                                                 "best_mode": "min"})
    module = methods.get(config.method.get("name", "stylegan2"))
    _merge_method_defaults(config, module)
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
    config.lr = _finite(config, "lr", _pick(config.lr, t["lr"]), positive=True)
    config.r1_gamma = _finite(config, "r1_gamma", _pick(config.r1_gamma, t["r1_gamma"]), minimum=0.0)
    config.pl_weight = _finite(config, "pl_weight", _pick(config.pl_weight, t["pl_weight"]), minimum=0.0)
    config.style_mixing_prob = _finite(config, "style_mixing_prob",
                                       _pick(config.style_mixing_prob, t["style_mixing_prob"]), minimum=0.0)
    config.ema_kimg = _finite(config, "ema_kimg", _pick(config.ema_kimg, t["ema_kimg"]), minimum=0.0)
    config.ema_rampup = _finite(config, "ema_rampup", _pick(config.ema_rampup, t["ema_rampup"] or 0.0), minimum=0.0)
    config.betas = _check_betas(config.betas)
    config.adam_eps = _finite(config, "adam_eps", config.adam_eps, minimum=0.0)
    config.total_kimg = _finite(config, "total_kimg", config.total_kimg)
    if int(config.keep_checkpoints) < 1:
        raise ValueError(f"config.keep_checkpoints={config.keep_checkpoints} must be >= 1 (the newest checkpoints "
                         f"kept; resuming needs at least one)")
    for key in ("r1_interval", "pl_interval", "pl_batch_shrink", "log_every_steps"):
        if int(config[key]) < 1:
            raise ValueError(f"config.{key}={config[key]} must be >= 1")
    for key in ("checkpoint_every_steps", "sample_every_steps"):
        if int(config[key]) < 0:
            raise ValueError(f"config.{key}={config[key]} must be >= 0 (0: only at the end / never)")
    config.eval.every_kimg = _finite(config, "eval.every_kimg", config.eval.every_kimg, minimum=0.0)
    if config.eval.best_mode not in ("min", "max"):
        raise ValueError(f"config.eval.best_mode={config.eval.best_mode!r} must be 'min' or 'max'")
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
    if hasattr(module, "resolve"):
        module.resolve(config)
    return Resolved(config, g_cfg, d_cfg, int(config.total_steps), n_dev, shards, module)


MATMUL_PRECISIONS = ("default", "high", "highest")


def matmul_precision(config):
    """The context of ``config.matmul_precision`` (``default``: the backend's own — bfloat16 passes
    for float32 matmuls on TPU, TF32 on NVIDIA GPUs; ``high``: 3 bfloat16 passes / TF32;
    ``highest``: full float32). Raises ValueError naming the key for other values."""
    p = str(config.get("matmul_precision", "default") or "default")
    if p not in MATMUL_PRECISIONS:
        raise ValueError(f"config.matmul_precision={p!r} must be one of {MATMUL_PRECISIONS}")
    return contextlib.nullcontext() if p == "default" else jax.default_matmul_precision(p)


def compilation_cache_dir(config, workdir: Path) -> str | None:
    """Where the persistent XLA compilation cache goes: ``config.compilation_cache_dir`` (a path,
    also ``gs://``), ``'auto'`` (default: ``WORKDIR/xla_cache``, unless the process already has a
    cache, e.g. from ``JAX_COMPILATION_CACHE_DIR``) or ``'none'``."""
    c = str(config.get("compilation_cache_dir", "auto") or "auto")
    if c == "none":
        return None
    if c == "auto":
        return None if jax.config.jax_compilation_cache_dir else str(workdir / "xla_cache")
    return c


def _setup_runtime(config, workdir: Path) -> None:
    if config.get("distributed") and not jax.distributed.is_initialized():
        kwargs = {}
        if config.get("coordinator_address"):  # else: auto-detected (TPU pods, SLURM, ...)
            kwargs = dict(coordinator_address=config.coordinator_address,
                          num_processes=int(config.num_processes), process_id=int(config.process_id))
        jax.distributed.initialize(**kwargs)
    cache = compilation_cache_dir(config, workdir)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


INPUT_BOUND_FRACTION = 0.2  # warn when the loop waits on the input pipeline for longer than this


def warn_if_input_bound(images: int, data_wait: float, seconds: float, warned: list) -> bool:
    """Warns once (``warned`` collects it) when the train loop spent more than
    INPUT_BOUND_FRACTION of ``seconds`` waiting for batches: the input pipeline, not the
    accelerator, sets the speed. Returns True when it warned."""
    if warned or seconds <= 0 or data_wait <= INPUT_BOUND_FRACTION * seconds:
        return False
    warned.append(True)
    steps_only = images / max(seconds - data_wait, 1e-9)
    msg = (f"warning: the input pipeline is the bottleneck: the loop waited for data {100 * data_wait / seconds:.0f} % "
           f"of the time ({images / seconds:.1f} img/s overall; the steps alone would run at {steps_only:.1f} img/s). "
           f"Raise config.data.worker_count (Grain worker processes), store the data as a zip at the model "
           f"resolution, or measure the pipeline alone with tools/bench.py --what pipeline")
    print(msg, file=sys.stderr, flush=True)
    return True


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


def _data_read_error(e: BaseException) -> BaseException | None:
    """The ``data.sources.DataReadError`` behind ``e`` (reader threads may wrap it), else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, data.sources.DataReadError):
            return e
        e = e.__cause__ or e.__context__
    return None


def _load_hooks(specs: Sequence[str], config) -> list[Hook]:
    """``'package.module:factory'`` → ``factory(config)`` (an evaluation hook)."""
    hooks = []
    for spec in specs:
        if not isinstance(spec, str) or ":" not in spec:
            raise ValueError(f"config.eval.hooks entry {spec!r} must look like 'package.module:factory'")
        mod, attr = spec.split(":", 1)
        try:
            factory = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"config.eval.hooks entry {spec!r} cannot be loaded: {e}") from None
        hooks.append(factory(config))
    return hooks


def exported_networks(method: Method, nets: Networks, state: TrainState, frozen: Mapping[str, Any]
                      ) -> dict[str, checkpoints.Network]:
    """``{export name: Network}`` of a (host) state: trainable networks, their EMAs (``<name>_ema``)
    and frozen networks declared with ``export``."""
    out = {}
    for role, spec in method.networks.items():
        if not spec.export:
            continue
        v = state.params[role] if spec.trainable else frozen[role]
        out[spec.export] = checkpoints.Network(spec.kind, nets.configs[role], v)
        if spec.ema:
            out[spec.export + "_ema"] = checkpoints.Network(spec.kind, nets.configs[role], state.ema[role])
    return out


def _sample_role(method: Method) -> tuple[str, bool] | None:
    """(role, use EMA) of the network named ``method.sample_network`` (None: no grids)."""
    name = method.sample_network
    for role, spec in method.networks.items():
        if spec.kind != "generator" or not spec.export:
            continue
        if spec.ema and name in (None, spec.export + "_ema"):
            return role, True
        if name == spec.export:
            return role, False
    return None


@dataclasses.dataclass
class Prepared:
    """A method ready to train (before shardings): what ``train`` and the tests build on.

    Attributes:
      method, nets (modules, configs, loaded variables), txs (role → optax Adam with the lazy
      correction), env; init_fn: ``loaded_trainable -> TrainState`` (traceable; roles draw
      their init keys from ``split(key(seed), #roles + 1)`` in declaration order, the last key
      is the state's); loaded_trainable: host variables of trainable networks read from files.
    """

    method: Method
    nets: Networks
    txs: dict[str, Any]
    env: BuildEnv
    seed: int

    @property
    def roles(self) -> list[str]:
        return list(self.method.networks)

    def role_keys(self):
        keys = jax.random.split(jax.random.key(self.seed), len(self.roles) + 1)
        return dict(zip(self.roles, keys[:-1])), keys[-1]

    @property
    def loaded_trainable(self) -> dict[str, Any]:
        return {r: self.nets.loaded[r] for r in self.nets.trainable if r in self.nets.loaded}

    def init_fn(self, loaded: Mapping[str, Any]) -> TrainState:
        by_role, state_key = self.role_keys()
        initial = {role: loaded[role] if role in loaded else self.nets.init_variables(role, by_role[role])
                   for role in self.nets.trainable}
        ema_roles = tuple(r for r in self.nets.trainable if self.method.networks[r].ema)
        return init_state(initial, self.txs, ema_roles, self.method.extra_state, state_key)

    def frozen_init_fn(self) -> dict[str, Any]:
        by_role, _ = self.role_keys()
        return {r: self.nets.init_variables(r, by_role[r]) for r in self.nets.frozen if r not in self.nets.loaded}

    def place_frozen(self, mesh=None, strategy: str = "replicate") -> tuple[dict[str, Any], Any]:
        """Frozen networks on the devices (and their shardings; None without a mesh)."""
        inits = jax.eval_shape(self.frozen_init_fn)
        abstract = dict(inits)
        abstract.update({r: jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype),
                                         self.nets.loaded[r]) for r in self.nets.frozen if r in self.nets.loaded})
        sh = shd.state_shardings(abstract, mesh, strategy) if mesh is not None else None
        frozen = {}
        if inits:
            out_sh = {k: sh[k] for k in inits} if sh is not None else None
            frozen.update(jax.jit(self.frozen_init_fn, out_shardings=out_sh)())
        for r in self.nets.frozen:
            if r in self.nets.loaded:
                frozen[r] = jax.device_put(self.nets.loaded[r], sh[r]) if sh is not None else \
                    jax.tree.map(jnp.asarray, self.nets.loaded[r])
        return frozen, sh


def prepare(r: Resolved) -> Prepared:
    """Builds the method of a resolved config, its networks (reading sources) and optimisers."""
    cfg = r.config
    env = BuildEnv(batch_size=int(cfg.batch_size), num_devices=r.mesh_devices, mbstd_num_shards=r.mbstd_num_shards,
                   model=Preset(r.g_cfg, r.d_cfg, {}))
    method = r.method_module.build(cfg, env)
    nets = Networks(method, r.mbstd_num_shards, mixed_precision=bool(cfg.model.get("mixed_precision", False)))
    txs = {role: lazy_adam(o.lr, tuple(o.betas), o.eps, method.reg_interval(role))
           for role, o in method.optimizers.items()}
    return Prepared(method, nets, txs, env, int(cfg.seed))


def _resumed_best(workdir: Path, key: str, start_step: int) -> float | None:
    """The best ``key`` value kept in ``workdir/best_model`` by an earlier session of this run.

    Without it every resumed session would start its own best, and ``best_model/`` would be the
    best of the last session only. A ``best_model/`` saved after the resume step (the session
    died before its next checkpoint) is not trusted: the next evaluation replaces it.
    """
    path = workdir / "best_model" / "model.json"
    if not key or not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text()).get("metadata", {})
        value, step = float(meta[key]), int(meta["step"])
    except (ValueError, KeyError, TypeError, AttributeError):
        logging.warning("%s: no %s/step in its metadata; best_model/ restarts at this session", path, key)
        return None
    if step > start_step or not math.isfinite(value):
        logging.warning("%s is from step %d, after the resume step %d; the next evaluation replaces it",
                        path, step, start_step)
        return None
    logging.info("best %s so far: %g at step %d (best_model/)", key, value, step)
    return value


def train(config: ml_collections.ConfigDict, workdir: str | Path, hooks: Sequence[Hook] = ()) -> TrainResult:
    """Trains (or resumes) the method of ``config`` in ``workdir``.

    Raises ValueError / FileNotFoundError for bad inputs (before anything is written: a run
    directory this call created is removed), NonFiniteLossError when a loss becomes NaN/Inf,
    TrainingInterrupted on Ctrl-C (the message says how to resume).

    ``workdir`` may be ``gs://bucket/prefix`` (train/remote_run.py): it is probed before any work
    (unreachable: ValueError, nothing written), checkpoints go there directly, the other files
    through a local staging folder; the result names the ``gs://`` paths.
    """
    remote = None
    if "://" in str(workdir):
        from gancomp_jax.io import cloud_storage as gcs
        from gancomp_jax.train.remote_run import RemoteRun, probe_timeout

        if not gcs.is_gcs(workdir):
            raise ValueError(f"workdir {workdir}: a run directory is a file-system path or gs://bucket/prefix "
                             f"(Cloud Storage); for other stores mount them as a folder")
        gcs.probe(str(workdir), probe_timeout())
        remote = RemoteRun(str(workdir))
        workdir = remote.staging
    workdir = Path(workdir).absolute()
    created = not workdir.exists()
    stop = GracefulInterrupt()

    def remove_if_empty_run():  # Ctrl-C before anything worth keeping was written
        if remote is not None:
            remote.discard_if_new()
        elif created and workdir.is_dir() and not any((workdir / "checkpoints").glob("[0-9]*")) \
                and jax.process_index() == 0:
            shutil.rmtree(workdir, ignore_errors=True)

    stop.on_abandon = remove_if_empty_run
    stop.describe = lambda: "stopped while starting, before the first step; re-run the same command to start again"
    stop.install()
    try:
        with matmul_precision(config):
            result = _train(config, workdir, hooks, stop, remote)
        if remote is not None:
            result = dataclasses.replace(result, workdir=remote.url, grid_path=remote.remote_of(result.grid_path),
                                         model_dir=remote.remote_of(result.model_dir))
        return result
    except (ValueError, FileNotFoundError):
        # A failure on the inputs: leave no empty run directory behind.
        if remote is not None:
            remote.discard_if_new()
        elif created and workdir.is_dir() and not any((workdir / "checkpoints").glob("[0-9]*")) \
                and jax.process_index() == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        stop.uninstall()
        if remote is not None:
            remote.close()


def _train(config: ml_collections.ConfigDict, workdir: Path, hooks: Sequence[Hook], stop: GracefulInterrupt,
           remote=None) -> TrainResult:
    # new, empty, an earlier run or marked as ours: never a folder of other files (nor a link)
    check_run_workdir(workdir)
    # first: jax.distributed.initialize must precede any JAX call
    _setup_runtime(config, workdir if remote is None else remote.cache_root())
    if remote is not None:
        remote.is_main = jax.process_index() == 0
    if jax.process_index() == 0:
        write_marker(workdir, "train")
    if remote is not None:
        remote.sync()  # the marker first: the prefix is recognisably ours before any checkpoint is there
    r = resolve_config(config)
    cfg = r.config
    is_main = jax.process_index() == 0
    B = cfg.batch_size

    # The method, its networks, optimisers -----------------------------------------------------
    p = prepare(r)
    method, nets, txs = p.method, p.nets, p.txs
    hooks = list(hooks) + _load_hooks(tuple(cfg.eval.hooks), cfg)
    mesh = shd.make_mesh(r.mesh_devices)
    batch_sh = shd.batch_sharding(mesh)
    init_fn, loaded_trainable = p.init_fn, p.loaded_trainable
    abstract = jax.eval_shape(init_fn, loaded_trainable)
    state_sh = shd.state_shardings(abstract, mesh, cfg.sharding)
    frozen, frozen_sh = p.place_frozen(mesh, cfg.sharding)
    frozen_record = nets.frozen_record()

    # Input pipeline (built before anything is written: a bad data path is an input error) ------
    source = data.build_source(cfg.data)
    if method.check_source is not None:  # e.g. class-conditional methods need labelled data
        method.check_source(source)
    pipeline = data.make_pipeline(source, global_batch_size=B, seed=cfg.seed, xflip=cfg.data.xflip,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  worker_count=cfg.data.worker_count)

    # Checkpoints: resume or start -------------------------------------------------------------
    ckpt_dir = workdir / "checkpoints" if remote is None else remote.checkpoints
    latest = select_intact(ckpt_dir, is_main, restart=bool(cfg.get("restart", False)))
    if latest is not None:
        stop.on_abandon = None
        stop.describe = lambda: (f"stopped while resuming, before the first step; last checkpoint: step {latest} in "
                                 f"{ckpt_dir}; re-run the same command to resume")
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("gancomp_jax:select_intact")
    meta_model = {"method": cfg.method.name, "networks": nets.description()}
    meta_model_json = json.loads(json.dumps(meta_model))
    if latest is not None:
        probe = TrainCheckpointer(ckpt_dir, max_to_keep=int(cfg.keep_checkpoints), async_save=False,
                                  is_main=is_main)
        saved = probe.restore_meta(latest)
        probe.close()
        if saved.get("state_format") != STATE_FORMAT:
            raise ValueError(f"{ckpt_dir} holds checkpoints of an older trainer (state format "
                             f"{saved.get('state_format', 1)}, now {STATE_FORMAT}); use a new --workdir")
        if saved.get("model") != meta_model_json:
            raise ValueError(f"{workdir} holds a run of a different model; use a new --workdir "
                             f"(saved: {saved.get('model')}, now: {meta_model_json})")
        saved_frozen = saved.get("frozen", {})
        for role, rec in frozen_record.items():
            old = saved_frozen.get(role)
            if old is not None and old.get("sha256") != rec.get("sha256"):
                raise ValueError(
                    f"frozen network {role!r} differs from the one this run started with: now {rec.get('source')} "
                    f"(sha256 {str(rec.get('sha256'))[:16]}…), the checkpoints were made with {old.get('source')} "
                    f"(sha256 {str(old.get('sha256'))[:16]}…); resume with the original file or use a new --workdir")
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)
    ckpt = TrainCheckpointer(ckpt_dir, max_to_keep=int(cfg.keep_checkpoints), async_save=cfg.async_checkpointing,
                             is_main=is_main)
    try:
        if latest is not None:
            state, data_state, _ = ckpt.restore(latest, abstract, state_sh)
            pipeline.set_state(data_state)
            logging.info("resumed from %s at step %d", ckpt.directory, latest)
        else:
            state = jax.jit(init_fn, out_shardings=state_sh)(loaded_trainable)
    except BaseException:
        ckpt.close()
        raise
    start_step = int(jax.device_get(state.step))
    if is_main:
        (workdir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str))

    steps = build_steps(method, nets.modules, txs, B, state_sh, frozen_sh, batch_sh,
                        nan_to_num=bool(cfg.get("grad_nan_to_num", False)))
    writer = MetricsWriter(workdir, enabled=is_main)
    if latest is not None:
        writer.truncate_after(start_step)

    # Sample grids -----------------------------------------------------------------------------
    grid_n = int(cfg.grid_rows * cfg.grid_cols)
    sample = _sample_role(method)
    sample_fn = None
    if sample is not None and grid_n and nets.configs[sample[0]].c_dim == 0:
        grid_z = _grid_latents(cfg.seed, grid_n, nets.configs[sample[0]].z_dim)
        G_sample = nets.modules[sample[0]]
        sample_fn = jax.jit(lambda v, z: G_sample.apply(v, z, None, noise_mode="const"))

    def write_samples(tag: str, state: TrainState) -> Path | None:
        if sample_fn is None:
            return None
        role, use_ema = sample
        v = state.ema[role] if use_ema else state.params[role]
        # Every process joins the (possibly sharded) computation and the gather; process 0 writes.
        imgs = multihost_utils.process_allgather(sample_fn(v, grid_z), tiled=True)
        if not is_main:
            return None
        imgs = to_uint8(np.asarray(imgs))
        path = workdir / "samples" / f"fakes{tag}.png"
        grid = write_grid(path, imgs, cfg.grid_cols)
        writer.image(int(jax.device_get(state.step)), "samples/fakes", grid)
        return path

    # Evaluation hooks -------------------------------------------------------------------------
    eval_history: list[dict[str, float]] = []
    best_key = cfg.eval.best_metric and (cfg.eval.best_metric if cfg.eval.best_metric.startswith("Eval/")
                                         else f"Eval/{cfg.eval.best_metric}")
    best = {"value": _resumed_best(workdir, best_key, start_step) if latest is not None else None}
    eval_every = float(cfg.eval.every_kimg)

    def evaluate(step: int, state: TrainState) -> None:
        if not hooks:
            return
        host = multihost_utils.process_allgather(state, tiled=True)
        networks = exported_networks(method, nets, host, jax.device_get(frozen))
        scalars: dict[str, float] = {}
        for hook in hooks:
            with jax.default_matmul_precision("highest"):  # metrics at full float32 precision
                scalars.update({f"Eval/{k}": float(v) for k, v in dict(hook(step, networks)).items()})
        eval_history.append({"step": step, **scalars})
        writer.scalars(step, scalars)
        key = best_key
        if key and key in scalars and math.isfinite(scalars[key]):
            v = scalars[key]
            better = best["value"] is None or (v < best["value"] if cfg.eval.best_mode == "min" else v > best["value"])
            if better:
                best["value"] = v
                if is_main:
                    checkpoints.save_model(workdir / "best_model", networks,
                                           {"source": "gancomp_jax trainer", "method": cfg.method.name, "step": step,
                                            "kimg": step * B / 1000, key: v}, overwrite=True)

    it = iter(pipeline)
    if is_main and start_step == 0 and grid_n:
        reals = next(iter(data.make_pipeline(source, global_batch_size=grid_n, seed=cfg.seed)))["image"]
        write_grid(workdir / "samples" / "reals.png", to_uint8(reals), cfg.grid_cols)
    if sample_fn is not None and not (workdir / "samples" / "teacher.png").exists():
        # Distillation: the frozen teacher generator on the same latents, once (teacher vs student).
        teacher_role = next((r for r, spec in method.networks.items()
                             if spec.kind == "generator" and not spec.trainable and r in frozen
                             and nets.configs[r].c_dim == 0 and nets.configs[r].z_dim == grid_z.shape[1]), None)
        if teacher_role is not None:
            G_teacher = nets.modules[teacher_role]
            imgs = multihost_utils.process_allgather(
                jax.jit(lambda v, z: G_teacher.apply(v, z, None, noise_mode="const"))(frozen[teacher_role], grid_z),
                tiled=True)
            if is_main:
                write_grid(workdir / "samples" / "teacher.png", to_uint8(np.asarray(imgs)), cfg.grid_cols)

    # Train loop -------------------------------------------------------------------------------
    total = r.total_steps
    avg = _Averager()
    t_start = time.time()
    t_tick, n_tick = time.time(), 0
    data_wait, input_warned = 0.0, []  # seconds waiting for the input pipeline (this log interval)
    pbar = tqdm(total=total, initial=start_step, unit="step", disable=not (is_main and cfg.progress),
                dynamic_ncols=True, mininterval=2.0)
    logging.info("training %s (%s %dpx) for %d steps (batch %d, %d device(s), %s sharding) in %s",
                 cfg.method.name, cfg.model.preset, r.g_cfg.img_resolution, total, B, r.mesh_devices, cfg.sharding,
                 workdir)
    step = start_step

    def describe_stop() -> str:  # cheap: runs in the Ctrl-C watchdog (see train/interrupt.py)
        sealed = ckpt.last_sealed if ckpt.last_sealed is not None else latest
        where = f"step {sealed} in {ckpt.directory}" if sealed is not None else "none yet"
        return f"stopped at step {step}; last checkpoint: {where}; re-run the same command to resume"

    exports = {}
    for role in nets.trainable:
        spec = method.networks[role]
        if spec.export:
            e = {"role": role, "kind": spec.kind, "config": nets.configs[role].to_dict()}
            exports[spec.export] = {**e, "ema": False}
            if spec.ema:
                exports[spec.export + "_ema"] = {**e, "ema": True}
    meta = {"model": meta_model, "state_format": STATE_FORMAT, "frozen": frozen_record, "exports": exports}
    try:
        while step < total:
            if stop.requested:
                raise KeyboardInterrupt
            t_data = time.perf_counter()
            try:
                host_batch = next(it)
            except Exception as e:  # pylint: disable=broad-exception-caught
                bad_read = _data_read_error(e)
                if bad_read is None:
                    raise
                # The state after `step` steps is complete and the pipeline has not counted the
                # failed batch: checkpoint here so that nothing is lost, then stop.
                if step > 0 and ckpt.latest_step() != step:
                    ckpt.save(step, state, pipeline.get_state(), {**meta, "step": step, "kimg": step * B / 1000})
                good = ckpt.last_good_step()
                raise TrainingDataError(
                    f"stopped at step {step}: {bad_read}. Last checkpoint: "
                    f"{'step ' + str(good) if good is not None else 'none'} in {ckpt.directory}; replace the file "
                    f"with a readable image of the same size (removing it changes the dataset, which a run cannot "
                    f"resume with) and re-run the same command to resume") from None
            data_wait += time.perf_counter() - t_data
            batch = shd.global_batch(host_batch, batch_sh)
            state, metrics = run_iteration(steps, state, frozen, batch, step)
            metrics = jax.device_get(metrics)
            bad = {k: float(v) for k, v in metrics.items() if not math.isfinite(float(v))}
            if bad:
                good = ckpt.last_good_step()
                raise NonFiniteLossError(
                    f"non-finite loss at step {step}: {bad}; stopped. Last good checkpoint: "
                    f"{'step ' + str(good) if good is not None else 'none'} in {ckpt.directory}")
            step += 1
            if not stop.in_loop:  # until the first step is done (compiled) Ctrl-C abandons at once
                stop.describe, stop.in_loop = describe_stop, True
            n_tick += 1
            avg.add(metrics)
            ckpt.seal_if_done()
            pbar.update(1)
            if step % cfg.log_every_steps == 0 or step == total:
                dt = time.time() - t_tick
                scalars = avg.pop()
                scalars.update({"Progress/kimg": step * B / 1000, "Timing/img_per_sec": n_tick * B / max(dt, 1e-9),
                                "Timing/sec_per_step": dt / max(n_tick, 1),
                                "Timing/data_wait_frac": data_wait / max(dt, 1e-9)})
                if is_main:
                    warn_if_input_bound(n_tick * B, data_wait, dt, input_warned)
                writer.scalars(step, scalars)
                losses = " | ".join(f"{p.metric_name} {scalars[p.metric_name]:.3f}" for p in method.phases
                                    if p.interval == 1 and p.metric_name in scalars)
                pbar.set_postfix_str(f"kimg {step * B / 1000:.1f} | {scalars['Timing/img_per_sec']:.0f} img/s | "
                                     f"{losses}", refresh=False)
                t_tick, n_tick, data_wait = time.time(), 0, 0.0
            if cfg.sample_every_steps and step % cfg.sample_every_steps == 0 and step != total:
                write_samples(f"{step:06d}", state)
            if eval_every > 0 and int(step * B / (eval_every * 1000)) > int((step - 1) * B / (eval_every * 1000)):
                evaluate(step, state)
            if (cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0) or step == total:
                ckpt.save(step, state, pipeline.get_state(), {**meta, "step": step, "kimg": step * B / 1000})
                if remote is not None:
                    remote.sync()  # the run's small files beside the checkpoint (train/remote_run.py)
    except KeyboardInterrupt:
        pbar.close()
        good = ckpt.last_good_step()
        where = f"step {good} in {ckpt.directory}" if good is not None else "none yet"
        raise TrainingInterrupted(f"stopped at step {step}; last checkpoint: {where}; "
                                  f"re-run the same command to resume") from None
    finally:
        pbar.close()
        ckpt.close()
        writer.flush()
        if remote is not None:
            remote.sync(best_effort=True)

    seconds = time.time() - t_start
    grid_path = write_samples("_final", state)
    model_dir = None
    host = multihost_utils.process_allgather(state, tiled=True)  # full arrays, also under FSDP
    if is_main:
        nets_out = exported_networks(method, nets, host, jax.device_get(frozen))
        if nets_out:
            model_dir = checkpoints.save_model(workdir / "model", nets_out,
                                               {"source": "gancomp_jax trainer", "method": cfg.method.name,
                                                "step": step, "kimg": step * B / 1000, **dict(method.metadata)},
                                               overwrite=True)
    writer.close()
    shown = (lambda p: p) if remote is None else remote.remote_of
    if remote is not None:
        remote.sync()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    trained = step - start_step
    print(f"done: {step} steps ({step * B / 1000:.1f} kimg) — this session {trained} steps in {seconds:.0f} s "
          f"({trained * B / max(seconds, 1e-9):.1f} img/s), peak RSS {peak:.2f} GiB; model: {shown(model_dir)}; "
          f"samples: {shown(grid_path)}")
    return TrainResult(state, step, step * B / 1000, seconds, workdir, grid_path, model_dir, peak, method,
                       eval_history)
