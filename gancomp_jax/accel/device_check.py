"""One command for a lent GPU/TPU: correctness against CPU references, then benchmarks.

    python tools/device_check.py --out OUT [--nvlabs DIR] [--budget_s 420]
    python tools/device_check.py --tiny --out OUT            # everything on tiny configs (CPU, a test)

**(a) Correctness** (tiny configs, float32, ``jax.default_matmul_precision('highest')``): the
tiny16 generator (images and ws, const noise) and discriminator (logits), and every phase of
one iteration of StyleGAN2 teacher training and of NICKEL & DiME (tiny16 teacher → half-width
student, DiME on the frozen teacher D's features), each phase run from the same initial state.
Compared against ``tests/fixtures/device_check_reference.npz`` (made on CPU by
``tools/make_device_reference.py``): images / ws / logits, every phase's loss metrics, and for
every updated network the gradient of the phase, read from Adam's first moment (with
β₁ = 0, ``mu`` *is* the last gradient), summarised per parameter leaf as its norm and its
projection on a fixed random unit vector. Initial weights are drawn on the host CPU from the
same seeds (and checked against the reference's sums first, so a changed initialiser is
reported as such, not as a numerics error).

Tolerances (relative to the reference's scale: ``max|Δ| / max|ref|`` for tensors,
``|Δ| / |ref|`` for losses, ``|Δ| / ‖g‖`` per gradient leaf): forward ``FWD_RTOL = 2e-4``,
losses ``LOSS_RTOL = 1e-3``, gradients ``GRAD_RTOL = 5e-3``. Error analysis: float32 rounds
with u = 6e-8; a dot product of length K (≤ 32·9 = 288 here) accumulates typically √K·u ≈
1e-6 relative (K·u ≈ 2e-5 worst case, for a different summation order: blocked GPU GEMMs,
Winograd convolutions); the tiny generator chains ~12 such layers, so a correct backend lands
near 1e-5, and 2e-4 keeps a 10× margin while a wrong kernel (a transposed filter, bf16 or
TF32 where float32 was asked — u = 4e-3 / 5e-4) misses by orders of magnitude. Losses
(softplus of logits, means) add a few roundings: 1e-3. Gradients pass the network twice, and
R1 / path length differentiate a gradient (four passes) and divide by small norms: 5e-3.

**(b) Benchmarks** (full mode: paper256; ``--tiny``: tiny16): G and D inference at batch
1/32/128 (tiny: 1/4/8) in float32 and bfloat16 mixed precision (NVlabs' rule: the 4 highest
resolutions, ``conv_clamp=256``), a teacher-training iteration and a NICKEL & DiME iteration
(paper256 teacher → r = 0.9 student, D_S fresh, DiME with CLIP-RN50 and DINO-RN50 — random
weights of the real architectures, said so in the output — against a global-statistics file)
at batch 32. Per figure: images/s (median of timed calls after compilation), compile time
(``jit(f).lower(...).compile()`` timed), peak device memory (``memory_stats()['peak_bytes_in_use']``
after the figure — a process-wide high-water mark, so it only grows — and the compiled
program's own ``memory_analysis()`` footprint), FLOPs from XLA's ``cost_analysis()`` and from
:mod:`gancomp_jax.metrics.cost` (inference), and the model FLOP utilisation against
:data:`PEAK_TFLOPS` for the device kind. A training iteration is amortised as NVlabs runs it:
Gmain + Dmain + EMA every step, Greg every 4, Dreg every 16. Figures run most important
first (batch-32 inference, the bf16 iterations, other batches, the fp32 iterations); no figure
starts after ``--budget_s`` seconds (65 % of it for ours when NVlabs is timed too); skipped
ones are recorded as such.

``--nvlabs DIR`` (an NVlabs stylegan2-ada-pytorch checkout, torch present) also times NVlabs'
G, D and training iteration in fp32 and in its fp16 mixed mode in the same run
(:mod:`gancomp_jax.accel.nvlabs_bench`). Writes ``OUT/device_check.json``,
``OUT/device_check.md`` and the output marker; exit status 0 when every correctness check
passed, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

FWD_RTOL = 2e-4
LOSS_RTOL = 1e-3
GRAD_RTOL = 5e-3
INIT_RTOL = 1e-5
REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "device_check_reference.npz"
TINY_BATCH = 8

# Dense peak TFLOP/s per device kind (vendor data sheets; substring match on device_kind, first
# hit wins): {compute: TFLOP/s}. 'float32' is the peak for float32 matmuls at JAX's *default*
# precision (TF32 tensor cores on NVIDIA Ampere+, bf16 passes on TPU).
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"bfloat16": 989.4, "float32": 494.7}),
    ("H100", {"bfloat16": 989.4, "float32": 494.7}),   # SXM; PCIe is ~756 / 378
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("L4", {"bfloat16": 121.0, "float32": 60.0}),
    ("A10", {"bfloat16": 125.0, "float32": 62.5}),
    ("T4", {"bfloat16": 65.0, "float32": 8.1}),        # fp16 tensor cores; no bf16
    ("V100", {"bfloat16": 125.0, "float32": 15.7}),    # fp16 tensor cores; no bf16
    ("TPU v6", {"bfloat16": 918.0, "float32": 918.0}),
    ("TPU v5 lite", {"bfloat16": 197.0, "float32": 197.0}),
    ("TPU v5e", {"bfloat16": 197.0, "float32": 197.0}),
    ("TPU v5", {"bfloat16": 459.0, "float32": 459.0}),
    ("TPU v4", {"bfloat16": 275.0, "float32": 275.0}),
    ("TPU v3", {"bfloat16": 123.0, "float32": 123.0}),
    ("TPU v2", {"bfloat16": 45.0, "float32": 45.0}),
]


def peak_tflops(device_kind: str, compute: str) -> float | None:
    for name, peaks in PEAK_TFLOPS:
        if name.lower() in device_kind.lower():
            return peaks.get(compute)
    return None


def host_cpu():
    return jax.devices("cpu")[0]


def accelerator():
    return jax.devices()[0]


# ---------------------------------------------------------------------------------------------
# Tiny models and configs (shared by the reference script and the check)


def _tiny_nets():
    """Teacher tiny16 G and D, a half-width student G, made on the host CPU from fixed seeds."""
    from gancomp_jax import checkpoints
    from gancomp_jax.methods._distil_common import narrow_generator
    from gancomp_jax.models import get_preset

    p = get_preset("tiny16")
    with jax.default_device(host_cpu()):
        g = checkpoints.init_network("generator", p.generator, jax.random.key(1))
        d = checkpoints.init_network("discriminator", p.discriminator, jax.random.key(2))
        s_cfg = narrow_generator(p.generator, 2, keep_const=False)
        s = checkpoints.init_network("generator", s_cfg, jax.random.key(3))
    host = lambda n: checkpoints.Network(n.kind, n.config, jax.device_get(n.variables))  # noqa: E731
    return host(g), host(d), host(s)


def _tiny_inputs(n: int = TINY_BATCH, res: int = 16, z_dim: int = 32):
    rs = np.random.RandomState(20261207)
    z = rs.randn(n, z_dim).astype(np.float32)
    img = rs.uniform(-1, 1, (n, res, res, 3)).astype(np.float32)
    return z, img


def _sums(tree) -> np.ndarray:
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]
    return np.array([sum(np.abs(x).sum() for x in leaves), sum((x * x).sum() for x in leaves)])


def teacher_config(preset: str, batch: int, mixed: bool = False):
    """StyleGAN2 teacher training (the preset's NVlabs hyper-parameters) on one device."""
    from gancomp_jax.train.config import default_train_config

    c = default_train_config()
    c.model.preset = preset
    c.model.mixed_precision = bool(mixed)
    if mixed:
        c.model.conv_clamp = 256.0
    c.batch_size = batch
    c.mesh_devices = 1
    c.mbstd_num_shards = 1
    c.total_steps = 1
    c.pl_weight = 2.0  # time / check the path-length phase even where a preset skips it
    return c


def nickel_config(preset: str, batch: int, teacher: str, student: str, embedders: dict, stats: str = "",
                  mixed: bool = False):
    """NICKEL & DiME with the released FFHQ-256 optimisation settings on one device."""
    from gancomp_jax.methods import nickel_dime
    from gancomp_jax.train.config import default_train_config

    c = default_train_config()
    c.method = nickel_dime.default_config()
    c.model.preset = preset
    c.model.mixed_precision = bool(mixed)
    c.batch_size = batch
    c.mesh_devices = 1
    c.mbstd_num_shards = 1
    c.total_steps = 1
    c.lr, c.betas, c.r1_gamma, c.r1_interval = 0.0025, (0.0, 0.99), 1.0, 16
    c.pl_weight, c.pl_interval, c.style_mixing_prob, c.ema_kimg, c.ema_rampup = 2.0, 4, 0.9, 20.0, 0.0
    m = c.method
    m.teacher, m.student = teacher, student
    m.dime.groups = max(1, batch // 8)
    m.dime.global_stats = stats
    m.dime.use = tuple(embedders)
    m.dime.embedders = embedders
    if preset == "tiny16":
        m.fm_levels = 2
    return c


@dataclasses.dataclass
class Built:
    prepared: Any
    steps: Any
    state: Any
    frozen: Any
    batch_size: int


def build_training(config, state_on_host: bool = True) -> Built:
    """The trainer's own method, networks, optimisers and jitted steps for ``config`` (one
    device, no shardings); the initial state is made on the host CPU and moved to the device."""
    from gancomp_jax.train.steps import build_steps
    from gancomp_jax.train.trainer import prepare, resolve_config

    r = resolve_config(config)
    p = prepare(r)
    if state_on_host:
        with jax.default_device(host_cpu()):
            state = jax.jit(p.init_fn)(p.loaded_trainable)
        state = jax.device_put(jax.device_get(state), accelerator())
    else:
        state = jax.jit(p.init_fn)(p.loaded_trainable)
    frozen, _ = p.place_frozen()
    steps = build_steps(p.method, p.nets.modules, p.txs, int(r.config.batch_size))
    return Built(p, steps, state, frozen, int(r.config.batch_size))


def _copy(tree):
    return jax.tree.map(lambda x: x.copy() if hasattr(x, "copy") else x, tree)


def _leaf_vectors(tree, prefix: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per leaf of ``tree``: name, L2 norm, projection on a fixed random unit vector."""
    names, norms, projs = [], [], []
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = prefix + jax.tree_util.keystr(path)
        a = np.asarray(jax.device_get(x), np.float64).ravel()
        r = np.random.RandomState(zlib.crc32(name.encode()) & 0x7FFFFFFF).randn(a.size)
        r /= max(np.linalg.norm(r), 1e-30)
        names.append(name)
        norms.append(np.linalg.norm(a))
        projs.append(float(a @ r))
    return names, np.array(norms), np.array(projs)


def _first_moment(opt_state):
    """The ``mu`` tree of an optax Adam state (the last gradient when β₁ = 0)."""
    found = []

    def visit(x):
        if hasattr(x, "mu") and hasattr(x, "nu"):
            found.append(x.mu)
        elif isinstance(x, (tuple, list)):
            for y in x:
                visit(y)
    visit(opt_state)
    if len(found) != 1:
        raise ValueError(f"expected one Adam state, found {len(found)}")
    return found[0]


def run_phases(built: Built, batch, phases=None) -> dict[str, np.ndarray]:
    """Every phase (or those named in ``phases``) from the same initial state: its metrics and
    its gradient summaries."""
    out: dict[str, np.ndarray] = {}
    for phase, fn in built.steps.phases:
        if phases is not None and phase.name not in phases:
            continue
        state, metrics = fn(_copy(built.state), built.frozen, batch)
        for k, v in jax.device_get(metrics).items():
            out[f"loss/{phase.name}/{k}"] = np.asarray(v, np.float64)
        for role in phase.updates:
            names, norms, projs = _leaf_vectors(_first_moment(state.opt[role]), f"{phase.name}/{role}")
            out[f"grad_norm/{phase.name}/{role}"] = norms
            out[f"grad_proj/{phase.name}/{role}"] = projs
    return out


PARTS = ("fwd", "teacher", "nickel")
PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


def correctness_outputs(workdir: str | Path, parts=PARTS, phases=PHASES) -> dict[str, np.ndarray]:
    """What the correctness check compares (computed on the default device): ``parts`` of
    ``fwd`` (G / D forward), ``teacher`` (StyleGAN2 phases), ``nickel`` (NICKEL & DiME phases);
    of the training parts only the ``phases`` named (each phase is its own compiled program:
    ``Gmain,Dmain`` is one plain training step, the regularisation phases cost the most)."""
    from gancomp_jax import checkpoints
    from gancomp_jax.models import Discriminator, Generator

    g, d, s = _tiny_nets()
    z, img = _tiny_inputs()
    dev = accelerator()
    out: dict[str, np.ndarray] = {"init/G": _sums(g.variables), "init/D": _sums(d.variables),
                                  "init/G_student": _sums(s.variables)}
    with jax.default_matmul_precision("highest"):
        G, D = Generator(g.config), Discriminator(d.config)
        gv, dv = jax.device_put(g.variables, dev), jax.device_put(d.variables, dev)
        zz, xx = jax.device_put(z, dev), jax.device_put(img, dev)
        out["fwd/G_ws"] = np.asarray(jax.jit(lambda v, z: G.apply(v, z, None, method=Generator.map))(gv, zz))
        out["fwd/G_img"] = np.asarray(jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))(gv, zz))
        out["fwd/G_img_trunc"] = np.asarray(jax.jit(
            lambda v, z: G.apply(v, z, truncation_psi=0.7, noise_mode="const"))(gv, zz))
        out["fwd/D_logits"] = np.asarray(jax.jit(lambda v, x: D.apply(v, x))(dv, xx))
        batch = {"image": xx, "label": jnp.zeros((img.shape[0],), jnp.int32)}
        if "teacher" not in parts and "nickel" not in parts:
            return {k: np.asarray(v) for k, v in out.items()}

    with jax.default_matmul_precision("highest"):
        if "teacher" in parts:
            built = build_training(teacher_config("tiny16", TINY_BATCH))
            st = built.state
            # the teacher run starts from the same tiny weights as the forward checks
            params = dict(st.params)
            params["G"] = jax.device_put(dict(g.variables), dev)
            params["D"] = jax.device_put({"params": d.variables["params"]}, dev)
            opt = {r: built.prepared.txs[r].init(params[r]["params"]) for r in ("G", "D")}
            built.state = st.replace(params=params, opt=opt, ema={"G": _copy(params["G"])})
            out.update({f"teacher/{k}": v for k, v in run_phases(built, batch, phases).items()})
        if "nickel" not in parts:
            return {k: np.asarray(v) for k, v in out.items()}

        work = Path(workdir)
        teacher, student = work / "teacher", work / "student"
        if not teacher.exists():
            checkpoints.save_model(teacher, {"G_ema": g, "G": g, "D": d})
        if not student.exists():
            checkpoints.save_model(student, {"G": s, "G_ema": s})
        emb = {"tdisc": {"kind": "teacher_d", "weights": "", "weight": 20.0, "preprocess": "none",
                         "blocks": ("b16", "b8")}}
        built = build_training(nickel_config("tiny16", TINY_BATCH, str(teacher), str(student), emb))
        out.update({f"nickel/{k}": v for k, v in run_phases(built, batch, phases).items()})
    return {k: np.asarray(v) for k, v in out.items()}


def _selected(key: str, parts, phases) -> bool:
    """Whether the reference quantity ``key`` (``part/kind/phase/...``) belongs to the selection."""
    f = key.split("/")
    if f[0] == "init":
        return True
    if f[0] not in parts:
        return False
    return f[0] == "fwd" or (len(f) > 2 and f[2] in phases)


def compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], parts=PARTS, phases=PHASES
            ) -> list[dict[str, Any]]:
    """One row per checked quantity of ``parts`` (training parts: of ``phases``): name, error,
    tolerance, passed."""
    rows = []
    ref = {k: v for k, v in ref.items() if _selected(k, parts, phases)}

    def row(name, err, tol, note=""):
        rows.append({"name": name, "error": float(err), "tol": tol, "passed": bool(err <= tol), "note": note})

    missing = sorted(set(ref) - set(got))
    for k in missing:
        rows.append({"name": k, "error": float("inf"), "tol": 0.0, "passed": False, "note": "not computed"})
    for k in sorted(set(ref) & set(got)):
        a, b = np.asarray(got[k], np.float64), np.asarray(ref[k], np.float64)
        if a.shape != b.shape:
            rows.append({"name": k, "error": float("inf"), "tol": 0.0, "passed": False,
                         "note": f"shape {a.shape} != reference {b.shape}"})
            continue
        if k.startswith("init/"):
            row(k, np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)), INIT_RTOL,
                "initial weights (host CPU); a failure means a different initialiser / JAX version")
        elif k.startswith("fwd/"):
            row(k, np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30), FWD_RTOL)
        elif "/loss/" in k:
            err = abs(float(a) - float(b)) / max(abs(float(b)), 1e-3)
            row(k, err, LOSS_RTOL)
        elif "/grad_norm/" in k:
            row(k, np.max(np.abs(a - b) / np.maximum(b, 1e-6 * max(b.max(), 1e-30))), GRAD_RTOL)
        elif "/grad_proj/" in k:
            norms = np.asarray(ref[k.replace("/grad_proj/", "/grad_norm/")], np.float64)
            row(k, np.max(np.abs(a - b) / np.maximum(norms, 1e-6 * max(norms.max(), 1e-30))), GRAD_RTOL)
    return rows


def load_reference(path: str | Path = REFERENCE) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference values {path} not found (make them with tools/make_device_reference.py)")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data.pop("__meta__"))) if "__meta__" in data else {}
    return data, meta


def save_reference(path: str | Path, values: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, __meta__=np.asarray(json.dumps(meta, sort_keys=True)), **values)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Benchmarks


def _cost_flops(compiled) -> float | None:
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca:
        return None
    f = ca.get("flops")
    return float(f) if f is not None and f >= 0 else None


def _program_bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if m is None:
        return None
    total = 0
    for a in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"):
        total += int(getattr(m, a, 0) or 0)
    total -= int(getattr(m, "alias_size_in_bytes", 0) or 0)
    return total


def device_peak_bytes() -> int | None:
    try:
        stats = accelerator().memory_stats() or {}
    except Exception:  # noqa: BLE001
        return None
    v = stats.get("peak_bytes_in_use")
    return int(v) if v is not None else None


def _compile(jitted, *args):
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _time_calls(call: Callable[[], Any], min_time: float, max_iters: int, min_iters: int = 3) -> float:
    """Median seconds per call (one untimed warm-up call first)."""
    jax.block_until_ready(call())
    times: list[float] = []
    t_all = time.perf_counter()
    while len(times) < min_iters or (time.perf_counter() - t_all < min_time and len(times) < max_iters):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclasses.dataclass
class Bench:
    device_kind: str
    min_time: float
    max_iters: int

    def record(self, name: str, batch: int, compute: str, seconds: float, compile_s: float,
               flops_xla: float | None, flops_analytic: float | None = None, program_bytes: int | None = None,
               extra: dict | None = None) -> dict[str, Any]:
        flops = flops_xla if flops_xla else flops_analytic
        peak = peak_tflops(self.device_kind, compute)
        achieved = flops / seconds / 1e12 if flops else None
        rec = {"name": name, "batch": batch, "compute": compute, "sec_per_call": seconds,
               "img_per_s": batch / seconds, "compile_s": compile_s, "flops_xla": flops_xla,
               "flops_analytic": flops_analytic, "tflops_achieved": achieved,
               "peak_tflops": peak, "mfu": achieved / peak if (achieved and peak) else None,
               "program_gib": program_bytes / 2 ** 30 if program_bytes else None,
               "device_peak_gib": (device_peak_bytes() or 0) / 2 ** 30 or None}
        rec.update(extra or {})
        return rec


def _mixed(cfg, mixed: bool):
    return cfg.replace(num_mixed_res=4, conv_clamp=256.0) if mixed else cfg


def bench_inference(b: Bench, preset_name: str, what: str, batch: int, mixed: bool) -> dict[str, Any]:
    from gancomp_jax import checkpoints
    from gancomp_jax.metrics.cost import discriminator_cost, generator_cost
    from gancomp_jax.models import Discriminator, Generator, get_preset

    p = get_preset(preset_name)
    dev = accelerator()
    if what == "G":
        cfg = _mixed(p.generator, mixed)
        module = Generator(cfg)
        v = jax.jit(lambda k: checkpoints.init_network("generator", cfg, k).variables)(jax.random.key(0))
        x = jax.device_put(np.random.RandomState(1).randn(batch, cfg.z_dim).astype(np.float32), dev)
        fn = jax.jit(lambda v, z: module.apply(v, z, noise_mode="const"))
        analytic = 2.0 * generator_cost(cfg)["macs"] * batch
    else:
        cfg = _mixed(p.discriminator, mixed)
        module = Discriminator(cfg)
        v = jax.jit(lambda k: checkpoints.init_network("discriminator", cfg, k).variables)(jax.random.key(0))
        r = cfg.img_resolution
        x = jax.device_put(np.random.RandomState(1).uniform(-1, 1, (batch, r, r, 3)).astype(np.float32), dev)
        fn = jax.jit(lambda v, x: module.apply(v, x))
        analytic = 2.0 * discriminator_cost(cfg)["macs"] * batch
    compiled, compile_s = _compile(fn, v, x)
    sec = _time_calls(lambda: compiled(v, x), b.min_time, b.max_iters)
    return b.record(f"{preset_name} {what} inference", batch, "bfloat16" if mixed else "float32", sec, compile_s,
                    _cost_flops(compiled), analytic, _program_bytes(compiled))


def bench_iteration(b: Bench, name: str, built: Built, batch_data, compute: str) -> dict[str, Any]:
    """Per-phase times of one training iteration (state donated and threaded through), amortised."""
    box = [built.state]
    per: dict[str, dict[str, float]] = {}
    flops_total, compile_total, prog = 0.0, 0.0, 0
    have_flops = True
    weights = {}
    for phase, fn in built.steps.phases:
        compiled, cs = _compile(fn, box[0], built.frozen, batch_data)

        def call(compiled=compiled):
            box[0], m = compiled(box[0], built.frozen, batch_data)
            return m
        sec = _time_calls(call, b.min_time, b.max_iters)
        f = _cost_flops(compiled)
        w = 1.0 / int(phase.interval)
        weights[phase.name] = w
        per[phase.name] = {"sec": sec, "compile_s": cs, "flops_xla": f, "interval": int(phase.interval)}
        compile_total += cs
        prog = max(prog, _program_bytes(compiled) or 0)
        if f is None:
            have_flops = False
        else:
            flops_total += w * f
    compiled, cs = _compile(built.steps.ema, box[0])

    def call_ema():
        box[0], m = compiled(box[0])
        return m
    sec = _time_calls(call_ema, b.min_time, b.max_iters)
    per["ema"] = {"sec": sec, "compile_s": cs, "flops_xla": _cost_flops(compiled), "interval": 1}
    compile_total += cs
    it = sum(v["sec"] / v["interval"] for v in per.values())
    built.state = box[0]
    return b.record(name, built.batch_size, compute, it, compile_total, flops_total if have_flops else None,
                    None, prog or None, {"phases": per, "sec_per_iteration_amortised": it})


def _standin_models(work: Path, preset_name: str, ratio: float, mixed: bool) -> tuple[str, str, str]:
    """Teacher (G_ema, D) and an r-pruned student (random weights) plus a random DiME
    statistics file, written once under ``work``."""
    from gancomp_jax import checkpoints
    from gancomp_jax.losses.dime_stats import save_stats
    from gancomp_jax.models import get_preset

    p = get_preset(preset_name)
    tag = f"{preset_name}_{'bf16' if mixed else 'fp32'}"
    teacher, student, stats = work / f"teacher_{tag}", work / f"student_{tag}_r{ratio}", work / "stats.npz"
    g_cfg, d_cfg = _mixed(p.generator, mixed), _mixed(p.discriminator, mixed)
    s_cfg = g_cfg.replace(channels=tuple(c - int(c * ratio) for c in g_cfg.channels))
    with jax.default_device(host_cpu()):
        if not teacher.exists():
            g = checkpoints.init_network("generator", g_cfg, jax.random.key(1))
            d = checkpoints.init_network("discriminator", d_cfg, jax.random.key(2))
            checkpoints.save_model(teacher, {"G_ema": g, "D": d}, {"source": "device_check random weights"})
        if not student.exists():
            s = checkpoints.init_network("generator", s_cfg, jax.random.key(3))
            checkpoints.save_model(student, {"G": s}, {"source": "device_check random weights"})
    if not stats.exists():
        rs = np.random.RandomState(0)
        save_stats(stats, {"global_clip_first": rs.randn(1024), "global_clip_second": rs.rand(1024) + 1,
                           "global_dino_first": rs.rand(2048), "global_dino_second": rs.rand(2048) + 1})
    return str(teacher), str(student), str(stats)


def _random_batch(batch: int, res: int):
    dev = accelerator()
    img = np.random.RandomState(2).uniform(-1, 1, (batch, res, res, 3)).astype(np.float32)
    return {"image": jax.device_put(img, dev), "label": jax.device_put(np.zeros((batch,), np.int32), dev)}


def benchmark_plan(tiny: bool) -> list[tuple[str, Callable[..., dict]]]:
    """(label, runner(bench, work)) in the order they run (the most important first)."""
    preset = "tiny16" if tiny else "paper256"
    batches = (1, 4, 8) if tiny else (1, 32, 128)
    train_batch = TINY_BATCH if tiny else 32
    ratio = 0.5 if tiny else 0.9
    plan: list[tuple[str, Callable]] = []
    for mixed in (False, True):
        for what in ("G", "D"):
            for bs in batches:
                plan.append((f"{what} b{bs} {'bf16' if mixed else 'fp32'}",
                             lambda b, w, what=what, bs=bs, mixed=mixed: bench_inference(b, preset, what, bs, mixed)))

    def teacher_iter(b, w, mixed):
        built = build_training(teacher_config(preset, train_batch, mixed), state_on_host=False)
        res = built.prepared.nets.configs["G"].img_resolution
        return bench_iteration(b, f"{preset} teacher training iteration", built, _random_batch(train_batch, res),
                               "bfloat16" if mixed else "float32")

    def nickel_iter(b, w, mixed):
        from gancomp_jax.accel.standins import register_nickel_standins

        register_nickel_standins()
        teacher, student, stats = _standin_models(w, preset, ratio, mixed)
        emb = {"dino": {"kind": "standin_dino_rn50", "weights": "random", "weight": 20.0, "preprocess": "released",
                        "blocks": ()},
               "clip": {"kind": "standin_clip_rn50", "weights": "random", "weight": 15.0, "preprocess": "released",
                        "blocks": ()}}
        if tiny:  # ResNet-50s at 224 px would dominate a CPU run: DiME on the teacher D's features instead
            emb = {"tdisc": {"kind": "teacher_d", "weights": "", "weight": 20.0, "preprocess": "none",
                             "blocks": ("b16", "b8")}}
            stats = ""
        built = build_training(nickel_config(preset, train_batch, teacher, student, emb, stats, mixed),
                               state_on_host=False)
        res = built.prepared.nets.configs["G_T"].img_resolution
        rec = bench_iteration(b, f"NICKEL & DiME iteration ({preset} → r={ratio})", built,
                              _random_batch(train_batch, res), "bfloat16" if mixed else "float32")
        rec["note"] = ("teacher and student have random weights (speed only)" if tiny else
                       "teacher, student and CLIP/DINO RN50 embedders have random weights (speed only)")
        return rec

    for mixed in (False, True):
        tag = "bf16" if mixed else "fp32"
        plan.append((f"NICKEL & DiME b{train_batch} {tag}", lambda b, w, mixed=mixed: nickel_iter(b, w, mixed)))
        plan.append((f"teacher training b{train_batch} {tag}", lambda b, w, mixed=mixed: teacher_iter(b, w, mixed)))
    # Most important first (a time budget may cut the tail): batch-32 inference, the bf16
    # training iterations, then the other batches and the fp32 iterations.
    mid = batches[1]

    def rank(label: str) -> tuple:
        return (0 if f"b{mid} " in label and ("G " in label or "D " in label) else
                1 if "bf16" in label and ("NICKEL" in label or "teacher" in label) else
                2 if ("G " in label or "D " in label) else 3, "fp32" in label)
    return sorted(plan, key=lambda item: rank(item[0]))


# ---------------------------------------------------------------------------------------------
# Report


def _fmt(v, spec="{:.3g}"):
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return spec.format(v)


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"# device_check — {env['device_kind']} ({env['backend']}), jax {env['jax']}", "",
             f"mode: {'tiny' if result['tiny'] else 'full'}; total {result['seconds']:.0f} s", "",
             "## Correctness (float32, matmul precision highest)", "",
             "| check | error | tolerance | ok |", "|---|---:|---:|---|"]
    for r in result["correctness"]:
        lines.append(f"| {r['name']} | {_fmt(r['error'])} | {r['tol']:g} | {'yes' if r['passed'] else '**NO**'} |")
    lines += ["", f"correctness: {'PASSED' if result['correctness_passed'] else 'FAILED'}", "",
              "## Benchmarks", "",
              "| figure | batch | compute | img/s | compile s | TFLOP/s | MFU | program GiB | device peak GiB |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["benchmarks"]:
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['label']} | | | {r.get('skipped') or 'error: ' + r.get('error', '')} | | | | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "—"
        lines.append(f"| {r['name']} | {r['batch']} | {r['compute']} | {_fmt(r['img_per_s'], '{:.1f}')} | "
                     f"{_fmt(r['compile_s'], '{:.1f}')} | {_fmt(r['tflops_achieved'], '{:.2f}')} | {mfu} | "
                     f"{_fmt(r['program_gib'], '{:.2f}')} | {_fmt(r['device_peak_gib'], '{:.2f}')} |")
    for r in result.get("nvlabs", []):
        if "error" in r or "skipped" in r:
            lines.append(f"| NVlabs {r.get('label', '')} | | | {r.get('skipped') or 'error: ' + r.get('error', '')} "
                         f"| | | | | |")
            continue
        lines.append(f"| NVlabs {r['name']} | {r['batch']} | {r['compute']} | {_fmt(r['img_per_s'], '{:.1f}')} | "
                     f"| | | | {_fmt(r.get('device_peak_gib'), '{:.2f}')} |")
    notes = [r["note"] for r in result["benchmarks"] if r.get("note")]
    if notes:
        lines += ["", "Note: " + notes[0] + "."]
    lines += ["", "MFU: XLA cost-analysis FLOPs (amortised over the lazy-regularisation intervals for training) "
              "per second over the device's dense peak for the compute dtype (float32 figures against the "
              "TF32 / default-precision peak)."]
    return "\n".join(lines) + "\n"


def _environment() -> dict[str, Any]:
    dev = accelerator()
    env = {"backend": jax.default_backend(), "device_kind": dev.device_kind, "device_count": jax.device_count(),
           "jax": jax.__version__, "python": sys.version.split()[0]}
    try:
        import jaxlib
        env["jaxlib"] = jaxlib.__version__
    except Exception:  # noqa: BLE001
        pass
    return env


def _check_out(out: Path) -> None:
    from gancomp_jax.utils.atomic_dir import read_marker

    if out.is_symlink():
        raise ValueError(f"--out {out} is a symbolic link; give a real folder")
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and read_marker(out) is None:
            raise ValueError(f"--out {out} is a non-empty folder that is not an output of gancomp_jax; "
                             f"give an empty or new folder")


def _write(out: Path, name: str, text: str) -> None:
    tmp = out / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / name)


def run(out: Path, tiny: bool, reference: Path, nvlabs: str | None, budget_s: float, min_time: float,
        max_iters: int, skip_bench: bool = False, parts=PARTS, phases=PHASES,
        figures: tuple[str, ...] | None = None) -> dict[str, Any]:
    from gancomp_jax.utils.atomic_dir import write_marker

    t_start = time.time()
    write_marker(out, "device_check")
    result: dict[str, Any] = {"tiny": tiny, "parts": list(parts), "correctness_phases": list(phases),
                              "environment": _environment(), "tolerances": {
        "forward": FWD_RTOL, "loss": LOSS_RTOL, "gradient": GRAD_RTOL, "init": INIT_RTOL}}
    print(f"# device_check on {result['environment']['device_kind']} ({result['environment']['backend']}), "
          f"jax {jax.__version__}", flush=True)

    ref, meta = load_reference(reference)
    result["reference_meta"] = meta
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp:
        t0 = time.time()
        got = correctness_outputs(tmp, parts, phases)
        rows = compare(got, ref, parts, phases)
        result["correctness"] = rows
        result["correctness_passed"] = all(r["passed"] for r in rows)
        result["correctness_seconds"] = time.time() - t0
        worst = max(rows, key=lambda r: r["error"] / max(r["tol"], 1e-30))
        print(f"correctness: {'PASSED' if result['correctness_passed'] else 'FAILED'} "
              f"({sum(r['passed'] for r in rows)}/{len(rows)} checks; worst {worst['name']}: "
              f"{worst['error']:.2e} vs tol {worst['tol']:g}) in {result['correctness_seconds']:.0f} s", flush=True)
        for r in rows:
            if not r["passed"]:
                print(f"  FAILED {r['name']}: error {r['error']:.3e} > tol {r['tol']:g} {r['note']}", flush=True)

        b = Bench(result["environment"]["device_kind"], min_time, max_iters)
        benches: list[dict[str, Any]] = []
        result["benchmarks"] = benches
        work = Path(tmp)
        ours_budget = budget_s * (0.65 if nvlabs else 1.0)  # leave NVlabs' figures their share
        plan = [] if skip_bench else benchmark_plan(tiny)
        if figures is not None:
            plan = [(label, runner) for label, runner in plan if label in figures]
        for label, runner in plan:
            if time.time() - t_start > ours_budget:
                benches.append({"label": label, "skipped": f"time budget {budget_s:.0f} s reached"})
                print(f"{label:34s} skipped (time budget)", flush=True)
                continue
            try:
                rec = runner(b, work)
            except Exception as e:  # noqa: BLE001 - one failing figure must not lose the others
                benches.append({"label": label, "error": f"{type(e).__name__}: {e}"[:500]})
                print(f"{label:34s} ERROR {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            rec["label"] = label
            benches.append(rec)
            mfu = f"{100 * rec['mfu']:.1f} %" if rec.get("mfu") is not None else "—"
            print(f"{label:34s} {rec['img_per_s']:10.1f} img/s  compile {rec['compile_s']:6.1f} s  MFU {mfu:>7s}  "
                  f"peak {_fmt(rec['device_peak_gib'], '{:.2f}')} GiB", flush=True)
            _write(out, "device_check.json", json.dumps(result, indent=2, default=str))  # partial results survive
        if nvlabs:
            from gancomp_jax.accel import nvlabs_bench

            remaining = budget_s - (time.time() - t_start)
            result["nvlabs"] = nvlabs_bench.run(nvlabs, tiny, remaining, min_time, max_iters)
    result["seconds"] = time.time() - t_start
    _write(out, "device_check.json", json.dumps(result, indent=2, default=str))
    _write(out, "device_check.md", markdown(result))
    print(f"wrote {out / 'device_check.json'} and {out / 'device_check.md'} ({result['seconds']:.0f} s)", flush=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="correctness against CPU references, then benchmarks, on this "
                                             "machine's accelerator (see gancomp_jax/accel/device_check.py)")
    ap.add_argument("--out", required=True, help="output folder (new, empty, or a previous device_check output)")
    ap.add_argument("--tiny", action="store_true", help="tiny configs everywhere (runs on a CPU in about a minute)")
    ap.add_argument("--nvlabs", default="", help="NVlabs stylegan2-ada-pytorch checkout: also time its G, D and "
                                                  "training iteration (needs torch)")
    ap.add_argument("--reference", default=str(REFERENCE), help="reference values (.npz)")
    ap.add_argument("--budget_s", type=float, default=None,
                    help="start no figure after this many seconds (default: 420 in full mode, none with --tiny)")
    ap.add_argument("--min_time", type=float, default=None, help="seconds of timed calls per figure")
    ap.add_argument("--max_iters", type=int, default=None, help="at most this many timed calls per figure")
    ap.add_argument("--correctness_only", action="store_true", help="skip the benchmarks")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"correctness parts to run (of {', '.join(PARTS)})")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"training phases checked in the teacher / nickel parts (of {', '.join(PHASES)})")
    ap.add_argument("--figures", default="", help="only these benchmark figures (comma-separated labels as "
                                                  "printed, e.g. 'G b4 fp32'); default: all")
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        _check_out(out)
        if args.nvlabs and not (Path(args.nvlabs) / "training" / "networks.py").is_file():
            raise ValueError(f"--nvlabs {args.nvlabs}: not an NVlabs stylegan2-ada-pytorch checkout "
                             f"(no training/networks.py)")
        parts = tuple(x.strip() for x in args.parts.split(",") if x.strip())
        if not parts or set(parts) - set(PARTS):
            raise ValueError(f"--parts {args.parts!r}: choose from {', '.join(PARTS)}")
        phases = tuple(x.strip() for x in args.phases.split(",") if x.strip())
        if not phases or set(phases) - set(PHASES):
            raise ValueError(f"--phases {args.phases!r}: choose from {', '.join(PHASES)}")
        figures = None
        if args.figures:
            figures = tuple(x.strip() for x in args.figures.split(",") if x.strip())
            known = [label for label, _ in benchmark_plan(args.tiny)]
            unknown = [f for f in figures if f not in known]
            if unknown:
                raise ValueError(f"--figures: unknown figure(s) {', '.join(map(repr, unknown))}; "
                                 f"choose from {', '.join(known)}")
        if not Path(args.reference).is_file():
            raise ValueError(f"--reference {args.reference} does not exist (make it with "
                             f"tools/make_device_reference.py)")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    budget = args.budget_s if args.budget_s is not None else (float("inf") if args.tiny else 420.0)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.tiny else 1.0)
    max_iters = args.max_iters if args.max_iters is not None else (5 if args.tiny else 30)
    result = run(out, args.tiny, Path(args.reference), args.nvlabs or None, budget, min_time, max_iters,
                 skip_bench=args.correctness_only, parts=parts, phases=phases, figures=figures)
    return 0 if result["correctness_passed"] else 1

