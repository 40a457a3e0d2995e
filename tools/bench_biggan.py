#!/usr/bin/env python
"""CPU/GPU images per second of a BigGAN generator in eval mode, ours (jitted JAX) beside
BigGAN-PyTorch's (its classes as restated in tests/biggan_torch_reference.py), same weights.

    python tools/bench_biggan.py [--batch 8] [--repeats 3] [--no_torch]

Default network: the ImageNet 128 config (G_ch 96, dim_z 120, shared_dim 128, hier, attention
at 64, 1000 classes), random weights. Prints one line per implementation: median seconds per
batch over ``--repeats`` timed batches (after one warm-up / compile) and images/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--no_torch", action="store_true")
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gancomp_jax.convert.biggan import to_variables
    from gancomp_jax.models.biggan import BigGANGenerator, BigGANGeneratorConfig
    from gancomp_jax.models.biggan.cost import generator_macs

    cfg = BigGANGeneratorConfig.biggan(args.resolution, ch=96, attention="64", dim_z=120, shared_dim=128, hier=True,
                                       n_classes=1000)
    rs = np.random.RandomState(0)
    z = rs.randn(args.batch, cfg.z_dim).astype(np.float32)
    y = rs.randint(0, 1000, args.batch)
    print(f"BigGAN-{args.resolution} G: {generator_macs(cfg) / 1e9:.2f} GMACs/image, batch {args.batch}, "
          f"devices {jax.devices()}")
    tG = None
    if not args.no_torch:
        import torch
        sys.path.insert(0, str(ROOT))
        from tests.biggan_torch_reference import Generator

        torch.manual_seed(0)
        tG = Generator(cfg).eval()
        sd = {k: v.numpy() for k, v in tG.state_dict().items()}
        variables = to_variables(sd)
    else:
        from gancomp_jax.models.biggan import init_generator
        variables = init_generator(cfg, jax.random.key(0))
    G = BigGANGenerator(cfg)
    fn = jax.jit(lambda v, z, y: G.apply(v, z, y))
    v = jax.tree.map(jnp.asarray, variables)
    zj, yj = jnp.asarray(z), jnp.asarray(y)
    t0 = time.perf_counter()
    fn(v, zj, yj).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = fn(v, zj, yj).block_until_ready()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"jax   : {med:.3f} s/batch, {args.batch / med:.2f} img/s (first call incl. compile {compile_s:.1f} s)")
    if tG is not None:
        import torch
        with torch.no_grad():
            zt, yt = torch.from_numpy(z), torch.from_numpy(y)
            ref = tG(zt, tG.shared(yt))
            ttimes = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                tG(zt, tG.shared(yt))
                ttimes.append(time.perf_counter() - t0)
        tmed = statistics.median(ttimes)
        diff = float(np.abs(np.asarray(out) - ref.numpy().transpose(0, 2, 3, 1)).max())
        print(f"torch : {tmed:.3f} s/batch, {args.batch / tmed:.2f} img/s (torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads); max |jax - torch| = {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
