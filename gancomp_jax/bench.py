"""Speed and memory benchmarks: generator / discriminator inference, training steps, modulated conv.

    python tools/bench.py --model paper256 --batch 8                 # G and D inference
    python tools/bench.py --model small32 --batch 32 --what train    # training throughput
    python tools/bench.py --what modconv                             # grouped vs shared modconv
    python tools/bench.py --model paper256 --batch 8 --prune_ratio 0.9 --what g   # pruned student
    python tools/bench.py --model paper256 --batch 8 --json out.json
    python tools/bench.py --model cifar --batch 16 --what train --no_donate   # without state donation
    python tools/bench.py --model small32 --batch 16 --what pipeline,train --data_source zip --data_path d.zip

Every figure is a wall-clock median over ``--iters`` timed calls after one warm-up call. Compile
time (``*_compile_s``) is timed on its own, as ``jax.jit(f).lower(*args).compile()``, so it
does not depend on how busy the machine is during the timed calls. Peak memory is the device's ``peak_bytes_in_use`` where the backend
reports it (GPU/TPU), else the process's peak resident set size (CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax import checkpoints
from gancomp_jax.models import Discriminator, Generator, get_preset
from gancomp_jax.ops import modulated_conv2d, setup_filter


def _time(fn: Any, args: tuple, iters: int) -> tuple[float, float]:
    """(compile seconds, median seconds of ``iters`` calls after one warm-up) of the jitted ``fn``.

    Compilation is timed by itself (``fn.lower(*args).compile()``); the timed calls run the
    compiled executable.
    """
    compiled, compile_s = compile_timed(fn, args)
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times)


def compile_timed(fn: Any, args: tuple) -> tuple[Any, float]:
    """(compiled executable, seconds) of ``jax.jit``-ed ``fn`` for ``args``."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def peak_memory_gib() -> tuple[float, str]:
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2 ** 30, "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, "process peak RSS"


def bench_generator(preset, batch: int, iters: int, impl: str) -> dict[str, float]:
    cfg = preset.generator.replace(modconv_impl=impl)
    G = Generator(cfg)
    v = jax.device_put(checkpoints.init_network("generator", cfg, jax.random.key(0)).variables)
    z = jax.random.normal(jax.random.key(1), (batch, cfg.z_dim))
    fn = jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))
    compile_s, step = _time(fn, (v, z), iters)
    return {"G_compile_s": compile_s, "G_sec_per_batch": step, "G_img_per_s": batch / step}


def bench_discriminator(preset, batch: int, iters: int) -> dict[str, float]:
    cfg = preset.discriminator
    D = Discriminator(cfg)
    v = jax.device_put(checkpoints.init_network("discriminator", cfg, jax.random.key(0)).variables)
    x = jax.random.normal(jax.random.key(1), (batch, cfg.img_resolution, cfg.img_resolution, cfg.img_channels))
    fn = jax.jit(lambda v, x: D.apply(v, x))
    compile_s, step = _time(fn, (v, x), iters)
    return {"D_compile_s": compile_s, "D_sec_per_batch": step, "D_img_per_s": batch / step}


def bench_train(preset, batch: int, iters: int, impl: str) -> dict[str, float]:
    """Per-phase step times on one device with random real images; the amortised iteration time
    counts the lazy regularisers the preset uses at their intervals (path length 1/4, R1 1/16)."""
    from gancomp_jax.methods import stylegan2
    from gancomp_jax.methods.base import BuildEnv
    from gancomp_jax.models.presets import Preset
    from gancomp_jax.train.config import default_train_config
    from gancomp_jax.train.networks import Networks
    from gancomp_jax.train.state import init_state, lazy_adam
    from gancomp_jax.train.steps import build_steps

    t = preset.training
    g_cfg = preset.generator.replace(modconv_impl=impl)
    d_cfg = preset.discriminator
    cfg = default_train_config()
    cfg.batch_size, cfg.lr, cfg.r1_gamma, cfg.ema_kimg = batch, t["lr"], t["r1_gamma"], t["ema_kimg"]
    cfg.style_mixing_prob, cfg.ema_rampup = t["style_mixing_prob"], 0.0
    cfg.pl_weight = t["pl_weight"] or 2.0  # time the path-length step even where the preset skips it
    method = stylegan2.build(cfg, BuildEnv(batch, 1, 1, Preset(g_cfg, d_cfg, {})))
    nets = Networks(method, 1)
    txs = {r: lazy_adam(o.lr, o.betas, o.eps, method.reg_interval(r)) for r, o in method.optimizers.items()}
    k = jax.random.split(jax.random.key(0), 3)
    state = jax.jit(lambda: init_state({r: nets.init_variables(r, k[i]) for i, r in enumerate(("G", "D"))},
                                       txs, ("G",), method.extra_state, k[2]))()
    steps = build_steps(method, nets.modules, txs, batch)
    fns = {p.name: fn for p, fn in steps.phases}
    res = g_cfg.img_resolution
    batch_data = {"image": jax.random.uniform(jax.random.key(2), (batch, res, res, 3), minval=-1, maxval=1),
                  "label": jnp.zeros((batch,), jnp.int32)}
    out: dict[str, float] = {}
    box = [state]

    def phase(name, fn, *extra):
        # The state may be donated: every call takes the state the previous one returned.
        compiled, out[f"train_{name}_compile_s"] = compile_timed(fn, (box[0], *extra))
        times = []
        for i in range(iters + 1):  # the first call is the warm-up
            t0 = time.perf_counter()
            box[0], m = compiled(box[0], *extra)
            jax.block_until_ready((box[0], m))
            if i:
                times.append(time.perf_counter() - t0)
        out[f"train_{name}_s"] = statistics.median(times)

    phase("g_main", fns["Gmain"], {}, batch_data)
    phase("g_reg", fns["Greg"], {}, batch_data)
    phase("d_main", fns["Dmain"], {}, batch_data)
    phase("d_reg", fns["Dreg"], {}, batch_data)
    phase("ema", steps.ema)
    it = out["train_g_main_s"] + out["train_d_main_s"] + out["train_ema_s"]
    if t["pl_weight"] > 0:
        it += out["train_g_reg_s"] / int(cfg.pl_interval)
    if t["r1_gamma"] > 0:
        it += out["train_d_reg_s"] / int(cfg.r1_interval)
    out["train_sec_per_step"] = it
    out["train_img_per_s"] = batch / it
    out["train_kimg_per_hour"] = batch / it * 3600 / 1000
    return out


def bench_pipeline(source: str, path: str, resolution: int, batch: int, worker_count: int, batches: int
                   ) -> dict[str, float]:
    """Images/s of the input pipeline alone (decode, x-flip, batching; Grain workers), after one
    warm-up batch: compare with ``train_img_per_s`` (``--what pipeline,train``)."""
    from gancomp_jax import data

    cfg = data.default_data_config()
    cfg.source, cfg.path, cfg.resolution, cfg.xflip, cfg.worker_count = source, path, resolution, True, worker_count
    it = data.make_pipeline(data.build_source(cfg), global_batch_size=batch, seed=0, xflip=True,
                            worker_count=worker_count)
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    it.close()
    return {"pipeline_img_per_s": batches * batch / dt, "pipeline_worker_count": float(worker_count)}


def bench_modconv(batch: int, iters: int, channels: int = 256, res: int = 64) -> dict[str, float]:
    """Grouped (per-sample kernels) vs shared-weight modulated 3×3 conv, forward only."""
    x = jax.random.normal(jax.random.key(0), (batch, res, res, channels))
    w = jax.random.normal(jax.random.key(1), (3, 3, channels, channels))
    s = jax.random.normal(jax.random.key(2), (batch, channels))
    out = {}
    for impl in ("shared", "grouped"):
        for up in (1, 2):
            fn = jax.jit(lambda x, w, s, impl=impl, up=up: modulated_conv2d(
                x, w, s, up=up, padding=1, resample_filter=setup_filter(), impl=impl))
            _, step = _time(fn, (x, w, s), iters)
            out[f"modconv_{impl}_up{up}_ms"] = step * 1000
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="gancomp_jax speed/memory benchmarks")
    p.add_argument("--model", default="paper256", help="model preset (gancomp_jax.models.presets)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--what", default="g,d", help="comma list of: g, d, train, modconv")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--impl", default="auto", choices=("auto", "shared", "grouped"), help="modulated-conv form")
    p.add_argument("--mixed_precision", action="store_true", help="bfloat16 in the 4 highest resolutions")
    p.add_argument("--conv_clamp", type=float, default=None)
    p.add_argument("--prune_ratio", type=float, default=0.0,
                   help="remove this fraction of every generator layer's channels (CAGC's uniform "
                        "ratio: keep C - int(C * ratio)) to time a pruned student")
    p.add_argument("--data_source", default="digits", help="--what pipeline: data source (digits, zip, folder, ...)")
    p.add_argument("--data_path", default="", help="--what pipeline: zip / folder path")
    p.add_argument("--worker_count", type=int, default=0, help="--what pipeline: Grain worker processes")
    p.add_argument("--pipeline_batches", type=int, default=20, help="--what pipeline: batches timed")
    p.add_argument("--no_donate", action="store_true",
                   help="training steps without donating the train state (to measure donation's memory effect)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    if args.no_donate:
        from gancomp_jax.train import steps as train_steps
        train_steps.DONATE_STATE = False
    unknown = set(what) - {"g", "d", "train", "modconv", "pipeline"}
    if unknown:
        p.error(f"unknown --what entries {sorted(unknown)}")
    try:
        preset = get_preset(args.model, conv_clamp=args.conv_clamp, mixed_precision=args.mixed_precision)
    except ValueError as e:
        p.error(str(e))
    if not 0 <= args.prune_ratio < 1:
        p.error("--prune_ratio must be in [0, 1)")
    if args.prune_ratio:
        keep = tuple(c - int(c * args.prune_ratio) for c in preset.generator.channels)
        preset = dataclasses.replace(preset, generator=preset.generator.replace(channels=keep))
    dev = jax.devices()[0]
    results: dict[str, Any] = {"model": args.model, "batch": args.batch, "backend": jax.default_backend(),
                               "device": dev.device_kind, "num_devices": jax.device_count(),
                               "modconv_impl": args.impl, "mixed_precision": args.mixed_precision,
                               "donate_state": not args.no_donate,
                               "prune_ratio": args.prune_ratio, "g_channels": list(preset.generator.channels),
                               "jax": jax.__version__}
    print(f"# {args.model} batch {args.batch} on {results['backend']} ({results['device']}), jax {jax.__version__}",
          flush=True)
    runners = {"g": lambda: bench_generator(preset, args.batch, args.iters, args.impl),
               "d": lambda: bench_discriminator(preset, args.batch, args.iters),
               "train": lambda: bench_train(preset, args.batch, args.iters, args.impl),
               "modconv": lambda: bench_modconv(args.batch, args.iters),
               "pipeline": lambda: bench_pipeline(args.data_source, args.data_path, preset.generator.img_resolution,
                                                  args.batch, args.worker_count, args.pipeline_batches)}
    for w in what:
        r = runners[w]()
        for k, v in r.items():
            print(f"{k:32s} {v:12.3f}", flush=True)
        results.update(r)
    if "pipeline_img_per_s" in results and "train_img_per_s" in results:
        ratio = results["pipeline_img_per_s"] / results["train_img_per_s"]
        results["pipeline_over_train"] = ratio
        print(f"{'pipeline_over_train':32s} {ratio:12.3f}", flush=True)
        if ratio < 1:
            print("warning: the input pipeline alone is slower than the training steps: it is the bottleneck "
                  "(raise --worker_count / config.data.worker_count)", flush=True)
    peak, how = peak_memory_gib()
    results["peak_memory_gib"] = peak
    results["peak_memory_source"] = how
    print(f"{'peak_memory_gib':32s} {peak:12.3f}  ({how})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
