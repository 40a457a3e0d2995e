#!/usr/bin/env python
"""Write seed%04d.png images from a generator exported with tools/export_model.py --format onnx.

    python tools/onnx_generate.py generator.onnx OUT_DIR [--seeds 0-7] [--truncation_psi 0.7]
        [--class_idx K] [--batch_size 8]

A deliberately small example of deploying an export: it needs numpy, onnxruntime and pillow
only (neither JAX nor gancomp_jax). Latents follow the NVlabs convention
``z = np.random.RandomState(seed).randn(z_dim)``; the float image in [-1, 1] becomes uint8 as
``clip(image * 127.5 + 128, 0, 255)`` (truncated), NCHW → HWC. ``--truncation_psi`` is fed to a
graph that takes it as an input; a graph with ψ baked in refuses a different value. Bad input:
one ``error:`` line, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or (sep and int(hi) < int(lo)):
            raise ValueError(f"invalid seed list {text!r} (expected e.g. '0-7' or '1,5,10-12')")
        seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return seeds


def generate(onnx_path: str, out_dir: str, seeds: list[int], truncation_psi: float = 1.0,
             class_idx: int = -1, batch_size: int = 8) -> list[str]:
    """Runs the graph for ``seeds`` and writes ``OUT_DIR/seed%04d.png``; returns the paths."""
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    if "z" not in inputs:
        raise ValueError(f"{onnx_path} has no input 'z' (inputs: {sorted(inputs)}); export it with tools/export_model.py")
    z_dim = int(inputs["z"].shape[1])
    fixed_batch = inputs["z"].shape[0] if isinstance(inputs["z"].shape[0], int) else None
    meta = session.get_modelmeta().custom_metadata_map
    if "truncation_psi" not in inputs and truncation_psi != 1.0 and meta.get("truncation_psi") != str(truncation_psi):
        raise ValueError(f"{onnx_path} has truncation_psi={meta.get('truncation_psi')} baked in; it cannot "
                         f"generate with --truncation_psi {truncation_psi}")
    c_dim = int(inputs["c"].shape[1]) if "c" in inputs else 0
    if c_dim and not 0 <= class_idx < c_dim:
        raise ValueError(f"the generator is conditional (c_dim={c_dim}): give --class_idx in [0, {c_dim})")
    bs = fixed_batch or batch_size
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for start in range(0, len(seeds), bs):
        chunk = seeds[start:start + bs]
        z = np.zeros((bs if fixed_batch else len(chunk), z_dim), np.float32)
        z[:len(chunk)] = np.stack([np.random.RandomState(s).randn(z_dim) for s in chunk])
        feed = {"z": z}
        if c_dim:
            feed["c"] = np.zeros((len(z), c_dim), np.float32)
            feed["c"][:, class_idx] = 1
        if "truncation_psi" in inputs:
            feed["truncation_psi"] = np.array(truncation_psi, np.float32)
        (image,) = session.run(["image"], feed)
        u8 = np.clip(image * np.float32(127.5) + np.float32(128), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        for seed, img in zip(chunk, u8):
            path = os.path.join(out_dir, f"seed{seed:04d}.png")
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(path)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("onnx", help="generator.onnx written by tools/export_model.py")
    p.add_argument("out_dir", help="folder for seed%%04d.png (created if needed)")
    p.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 1,5,10-12")
    p.add_argument("--truncation_psi", type=float, default=1.0)
    p.add_argument("--class_idx", type=int, default=-1, help="class for a conditional generator")
    p.add_argument("--batch_size", type=int, default=8)
    args = p.parse_args(argv)
    try:
        if not os.path.isfile(args.onnx):
            raise ValueError(f"{args.onnx} is not a file")
        paths = generate(args.onnx, args.out_dir, parse_seeds(args.seeds), args.truncation_psi,
                         args.class_idx, max(1, args.batch_size))
    except Exception as e:  # onnxruntime raises its own types for unreadable graphs
        print(f"error: {type(e).__name__ + ': ' if not isinstance(e, ValueError) else ''}{e}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} images to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
