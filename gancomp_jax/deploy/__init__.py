"""Deployable exports of a generator: ONNX (through jax2onnx) and StableHLO (through jax.export).

:func:`export_generator` writes ``OUT_DIR`` with

* ``generator.onnx`` (ONNX opset 18, runs in ONNX Runtime) or ``generator.stablehlo``
  (a serialized ``jax.export.Exported``): one graph from ``z`` (and ``c``, and ``truncation_psi``
  unless baked in) to ``image`` float32 ``[N, 3, R, R]`` — see :mod:`.forward`;
* ``signature.json``: inputs, output, options, cost, the source's sha256, timings;
* ``README.md``: the same for people, with onnxruntime/numpy (or jax) usage (:mod:`.readme`);
* ``.gancomp_jax_output.json``: the marker ``{"tool": "export_model"}``; ``--overwrite`` replaces
  only a folder carrying it (an earlier export), never a model directory or another tool's output.

The folder is written beside ``OUT_DIR`` and moved into place when complete
(:func:`gancomp_jax.utils.atomic_dir.writing_dir`), so an error leaves nothing behind.
``tools/export_model.py`` is the command line. jax2onnx / onnx are imported only for ONNX.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import jax

from gancomp_jax.deploy.forward import DTYPES, check_options, deploy_forward, input_specs, output_shape

__all__ = ["FORMATS", "TOOL", "check_request", "export_generator", "load_export_generator"]

FORMATS = ("onnx", "stablehlo")
FILES = {"onnx": "generator.onnx", "stablehlo": "generator.stablehlo"}
TOOL = "export_model"
_DOCS = {"z": "latent, N(0, I); NVlabs seeds: RandomState(seed).randn(z_dim)",
         "c": "one-hot class label (conditional model)",
         "truncation_psi": "truncation ψ toward w_avg on all layers (1: none)"}


def check_request(fmt: str, noise_mode: str, dtype: str, batch: int | None, truncation_psi: float | None) -> None:
    """Raises ValueError for an export that cannot be made (before anything is read or written)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    check_options(noise_mode, dtype)
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f"--batch must be a positive integer or 'dynamic', got {batch!r}")
    if truncation_psi is not None and not math.isfinite(truncation_psi):
        raise ValueError(f"--truncation_psi must be a finite number, got {truncation_psi!r}")
    if fmt == "onnx":
        from importlib.util import find_spec

        missing = [m for m in ("jax2onnx", "onnx", "onnx_ir") if find_spec(m) is None]
        if missing:
            raise ValueError(f"--format onnx needs {', '.join(missing)}, which is not installed: "
                             "pip install onnx onnx-ir onnxruntime && pip install --no-deps -r requirements-export.txt "
                             "(see README, 'Deploy: ONNX and StableHLO')")


def load_export_generator(model: str, network: str = "auto"):
    """``(name, Network)`` of the generator to export from ``model`` (anything the generate job
    reads); a discriminator or a feature network is a ValueError naming what was found."""
    from gancomp_jax import checkpoints
    from gancomp_jax.jobs.generate import load_generator_source

    path = Path(model)
    if path.is_dir() and (path / "feature_net.json").is_file():
        kind = "?"
        try:
            kind = json.loads((path / "feature_net.json").read_text()).get("kind", "?")
        except (OSError, ValueError, AttributeError):
            pass
        raise ValueError(f"{model} is a converted feature network ({kind}), not a generator; export_model "
                         "exports StyleGAN2 generators")
    networks = load_generator_source(str(model), network)
    if network != "auto":
        name, net = network, networks[network]
    else:
        gens = [n for n, v in networks.items() if v.kind == "generator"]
        if not gens:
            found = ", ".join(f"{n} ({v.kind})" for n, v in networks.items())
            raise ValueError(f"{model} holds no generator (found: {found}); export_model exports generators")
        name, net = checkpoints.pick_generator(networks)
    if net.kind != "generator":
        raise ValueError(f"network {name!r} of {model} is a {net.kind}, not a generator; export_model "
                         "exports generators (e.g. G_ema, G)")
    return name, net


def export_generator(model: str, out_dir: str, fmt: str, truncation_psi: float | None = None,
                     noise_mode: str = "const", batch: int | None = None, dtype: str = "float32",
                     network: str = "auto", overwrite: bool = False) -> dict[str, Any]:
    """Exports the generator of ``model`` to ``out_dir`` (see the module docstring).

    ``truncation_psi=None`` makes ψ a graph input; ``batch=None`` a symbolic batch. Returns the
    ``signature.json`` content. Raises ValueError / FileNotFoundError / FileExistsError /
    ``OutputRefused`` before writing anything when the request or the input is bad.
    """
    from gancomp_jax.deploy.readme import render
    from gancomp_jax.metrics.cost import generator_cost
    from gancomp_jax.prune.pipeline import teacher_sha256
    from gancomp_jax.utils.atomic_dir import (OutputRefused, check_output_dir, read_marker, write_marker,
                                              writing_dir)

    check_request(fmt, noise_mode, dtype, batch, truncation_psi)
    check_output_dir(out_dir, [model], overwrite, what="OUT_DIR")
    if Path(out_dir).exists():  # --overwrite: only an earlier export, not any other output of ours
        marker = read_marker(out_dir)
        if not marker or marker.get("tool") != TOOL:
            what = f"an output of {marker['tool']}" if marker else "a model or feature-network directory"
            raise OutputRefused(f"--overwrite only replaces an earlier export of export_model, and {out_dir} is "
                                f"{what}; nothing was changed")
    name, net = load_export_generator(model, network)
    cfg = net.config
    specs = input_specs(cfg, truncation_psi)
    fn = deploy_forward(cfg, net.variables, truncation_psi, noise_mode, dtype)
    cost = generator_cost(cfg.replace(num_mixed_res=0))
    fname = FILES[fmt]
    n_dim = "N" if batch is None else batch
    summary: dict[str, Any] = dict(
        format=fmt, file=fname, source=str(model), network=name, source_sha256=teacher_sha256(model),
        truncation_psi=truncation_psi, noise_mode=noise_mode, dtype=dtype, batch=batch if batch else "dynamic",
        inputs=[dict(name=s.name, dtype=s.dtype, shape=[n_dim if d is None else d for d in s.shape],
                     doc=_DOCS[s.name]) for s in specs],
        outputs=[dict(name="image", dtype="float32", shape=[n_dim if d is None else d for d in output_shape(cfg)],
                      doc="image, NCHW, nominally in [-1, 1] (not clamped)")],
        cost={k: cost[k] for k in ("img_resolution", "widths", "params", "params_mapping", "macs",
                                   "macs_synthesis", "macs_nominal")},
        jax_version=jax.__version__,
    )
    # Convert first (the slow part, interruptible), then write the folder in one short step.
    start = time.perf_counter()
    if fmt == "onnx":
        from importlib.metadata import version

        import onnx

        from gancomp_jax.deploy.onnx_graph import OPSET, export_onnx

        data = export_onnx(fn, specs, batch, metadata=dict(
            source=str(model), source_sha256=summary["source_sha256"], network=name,
            truncation_psi="input" if truncation_psi is None else truncation_psi, noise_mode=noise_mode))
        summary.update(opset=OPSET, format_detail=f"ONNX opset {OPSET}",
                       exporter=f"jax2onnx {version('jax2onnx')}, onnx {onnx.__version__}")
    else:
        from gancomp_jax.deploy import stablehlo

        exported, data = stablehlo.export_stablehlo(fn, specs, batch)
        summary.update(platforms=list(exported.platforms),
                       calling_convention_version=exported.calling_convention_version,
                       format_detail="serialized jax.export.Exported, StableHLO",
                       exporter=f"jax.export (jax {jax.__version__})")
    summary["export_seconds"] = round(time.perf_counter() - start, 2)
    summary["file_bytes"] = len(data)
    summary["file_sha256"] = hashlib.sha256(data).hexdigest()
    with writing_dir(out_dir, [model]) as tmp:
        (tmp / fname).write_bytes(data)
        (tmp / "signature.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (tmp / "README.md").write_text(render(summary))
        write_marker(tmp, TOOL)
    return summary
