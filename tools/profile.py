#!/usr/bin/env python
"""Per-layer widths, parameters and MACs of a model's networks; optional CPU/GPU throughput.

    python tools/profile.py MODEL [--json FILE] [--latency] [--teacher MODEL] [--ratio R]

MODEL is anything ``gancomp_jax.checkpoints.load_any`` reads (a model directory, a training or
DGL-GAN run directory, an NVlabs ``.pkl``, a rosinality/CAGC ``.pt``, an NVlabs-layout
``.safetensors`` from tools/export_pt.py) or ``preset:NAME`` (e.g. ``preset:paper256``: the
architecture only, random weights). ``--ratio R`` narrows the generator by CAGC's rule
(``floor(R·C)`` channels removed from every layer) before profiling; ``--teacher`` adds the
compression rate against another model's generator (default with ``--ratio``: the unpruned
model). MAC conventions (see ``gancomp_jax.metrics.cost``): ``MACs`` is what gancomp_jax
executes per image (XLA's FLOPs are twice that), ``nominal`` the textbook count, ``CAGC``
CAGC's ``StyleGAN2_FLOPCal``. ``--latency`` measures images/s at batch 1 and 64 (``--batch``)
and the compile time of the generator (noise_mode const, jit, float32 unless the model says
otherwise). Bad input ends with one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# This file shadows the standard library's ``profile`` module (which cProfile imports) when
# tools/ is on sys.path: put the repository root there instead of tools/.
_TOOLS = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _TOOLS]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXIT_BAD_INPUT = 2


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model dir, .pkl, .pt, .safetensors or preset:NAME")
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--latency", action="store_true", help="measure generator images/s and compile time")
    p.add_argument("--batch", default="1,64", help="batch sizes for --latency (default 1,64)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (default 3)")
    p.add_argument("--teacher", help="model whose generator the compression rate is measured against")
    p.add_argument("--ratio", type=float, default=None,
                   help="profile the generator narrowed by CAGC's rule: floor(ratio*C) channels removed per layer")
    p.add_argument("--layers", action="store_true", help="also print mapping-network layers")
    p.add_argument("--xla", action="store_true",
                   help="cross-check: compile the batch-1 forward passes (nothing is run) and compare XLA's "
                        "cost-analysis FLOPs with 2 x the analytic executed MACs")
    return p.parse_args(argv)


def load_networks(spec: str) -> dict:
    """``{name: Network | (kind, config)}`` for a model spec (see module docstring)."""
    from gancomp_jax import checkpoints

    if spec.startswith("preset:"):
        from gancomp_jax.models import get_preset

        preset = get_preset(spec.split(":", 1)[1])
        return {"G_ema": ("generator", preset.generator), "D": ("discriminator", preset.discriminator)}
    return dict(checkpoints.load_any(spec))  # every MODEL form we write (.nvlabs.safetensors, run dirs, ...)


def _kind_config(net):
    return net if isinstance(net, tuple) else (net.kind, net.config)


def pruned_channels(channels, ratio: float) -> tuple[int, ...]:
    """CAGC / NICKEL & DiME width rule: ``C - floor(ratio * C)`` per layer."""
    import math

    if not 0 <= ratio < 1:
        raise ValueError(f"--ratio must be in [0, 1), got {ratio}")
    out = tuple(c - math.floor(ratio * c) for c in channels)
    if min(out) < 1:
        raise ValueError(f"--ratio {ratio} leaves a layer with 0 channels: {out}")
    return out


def xla_flops(kind: str, cfg) -> float:
    """FLOPs of the batch-1 forward pass by XLA's cost analysis, lowered from abstract inputs."""
    import jax
    import jax.numpy as jnp

    from gancomp_jax import checkpoints
    from gancomp_jax.models import Discriminator, Generator

    variables = checkpoints.abstract_variables(kind, cfg)
    c = jax.ShapeDtypeStruct((1, cfg.c_dim), jnp.float32) if cfg.c_dim else None
    if kind == "generator":
        x = jax.ShapeDtypeStruct((1, cfg.z_dim), jnp.float32)
        fn = lambda v, x, c: Generator(cfg).apply(v, x, c, noise_mode="const")
    else:
        x = jax.ShapeDtypeStruct((1, cfg.img_resolution, cfg.img_resolution, cfg.img_channels), jnp.float32)
        fn = lambda v, x, c: Discriminator(cfg).apply(v, x, c)
    analysis = jax.jit(fn).lower(variables, x, c).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"])


def measure_latency(net, batches: list[int], repeats: int) -> dict:
    """Compile time and images/s of the generator forward pass (z → image, noise const)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gancomp_jax.models import Generator

    kind, cfg = _kind_config(net)
    if isinstance(net, tuple):  # an architecture only: NVlabs-initialised random weights
        def init(key):
            c = jnp.zeros((1, cfg.c_dim)) if cfg.c_dim else None
            return Generator(cfg).init({"params": key}, jnp.zeros((1, cfg.z_dim)), c, noise_mode="const")
        variables = jax.jit(init)(jax.random.key(0))
    else:
        variables = net.variables
    variables = jax.device_put(jax.tree.map(jnp.asarray, variables))
    G = Generator(cfg)

    @jax.jit
    def forward(v, z, c):
        return G.apply(v, z, c, noise_mode="const")

    out = {"device": str(jax.devices()[0]), "backend": jax.default_backend(), "batches": {}}
    rng = np.random.RandomState(0)
    for b in batches:
        z = jnp.asarray(rng.randn(b, cfg.z_dim), jnp.float32)
        c = jnp.zeros((b, cfg.c_dim), jnp.float32) if cfg.c_dim else None
        t0 = time.perf_counter()
        compiled = forward.lower(variables, z, c).compile()
        t1 = time.perf_counter()
        compiled(variables, z, c).block_until_ready()  # warm-up
        times = []
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            compiled(variables, z, c).block_until_ready()
            times.append(time.perf_counter() - t)
        best = min(times)
        out["batches"][str(b)] = dict(compile_seconds=round(t1 - t0, 3), seconds_per_call=round(best, 5),
                                      images_per_second=round(b / best, 3))
    return out


def jax_backend() -> str:
    import jax

    return jax.default_backend()


def _biggan_profile(spec: str, networks: dict) -> int:
    """BigGAN models: parameters of every network and the generator's MACs per image."""
    from gancomp_jax.convert.common import count_parameters
    from gancomp_jax.models.biggan.cost import generator_macs

    for name, net in networks.items():
        kind, cfg = _kind_config(net)
        params = count_parameters(net.variables) if not isinstance(net, tuple) else count_parameters(
            checkpoints.abstract_variables(kind, cfg))
        if kind == "pretrained_biggan_generator":  # pytorch-pretrained-biggan's BigGAN-deep
            from gancomp_jax.models.biggan.pretrained import generator_macs as deep_macs

            print(f"{name:<6} {kind:<20} {cfg.resolution}px  {params:,} params  {deep_macs(cfg) / 1e6:,.1f} M "
                  f"MACs/image  ch {cfg.ch}  blocks {[list(x) for x in cfg.layers]}")
            continue
        macs = f"  {generator_macs(cfg) / 1e6:,.1f} M MACs/image" if kind == "biggan_generator" else ""
        print(f"{name:<6} {kind:<20} {cfg.resolution}px  {params:,} params{macs}  widths {list(cfg.channels)}")
    return 0


def run(args) -> int:
    spec = args.model
    if not spec.startswith("preset:") and not Path(spec).exists():
        raise FileNotFoundError(f"model {spec} does not exist")
    from gancomp_jax.metrics.cost import (compression_rate, discriminator_cost, format_cost_table, generator_cost,
                                          human)

    networks = load_networks(spec)
    if any("biggan" in str(_kind_config(v)[0]) for v in networks.values()):
        return _biggan_profile(spec, networks)
    gname = next((n for n in ("G_ema", "G") if n in networks and _kind_config(networks[n])[0] == "generator"),
                 next((n for n, v in networks.items() if _kind_config(v)[0] == "generator"), None))
    dname = next((n for n, v in networks.items() if _kind_config(v)[0] == "discriminator"), None)
    result: dict = {"model": spec}
    teacher_macs = None
    if gname is not None:
        kind, gcfg = _kind_config(networks[gname])
        if args.ratio is not None:
            teacher_macs = generator_cost(gcfg)["macs"], generator_cost(gcfg)["macs_cagc"]
            gcfg = gcfg.replace(channels=pruned_channels(gcfg.channels, args.ratio))
            networks[gname] = ("generator", gcfg)
            result["ratio"] = args.ratio
        cost = generator_cost(gcfg)
        cost["network"] = gname
        result["generator"] = cost
        print(format_cost_table(cost, f"{gname} ({spec}{'' if args.ratio is None else f', ratio {args.ratio}'})",
                           args.layers))
    if dname is not None:
        kind, dcfg = _kind_config(networks[dname])
        cost = discriminator_cost(dcfg)
        cost["network"] = dname
        result["discriminator"] = cost
        print()
        print(format_cost_table(cost, f"{dname} ({spec})", args.layers))
    if args.teacher:
        tnets = load_networks(args.teacher)
        tg = next((v for n, v in tnets.items() if _kind_config(v)[0] == "generator"), None)
        if tg is None:
            raise ValueError(f"teacher {args.teacher} has no generator")
        tc = generator_cost(_kind_config(tg)[1])
        teacher_macs = tc["macs"], tc["macs_cagc"]
    if teacher_macs is not None and "generator" in result:
        g = result["generator"]
        rate = compression_rate(g["macs"], teacher_macs[0])
        rate_cagc = compression_rate(g["macs_cagc"], teacher_macs[1])
        result["compression"] = dict(teacher=args.teacher or f"{spec} (unpruned)", teacher_macs=teacher_macs[0],
                                     teacher_macs_cagc=teacher_macs[1], rate=rate, rate_cagc=rate_cagc,
                                     speedup=teacher_macs[0] / g["macs"])
        print(f"\ncompression vs {result['compression']['teacher']}: MAC reduction {100 * rate:.2f} % "
              f"({teacher_macs[0] / g['macs']:.2f}x fewer executed MACs); CAGC convention "
              f"{100 * rate_cagc:.2f} % ({human(teacher_macs[1])} -> {human(g['macs_cagc'])})")
    if args.xla:
        print()
        for key, name in (("generator", gname), ("discriminator", dname)):
            if name is None:
                continue
            flops = xla_flops(key, _kind_config(networks[name])[1])
            cost = result[key]
            cost["xla_flops"] = flops
            cost["xla_flops_over_2macs"] = flops / (2 * cost["macs"])
            print(f"XLA cost analysis of {name} ({jax_backend()}): {human(flops)} FLOPs; 2 x executed MACs "
                  f"{human(2 * cost['macs'])} (ratio {cost['xla_flops_over_2macs']:.4f}); 2 x nominal MACs "
                  f"{human(2 * cost['macs_nominal'])} (ratio {flops / (2 * cost['macs_nominal']):.4f})")
    if args.latency:
        if gname is None:
            raise ValueError(f"{spec} has no generator to time")
        try:
            batches = [int(b) for b in args.batch.split(",") if b.strip()]
        except ValueError:
            raise ValueError(f"--batch must be comma-separated integers, got {args.batch!r}") from None
        if not batches or min(batches) < 1:
            raise ValueError(f"--batch must list positive batch sizes, got {args.batch!r}")
        from gancomp_jax.utils.ranges import check_batch_size
        for b in batches:
            check_batch_size(b, "--batch")
        lat = measure_latency(networks[gname], batches, args.repeats)
        result["latency"] = lat
        print(f"\nlatency of {gname} on {lat['device']} (noise const, best of {args.repeats}):")
        for b, r in lat["batches"].items():
            print(f"  batch {b:>4}: {r['images_per_second']:10.3f} images/s ({1000 * r['seconds_per_call']:.1f} ms/call), "
                  f"compile {r['compile_seconds']:.1f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError, KeyError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
