"""The README.md written beside an exported generator (what a deployer needs, nothing else)."""

from __future__ import annotations

from typing import Any


def _shape(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "scalar"


def _feed(inputs: list[dict[str, Any]], batch) -> str:
    lines = []
    n = batch if isinstance(batch, int) else 4
    for s in inputs:
        if s["name"] == "z":
            lines.append(f"z = np.stack([np.random.RandomState(seed).randn({s['shape'][1]}) for seed in range({n})])"
                         ".astype(np.float32)")
        elif s["name"] == "c":
            lines.append(f"c = np.zeros(({n}, {s['shape'][1]}), np.float32); c[:, 0] = 1  # one-hot class labels")
        elif s["name"] == "truncation_psi":
            lines.append("truncation_psi = np.array(0.7, np.float32)  # 1.0: no truncation")
    return "\n".join(lines)


def render(summary: dict[str, Any]) -> str:
    """Markdown for ``summary`` (the content of ``signature.json``)."""
    fmt, fname = summary["format"], summary["file"]
    inputs, out = summary["inputs"], summary["outputs"][0]
    cost = summary["cost"]
    names = ", ".join(s["name"] for s in inputs)
    rows = "\n".join(f"| `{s['name']}` | {s['dtype']} | {_shape(s['shape'])} | {s['doc']} |" for s in inputs)
    psi = summary["truncation_psi"]
    lines = [
        f"# {fname}: a StyleGAN2 generator exported by gancomp_jax",
        "",
        f"Format: **{fmt}** ({summary['format_detail']}). Source model: `{summary['source']}` "
        f"(network `{summary['network']}`), sha256 `{summary['source_sha256']}`.",
        f"Noise: `{summary['noise_mode']}`; truncation ψ: "
        + (f"{psi} (baked in, all layers)" if psi is not None else "an input (`truncation_psi`)")
        + f"; compute dtype: {summary['dtype']}. File sha256 `{summary['file_sha256']}`, "
          f"{summary['file_bytes']:,} bytes.",
        "",
        f"Model: {cost['img_resolution']}×{cost['img_resolution']} pixels, widths {cost['widths']}, "
        f"{cost['params']:,} parameters, {cost['macs']:,} MACs per image "
        f"({cost['macs_synthesis']:,} in the synthesis network; gancomp_jax.metrics.cost, executed convention).",
        "",
        "## Inputs and output",
        "",
        "| name | dtype | shape | meaning |",
        "|---|---|---|---|",
        rows,
        f"| `{out['name']}` (output) | {out['dtype']} | {_shape(out['shape'])} | {out['doc']} |",
        "",
        "`N` is the batch size (any N ≥ 1 when it is symbolic). The image is NVlabs' layout and "
        "range, not clamped: uint8 = `clip(image * 127.5 + 128, 0, 255)` truncated "
        "(`np.clip(...).astype(np.uint8)`), channels first.",
        "",
        "Latents follow the NVlabs seed convention: `z = np.random.RandomState(seed).randn(z_dim)`.",
        "",
        "## Python usage",
        "",
    ]
    feed = _feed(inputs, summary["batch"])
    if fmt == "onnx":
        lines += [
            "Needs only `numpy` and `onnxruntime` (and `pillow` to write PNGs):",
            "",
            "```python",
            "import numpy as np",
            "import onnxruntime as ort",
            "",
            f"session = ort.InferenceSession('{fname}', providers=['CPUExecutionProvider'])",
            feed,
            f"(image,) = session.run(None, {{{', '.join(repr(s['name']) + ': ' + s['name'] for s in inputs)}}})",
            "uint8 = np.clip(image * 127.5 + 128, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)  # NHWC",
            "```",
            "",
            "`tools/onnx_generate.py` of gancomp_jax does this for a list of seeds and writes `seed%04d.png`.",
        ]
    else:
        lines += [
            "Needs only `jax` (the same or a newer version than the exporter's "
            f"{summary['jax_version']}; platforms {', '.join(summary['platforms'])}) and `numpy`:",
            "",
            "```python",
            "import jax",
            "import numpy as np",
            "",
            f"exported = jax.export.deserialize(bytearray(open('{fname}', 'rb').read()))",
            feed,
            f"image = np.asarray(exported.call({names}))",
            "uint8 = np.clip(image * 127.5 + 128, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)  # NHWC",
            "```",
            "",
            "`signature.json` lists the inputs, output, platforms and the calling-convention version.",
        ]
    lines += ["", f"Exported in {summary['export_seconds']:.1f} s with {summary['exporter']}.", ""]
    return "\n".join(lines)
