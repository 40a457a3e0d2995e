#!/usr/bin/env python
"""Global embedding moments for DiME (NICKEL & DiME's ``global_features_ckpt``).

    python tools/dime_stats.py --embedders clip_rn50,dino_rn50 \\
        --weights clip_rn50=RN50.pt,dino_rn50=dino_resnet50_pretrain.pth \\
        --source teacher:MODEL_DIR_or_.pkl | data:FOLDER_or_.zip | data:digits \\
        --n 50000 [--batch 32] [--preprocess released] [--bank] OUT.pt|OUT.npz

Writes ``global_{e}_{first,second}`` (``e`` = ``clip`` for ``clip_*``, ``dino`` for
``dino_*``, else the kind) as the released ``.pt`` dict (or ``.npz``); with ``--bank`` also
``bank_{e}`` (all embeddings, for kernel-MMD DiME). Partial sums go to ``OUT.partial.npz``
every ``--checkpoint_every`` batches; re-running the same command continues from them (the
settings and the weight files' sha256 are recorded with them; a run with other ``--weights``
or settings is refused, naming what differs).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def family(kind: str) -> str:
    """Key name of an embedder kind in the released dict."""
    for prefix in ("clip", "dino"):
        if kind == f"{prefix}_rn50":
            return prefix
    return kind


def resolve_embedders(kinds: list[str], weights: dict[str, str], preprocess: str):
    """``{family: images → features}`` from the nets registry (H6b's ``load_embedder``)."""
    import jax

    try:
        from gancomp_jax.nets.embedders import load_embedder
    except ImportError as e:
        raise ValueError(f"embedders by name need gancomp_jax.nets.embedders ({e})") from None
    out = {}
    for kind in kinds:
        if kind not in weights:
            raise ValueError(f"no weight file for embedder {kind!r}: pass --weights {kind}=PATH")
        params, apply_fn = load_embedder(kind, weights[kind], preprocess=preprocess)
        fn = jax.jit(apply_fn)
        out[family(kind)] = (lambda f, p: (lambda imgs: f(p, imgs)))(fn, params)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output .pt (released layout) or .npz")
    ap.add_argument("--embedders", required=True, help="comma-separated kinds, e.g. clip_rn50,dino_rn50")
    ap.add_argument("--weights", default="", help="comma-separated KIND=PATH")
    ap.add_argument("--source", required=True, help="teacher:PATH or data:PATH (folder, .zip, digits)")
    ap.add_argument("--n", type=int, default=50000, help="number of images")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="teacher latents seed")
    ap.add_argument("--truncation_psi", type=float, default=1.0)
    ap.add_argument("--resolution", type=int, default=None, help="data resolution (default: as stored)")
    ap.add_argument("--xflip", action="store_true", help="data: add mirrored copies")
    ap.add_argument("--preprocess", default="released", help="embedder preprocessing (released|canonical|...)")
    ap.add_argument("--bank", action="store_true", help="also store all embeddings (bank_{e})")
    ap.add_argument("--checkpoint_every", type=int, default=20, help="batches between partial-sum saves")
    ap.add_argument("--writer", default="auto", choices=["auto", "torch", "builtin"])
    ap.add_argument("--overwrite", action="store_true", help="replace an existing OUT file (never a link or folder)")
    args = ap.parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run(args) -> None:
    from gancomp_jax.losses import dime_stats as ds

    out = Path(args.out)
    if out.suffix not in (".pt", ".npz"):
        raise ValueError(f"{out}: output must end in .pt or .npz")
    from gancomp_jax.utils.atomic_dir import check_output_file
    check_output_file(out, args.overwrite)  # before any work: an existing file is never replaced silently
    if args.n < 1 or args.batch < 1:
        raise ValueError(f"--n and --batch must be positive, got {args.n} and {args.batch}")
    kinds = [k for k in args.embedders.split(",") if k]
    weights = dict(kv.split("=", 1) for kv in args.weights.split(",") if kv)
    kind, _, path = args.source.partition(":")
    if kind == "teacher":
        batches = ds.generator_batches(path, args.batch, args.seed, args.truncation_psi)
    elif kind == "data":
        batches, total = ds.data_batches(path, args.batch, args.resolution, args.xflip)
        if args.n > total:
            raise ValueError(f"--n {args.n} exceeds the {total} images of {path}")
    else:
        raise ValueError(f"--source must be teacher:PATH or data:PATH, got {args.source!r}")
    embedders = resolve_embedders(kinds, weights, args.preprocess)
    # the weights by content (path and sha256): a resumed run with other --weights is refused
    used_weights = {k: f"{weights[k]} sha256:{ds.weights_fingerprint(weights[k])}" for k in kinds if k in weights}
    meta = dict(embedders=",".join(kinds), source=args.source, n=args.n, batch=args.batch,
                seed=args.seed, psi=args.truncation_psi, preprocess=args.preprocess,
                bank=bool(args.bank), xflip=bool(args.xflip), weights=repr(sorted(used_weights.items())))
    partial = Path(str(out) + ".partial.npz")
    stats = ds.compute_global_stats(embedders, batches, args.n, args.batch, partial,
                                    keep_bank=args.bank, checkpoint_every=args.checkpoint_every,
                                    meta=meta)
    check_output_file(out, args.overwrite)  # again: the name may have appeared meanwhile
    used = ds.save_stats(out, stats, args.writer)
    os.remove(partial)
    print(f"wrote {out} ({used}): " + ", ".join(f"{k} {v.shape}" for k, v in stats.items()))


if __name__ == "__main__":
    sys.exit(main())
