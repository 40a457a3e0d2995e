"""Content-aware channel scoring (CAGC), ours vs the released CAGC code, side by side on this CPU.

    python tools/bench_prune_scoring.py --cagc_repo /tmp/cagc [--preset paper256] [--n_sample 20]
        [--batch_size 10] [--threads 2] [--cagc_first] [--out bench.json]
    python tools/bench_prune_scoring.py --ours_only --preset tiny16 --n_sample 4 --batch_size 2

``--cagc_repo`` is a checkout of https://github.com/lychenyoko/content-aware-gan-compression
(e.g. ``git --git-dir=MIRROR archive HEAD | tar -x -C /tmp/cagc``); nothing of it is copied into
this repository. Needs torch (a test requirement).

Same on both sides: one random-weight generator (our ``init_model`` initialisation of
``--preset``, exported with :mod:`gancomp_jax.export.rosinality` and loaded *strictly* into
CAGC's ``Generator``; their own loader ``Build_Generator_From_Dict`` builds it), one random-weight
BiSeNet face parser (built with CAGC's ``BiSeNet`` class, saved as a ``79999_iter.pth``-layout
file read by both sides: the real weights are not available, so the masks are not faces' — this
is a SPEED comparison only), ``n_sample``, ``batch_size``, ``noise_prob``, random noise inputs,
and the CPU threads: the process is pinned to ``--threads`` cores (``sched_setaffinity``, which
bounds XLA's pool) and ``torch.set_num_threads(--threads)``. ``n_sample`` must be a multiple of
``batch_size`` so every batch has one shape (CAGC's last batch takes the remainder).

What runs on their side (theirs, called as written): ``Util.network_util.Build_Generator_From_Dict``
and ``Util.content_aware_pruning.Get_Content_Aware_Pruning_Score(generator, n_sample, batch_size,
noise_prob, 'cpu')`` — per batch: the generator forward, per image PIL conversion, BiSeNet parse
at 512 px, mask resize, the Python salt-and-pepper loop, then backward and the mean-|grad|
scores; it builds its parser (``Get_Parsing_Net``) at every call, which is inside its time. Then
``np.sum`` over batches as their ``prune.py`` does. Ours around it: the stand-in modules of
``tools/cagc_standins.py`` (CUDA ops and the torchvision pieces), the parser file's location
(``Util.content_aware_pruning.file_path`` points at a temporary folder holding
``face_parsing/pretrained_model/79999_iter.pth``), the ResNet-18 ImageNet download in BiSeNet's
constructor replaced by an empty dict, the strict load check, seeding and timing.

Our side: :func:`gancomp_jax.prune.criteria.compute_scores` ``('content_aware', ...)`` with the
face-parser mask of :func:`gancomp_jax.prune.masks.get_mask_fn` and a
:class:`~gancomp_jax.prune.resume.ScoreAccumulator` sealing per batch — what the prune job
(``experiments/prune.py``) runs. Its two programs (mask-free forward and the gradient step) are
compiled ahead of time and timed on their own (``lower().compile()``; the calls then reuse them).

Reported per side: warm-up (one batch, excluded from the steady state; ours after compiling, so it
holds the face parser's compile), steady state (``n_sample`` images: total and s/image) and the
ratio theirs/ours (the machine's load drifts: ``--cagc_first`` swaps the order). Also checked: both generators give the same image for the same z with their
stored noise (max |diff|), and the fraction of pixels inside the (random-parser) mask.
Bad input: one ``error:`` line, exit 2; ``--out`` replaces only an earlier output of this tool.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

CAGC_FILES = ("model.py", "Util/content_aware_pruning.py", "Util/network_util.py",
              "Util/face_parsing/BiSeNet.py", "Util/face_parsing/resnet.py")
CAGC_SCORER = "def Get_Content_Aware_Pruning_Score"
TOOL = "bench_prune_scoring"


class UsageError(Exception):
    pass


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cagc_repo", help="checkout of lychenyoko/content-aware-gan-compression")
    p.add_argument("--ours_only", action="store_true", help="time only our side (no CAGC checkout needed)")
    p.add_argument("--preset", default="paper256", help="model preset (default paper256)")
    p.add_argument("--resolution", type=int, default=None, help="override the preset's resolution")
    p.add_argument("--channel_max", type=int, default=None, help="override the preset's channel_max")
    p.add_argument("--n_sample", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=10)
    p.add_argument("--noise_prob", type=float, default=0.05)
    p.add_argument("--mask", default="face_parser", choices=("face_parser", "none"),
                   help="our content mask (theirs always parses faces); none only with --ours_only")
    p.add_argument("--threads", type=int, default=None, help="CPU cores for both sides (default: all available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cagc_first", action="store_true", help="time CAGC's side before ours (load drifts)")
    p.add_argument("--out", help="also write the results as JSON to this file")
    a = p.parse_args(argv)
    if a.n_sample < 1 or a.batch_size < 1:
        raise UsageError(f"--n_sample and --batch_size must be >= 1, got {a.n_sample} and {a.batch_size}")
    if a.n_sample % a.batch_size:
        raise UsageError(f"--n_sample {a.n_sample} must be a multiple of --batch_size {a.batch_size} "
                         "(one batch shape on both sides)")
    if not 0.0 <= a.noise_prob <= 1.0:
        raise UsageError(f"--noise_prob must be in [0, 1], got {a.noise_prob}")
    cores = sorted(os.sched_getaffinity(0))
    a.threads = a.threads or len(cores)
    if not 1 <= a.threads <= len(cores):
        raise UsageError(f"--threads must be in 1..{len(cores)} (cores available), got {a.threads}")
    if a.ours_only:
        if a.cagc_repo:
            raise UsageError("--ours_only and --cagc_repo exclude each other")
    else:
        if a.mask != "face_parser":
            raise UsageError("--mask none is only for --ours_only (CAGC's scoring always uses the face parser)")
        a.cagc_repo = check_cagc_repo(a.cagc_repo)
    if a.out:
        out = Path(a.out)
        if out.is_symlink():
            raise UsageError(f"--out {out} is a symbolic link; links are never written through")
        if out.exists() and not earlier_output(out):
            raise UsageError(f"--out {out} exists and is not an earlier output of this tool; not replaced")
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: folder {out.parent} does not exist")
    return a


def earlier_output(path: Path) -> bool:
    """True for a JSON file this tool wrote (``{"tool": "bench_prune_scoring", ...}``)."""
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return False
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and d.get("tool") == TOOL


def check_cagc_repo(path) -> Path:
    if not path:
        raise UsageError("--cagc_repo DIR is required (a checkout of lychenyoko/content-aware-gan-compression), "
                         "or --ours_only")
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"--cagc_repo {root} is not a directory")
    missing = [f for f in CAGC_FILES if not (root / f).is_file()]
    if missing:
        raise UsageError(f"--cagc_repo {root} is not a CAGC checkout: {missing[0]} is missing")
    if CAGC_SCORER not in (root / "Util/content_aware_pruning.py").read_text(errors="replace"):
        raise UsageError(f"--cagc_repo {root}: Util/content_aware_pruning.py has no Get_Content_Aware_Pruning_Score")
    return root.resolve()


def pin_threads(threads: int) -> None:
    """Both sides on the same ``threads`` cores: process affinity (XLA sizes its pool from it)."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))


# --------------------------------------------------------------------------- the shared model


def make_generator(preset: str, resolution, channel_max, seed: int):
    import jax
    from gancomp_jax import checkpoints
    from gancomp_jax.models import get_preset

    cfg = get_preset(preset, resolution=resolution, channel_max=channel_max).generator
    g = checkpoints.init_network_host_draws("generator", cfg, jax.random.key(seed))  # what init_model writes
    return cfg, g.variables


# --------------------------------------------------------------------------- our side


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_ours(cfg, variables, a, mask_fn, workdir: Path) -> dict:
    import jax
    import numpy as np
    from gancomp_jax.prune import criteria as crit
    from gancomp_jax.prune.resume import ScoreAccumulator

    def inputs(n, name):
        x = crit.ScoringInputs(cfg, variables, n_sample=n, batch_size=a.batch_size, noise_prob=a.noise_prob,
                               mask_fn=mask_fn, noise_mode="random", seed=a.seed, progress=False)
        x.accumulator = ScoreAccumulator(workdir / f"{name}.npz", {"bench": name})
        return x

    # compile the two scoring programs on their own (the criterion's calls then reuse them)
    forward, batch_scores = crit._content_aware_fns(cfg, "random")  # pylint: disable=protected-access
    v = crit._as_jax(variables)  # pylint: disable=protected-access
    weights = {i: crit._get(v["params"], p + ("weight",)) for i, p in enumerate(crit.consumer_paths(cfg))}
    batch = next(crit.sample_batches(inputs(a.batch_size, "aot")))
    hit = crit.hit_mask(batch, a.noise_prob, None)
    compile_s = 0.0
    if mask_fn is not None:
        compile_s += _timed(lambda: forward.lower(v, batch.z, batch.c, batch.noise_key).compile())[1]
    compile_s += _timed(lambda: batch_scores.lower(v, weights, batch.z, batch.c, batch.noise_key, hit,
                                                   batch.sign).compile())[1]
    _, warm_s = _timed(lambda: crit.compute_scores("content_aware", inputs(a.batch_size, "warmup")))
    mask_frac = None
    if mask_fn is not None:
        imgs = np.asarray(forward(v, batch.z, batch.c, batch.noise_key))
        mask_frac = float(np.mean(mask_fn(imgs)))
    scores, steady_s = _timed(lambda: crit.compute_scores("content_aware", inputs(a.n_sample, "steady")))
    jax.block_until_ready(scores)
    return {"compile_s": compile_s, "warmup_s": warm_s, "steady_s": steady_s,
            "s_per_image": steady_s / a.n_sample, "mask_fraction": mask_frac, "scores": scores}


def our_random_mask_fn(seed: int):
    """``--ours_only``: our face-parser mask with a random-weight Flax BiSeNet (no file needed)."""
    import functools

    import jax
    import numpy as np
    from gancomp_jax.nets import bisenet

    variables = bisenet.BiSeNet().init(jax.random.key(seed), jax.numpy.zeros((1, 64, 64, 3)))
    fn = jax.jit(functools.partial(bisenet.face_mask))
    return lambda images: np.asarray(fn(variables, jax.numpy.asarray(images))).astype(bool)


# --------------------------------------------------------------------------- their side


def load_cagc(repo: Path):
    """Imports CAGC's ``Util.network_util`` and ``Util.content_aware_pruning`` with the stand-ins."""
    import importlib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cagc_standins  # pylint: disable=import-outside-toplevel

    cagc_standins.install()
    sys.path.insert(0, str(repo))
    for name in [m for m in sys.modules if m == "model" or m.startswith("Util")]:
        del sys.modules[name]  # a different CAGC checkout imported earlier in this process
    resnet = importlib.import_module("Util.face_parsing.resnet")
    resnet.modelzoo = type("NoDownload", (), {"load_url": staticmethod(cagc_standins.no_download_load_url)})
    net_util = importlib.import_module("Util.network_util")
    ca = importlib.import_module("Util.content_aware_pruning")
    bisenet = importlib.import_module("Util.face_parsing.BiSeNet")
    return net_util, ca, bisenet


def write_random_bisenet(bisenet_mod, seed: int, root: Path) -> Path:
    """A random BiSeNet (CAGC's class and init) saved as ``root/face_parsing/pretrained_model/79999_iter.pth``."""
    import torch

    torch.manual_seed(seed)
    net = bisenet_mod.BiSeNet(n_classes=19)
    path = root / "face_parsing" / "pretrained_model" / "79999_iter.pth"
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return path


def their_generator(net_util, cfg, variables):
    import numpy as np
    import torch
    from gancomp_jax.export.rosinality import generator_to_rosinality

    sd, _ = generator_to_rosinality(variables, cfg)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}
    g = net_util.Build_Generator_From_Dict(sd, size=cfg.img_resolution)  # theirs (loads with strict=False)
    result = g.load_state_dict(sd, strict=True)  # every key of their Generator, no extra: same model
    assert not result.missing_keys and not result.unexpected_keys, result
    return g


def same_image_check(cfg, variables, g, seed: int) -> float:
    """max |ours − theirs| of one image for the same z, each with its stored noise buffers."""
    import jax
    import numpy as np
    import torch
    from gancomp_jax.models.generator import Generator

    z = np.random.default_rng(seed).standard_normal((1, cfg.z_dim)).astype(np.float32)
    ours = np.asarray(Generator(cfg).apply(jax.tree.map(jax.numpy.asarray, variables), z, None, noise_mode="const"))
    with torch.no_grad():
        theirs = g(noise_z=[torch.from_numpy(z)], randomize_noise=False).permute(0, 2, 3, 1).numpy()
    return float(np.max(np.abs(ours - theirs)))


def run_theirs(ca, g, a) -> dict:
    import numpy as np
    import torch

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    _, parser_s = _timed(lambda: ca.Get_Parsing_Net("cpu"))  # for information: inside every call below
    _, warm_s = _timed(lambda: ca.Get_Content_Aware_Pruning_Score(g, a.batch_size, a.batch_size, a.noise_prob, "cpu"))

    def steady():
        grad_score_list = ca.Get_Content_Aware_Pruning_Score(g, a.n_sample, a.batch_size, a.noise_prob, "cpu")
        # their prune.py sums over batches with np.sum(np.array(...), axis=0), which today's numpy
        # refuses for layers of different widths; the same sum, layer by layer (ours):
        return [np.sum([b[i] for b in grad_score_list], axis=0) for i in range(len(grad_score_list[0]))]

    scores, steady_s = _timed(steady)
    # where an image's time goes outside the generator (their per-image steps, called once more)
    parsing_net, to_tensor = ca.Get_Parsing_Net("cpu")
    with torch.no_grad():
        img = g(noise_z=[torch.randn(1, 512)])
    pil, image_s = _timed(lambda: ca.Convert_Tensor_To_Image(img))
    parsing, parse_s = _timed(lambda: ca.Extract_Face_Mask(pil, parsing_net, to_tensor, "cpu"))
    mask = np.array(ca.Image.fromarray((parsing > 0) * (parsing != 16)).resize((img.shape[-1],) * 2))
    _, noise_s = _timed(lambda: ca.Get_Salt_Pepper_Noisy_Image(img, mask, a.noise_prob))
    return {"warmup_s": warm_s, "steady_s": steady_s, "s_per_image": steady_s / a.n_sample,
            "parser_build_s": parser_s, "per_image_parse_s": image_s + parse_s, "per_image_noise_loop_s": noise_s,
            "mask_fraction_one_image": float(mask.mean()), "scores": [np.asarray(s, np.float64) for s in scores]}


# --------------------------------------------------------------------------- report


def table(a, ours, theirs) -> str:
    rows = [("", "ours (JAX)", "CAGC (torch)")]

    def f(x):
        return "-" if x is None else f"{x:.2f}"

    rows.append(("compile (s)", f(ours["compile_s"]), "-"))
    rows.append(("warm-up batch (s, excluded)", f(ours["warmup_s"]), f(theirs and theirs["warmup_s"])))
    rows.append((f"steady, {a.n_sample} images (s)", f(ours["steady_s"]), f(theirs and theirs["steady_s"])))
    rows.append(("steady s/image", f(ours["s_per_image"]), f(theirs and theirs["s_per_image"])))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(w[i]) if i == 0 else r[i].rjust(w[i]) for i in range(3)) for r in rows]
    if theirs:
        lines.append(f"ratio CAGC/ours (steady s/image): {theirs['s_per_image'] / ours['s_per_image']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pin_threads(a.threads)
    import numpy as np
    import jax

    from gancomp_jax.prune.widths import layer_names

    load_before = os.getloadavg()
    print(f"cores {a.threads} (pinned), load average before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}", flush=True)
    cfg, variables = make_generator(a.preset, a.resolution, a.channel_max, a.seed)
    if not a.ours_only and (cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.c_dim) != (512, 512, 8, 0):
        # CAGC's scorer draws 512-d latents and Build_Generator_From_Dict builds 8 mapping layers
        print(f"error: CAGC's scoring needs z_dim = w_dim = 512, 8 mapping layers and no labels; preset "
              f"{a.preset} has z_dim {cfg.z_dim}, w_dim {cfg.w_dim}, {cfg.mapping_layers} mapping layers, "
              f"c_dim {cfg.c_dim} (use paper256 with --resolution/--channel_max for a small model)", file=sys.stderr)
        return 2
    print(f"model: {a.preset} (resolution {cfg.img_resolution}, widths {list(cfg.channels)}), random weights, "
          f"n_sample {a.n_sample}, batch_size {a.batch_size}, noise_prob {a.noise_prob}", flush=True)
    result = {"tool": TOOL, "preset": a.preset, "resolution": cfg.img_resolution, "channels": list(cfg.channels),
              "n_sample": a.n_sample, "batch_size": a.batch_size, "noise_prob": a.noise_prob, "threads": a.threads,
              "jax": jax.__version__, "weights": "random (generator and face parser): speed comparison only"}
    with tempfile.TemporaryDirectory(prefix="bench_prune_scoring_") as tmp:
        tmp = Path(tmp)
        theirs = None
        if a.ours_only:
            mask_fn = our_random_mask_fn(a.seed) if a.mask == "face_parser" else None
        else:
            import torch

            torch.set_num_threads(a.threads)
            result["torch"] = torch.__version__
            net_util, ca, bisenet_mod = load_cagc(a.cagc_repo)
            parser_file = write_random_bisenet(bisenet_mod, a.seed, tmp / "cagc_parser")
            ca.file_path = tmp / "cagc_parser"  # their Get_Parsing_Net reads file_path/face_parsing/pretrained_model/79999_iter.pth
            from gancomp_jax.prune.masks import get_mask_fn
            mask_fn = get_mask_fn("face_parser", parser_file)  # the same parser file, read by our port
            g = their_generator(net_util, cfg, variables)
            result["same_image_max_abs_diff"] = same_image_check(cfg, variables, g, a.seed)
            print(f"same model: max |ours - CAGC| of one image (stored noise) = "
                  f"{result['same_image_max_abs_diff']:.2e}", flush=True)
        if not a.ours_only and a.cagc_first:
            print("CAGC side ...", flush=True)
            theirs = run_theirs(ca, g, a)
        print("our side ...", flush=True)
        ours = run_ours(cfg, variables, a, mask_fn, tmp)
        if not a.ours_only and not a.cagc_first:
            print("CAGC side ...", flush=True)
            theirs = run_theirs(ca, g, a)
        result["order"] = "cagc, ours" if a.cagc_first else "ours, cagc"
    load_after = os.getloadavg()
    print(table(a, ours, theirs))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    if theirs:
        print(f"CAGC per image outside the generator: PIL conversion + BiSeNet parse {theirs['per_image_parse_s']:.2f} s, "
              f"salt-and-pepper pixel loop {theirs['per_image_noise_loop_s']:.2f} s "
              f"(mask {theirs['mask_fraction_one_image']:.1%} of one image)")
    if ours["mask_fraction"] is not None:
        print(f"random face parser: {ours['mask_fraction']:.1%} of pixels inside the mask (ours, one batch)")
    names = layer_names(cfg)
    for side, r in (("ours", ours), ("cagc", theirs)):
        if r is None:
            continue
        s = r.pop("scores")
        r["scores_finite"] = bool(all(np.all(np.isfinite(s[k] if side == "ours" else s[i]))
                                      for i, k in enumerate(names)))
        result[side] = r
    if theirs:
        result["ratio_cagc_over_ours"] = theirs["s_per_image"] / ours["s_per_image"]
    result["load_average_before"], result["load_average_after"] = list(load_before), list(load_after)
    if a.out:
        from gancomp_jax.utils.atomic_dir import replace_file
        replace_file(a.out, (json.dumps(result, indent=2) + "\n").encode())
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
