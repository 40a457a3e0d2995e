#!/usr/bin/env python
"""Throughput of the CLIP / DINO embedders (images/s) at their real sizes, random weights.

    python tools/bench_embedders.py [--batch 32] [--iters 3] [--only clip_rn50,dinov2_l14] [--dtype float32]

Each network is the released architecture (CLIP RN50, DINO RN50, CLIP ViT-B/32, B/16, L/14,
DINO ViT-S/16, B/16, DINOv2 ViT-S/B/L/14) with random parameters, timed on its network input
(224 px; preprocessing excluded) after one compile step. Prints one line per network.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# run from a checkout; do not let tools/ shadow stdlib modules (tools/profile.py vs `profile`)
sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

VIT = {
    # name: (kind, hf config overrides)
    "clip_vit_b32": ("clip_vit", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                      num_attention_heads=12, patch_size=32, projection_dim=512)),
    "clip_vit_b16": ("clip_vit", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                      num_attention_heads=12, patch_size=16, projection_dim=512)),
    "clip_vit_l14": ("clip_vit", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                      num_attention_heads=16, patch_size=14, projection_dim=768)),
    "dino_vit_s16": ("dino_vit", dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12,
                                      num_attention_heads=6, patch_size=16)),
    "dino_vit_b16": ("dino_vit", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                      num_attention_heads=12, patch_size=16)),
    "dinov2_s14": ("dinov2", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14)),
    "dinov2_b14": ("dinov2", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=14)),
    "dinov2_l14": ("dinov2", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=14)),
}
NAMES = ["clip_rn50", "dino_rn50", *VIT]


def build(name: str, dtype):
    """(init_fn, apply_fn, input size) for network ``name``."""
    if name == "clip_rn50":
        from gancomp_jax.nets.clip_resnet import ModifiedResNet

        module, size = ModifiedResNet(dtype=dtype), 224
        return module.init, module.apply, size
    if name == "dino_rn50":
        from gancomp_jax.nets.resnet import ResNet

        module = ResNet(dtype=dtype)
        return module.init, module.apply, 224
    from gancomp_jax.nets import vit

    kind, overrides = VIT[name]
    hf = vit._quiet_import()
    proj = overrides.pop("projection_dim", None)
    cls = {"clip_vit": hf["CLIPVisionConfig"], "dino_vit": hf["ViTConfig"], "dinov2": hf["Dinov2Config"]}[kind]
    cfg = cls(image_size=224, **overrides)
    config = {"hf_config": cfg.to_dict(), "image_size": 224}
    if proj:
        config["projection_dim"] = proj
    module = vit.build_module(kind, config, dtype)
    return module.init, module.apply, 224


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(NAMES))
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args(argv)
    dtype = jnp.dtype(args.dtype)
    names = [n for n in args.only.split(",") if n] or NAMES
    device = jax.devices()[0]
    for name in names:
        init, apply, size = build(name, dtype)
        x = jnp.zeros((args.batch, size, size, 3), dtype)
        variables = jax.jit(init)(jax.random.key(0), x[:1])
        fn = jax.jit(apply)
        t0 = time.perf_counter()
        fn(variables, x).block_until_ready()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.iters):
            out = fn(variables, x)
        out.block_until_ready()
        per_batch = (time.perf_counter() - t0) / args.iters
        print(f"{name:14s} {device.platform}:{device.device_kind} {args.dtype} batch {args.batch} {size}px: "
              f"{args.batch / per_batch:8.1f} images/s ({per_batch * 1e3:.0f} ms/batch, first call {compile_s:.1f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
