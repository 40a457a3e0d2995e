"""Singular Value Scaling (SVS; Kim & Yoo, AAAI 2025): refine a pruned generator before fine-tuning.

What the released code computes (``LAIT-CVLab/Singular-Value-Scaling``,
``stylegan2-compression/training/training_loop_stylekd_scaling.py``, ``--initialize scaling
--initialize-torgb scaling``), on the student's synthesis network only (mapping untouched):

* every parameter whose NVlabs name contains ``weight`` — modulated-conv weights
  ``[out, in, k, k]`` reshaped to ``[out, in·k·k]``, the affine (style) FC weights ``[out, in]``,
  ToRGB weights — is replaced by ``W' = U diag(√σ) Vᵀ`` where ``W = U diag(σ) Vᵀ`` (thin SVD):
  every singular value ``σ`` becomes ``√σ``;
* every parameter whose name contains ``bias`` (conv biases, ToRGB biases, *and* the affine
  biases) is divided by ``√(‖b‖₂ + 1e-8)`` (``b *= (‖b‖ + 1e-8).rsqrt()``);
* ``const`` and ``noise_strength`` are left as they are.

``torgb=False`` / ``synthesis=False`` skip the ToRGB group / the other layers (the released
``--initialize-torgb`` / ``--initialize`` set to anything else). The operation is exact up to
float64 SVD round-off; it is applied to ``G`` and ``G_ema`` of a pruned model (``D`` untouched),
as the released loop scales ``G`` before copying it to ``G_ema``.

Where we differ from the released code: nothing in the arithmetic. Our layouts differ
(conv weights ``[kh, kw, in, out]``, affine ``[in, out]``); :func:`sqrt_singular_values`
works on the NVlabs layout, converted both ways, so the result is the released one
bit-for-bit up to SVD round-off. The released loop scales the student while loading it for
fine-tuning; here it is a separate step (``config.svs=True`` in the prune job, or
``tools/svs.py PRUNED_MODEL OUT_MODEL`` on an existing model directory), so the scaled model can
be inspected and fine-tuned by any method.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

BIAS_EPS = 1e-8


def sqrt_singular_values(w: np.ndarray) -> np.ndarray:
    """``W [out, ...]`` (NVlabs layout) → ``U diag(√σ) Vᵀ`` of ``W`` reshaped to ``[out, -1]``, same shape."""
    w = np.asarray(w, np.float64)
    m = w.reshape(w.shape[0], -1)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    return ((u * np.sqrt(s)) @ vt).reshape(w.shape)


def scale_bias(b: np.ndarray) -> np.ndarray:
    """``b / √(‖b‖₂ + 1e-8)``."""
    b = np.asarray(b, np.float64)
    return b / np.sqrt(np.linalg.norm(b) + BIAS_EPS)


def _scale_weight(name: str, w: np.ndarray) -> np.ndarray:
    """Our layout → NVlabs layout → scaled → our layout."""
    if w.ndim == 4:       # conv [kh, kw, in, out] <-> [out, in, kh, kw]
        return np.transpose(sqrt_singular_values(np.transpose(w, (3, 2, 0, 1))), (2, 3, 1, 0))
    if w.ndim == 2:       # FC [in, out] <-> [out, in]
        return sqrt_singular_values(w.T).T
    raise ValueError(f"SVS: synthesis weight {name} has shape {w.shape}; expected a conv [kh, kw, in, out] "
                     "or a fully-connected [in, out] weight")


def svs_params(params: Mapping[str, Any], synthesis: bool = True, torgb: bool = True) -> dict[str, Any]:
    """A copy of generator ``params`` (``{'mapping', 'synthesis'}``) with SVS applied to the synthesis."""
    if "synthesis" not in params:
        raise ValueError(f"SVS needs generator params with a 'synthesis' entry, got keys {sorted(params)}")

    def walk(tree, path):
        out = {}
        for k, v in tree.items():
            p = path + (k,)
            if isinstance(v, Mapping):
                out[k] = walk(v, p)
                continue
            name = ".".join(p)
            enabled = torgb if "torgb" in p else synthesis
            arr = np.asarray(v)
            if enabled and k == "weight":
                out[k] = _scale_weight(name, arr).astype(arr.dtype)
            elif enabled and k == "bias":
                out[k] = scale_bias(arr).astype(arr.dtype)
            else:
                out[k] = arr
        return out

    return {**dict(params), "synthesis": walk(params["synthesis"], ("synthesis",))}


def svs_network(net, synthesis: bool = True, torgb: bool = True):
    """A generator :class:`~gancomp_jax.checkpoints.Network` with SVS applied (buffers untouched)."""
    from gancomp_jax.checkpoints import Network
    if net.kind != "generator":
        raise ValueError(f"SVS applies to generators, got a {net.kind}")
    variables = dict(net.variables)
    variables["params"] = svs_params(variables["params"], synthesis, torgb)
    return Network(net.kind, net.config, variables)


def svs_model(src, dst, synthesis: bool = True, torgb: bool = True, overwrite: bool = False) -> str:
    """Model directory ``src`` → ``dst`` with SVS on ``G`` and ``G_ema`` (the other networks copied).

    The metadata keeps ``src``'s and adds ``svs: {source, synthesis, torgb}``.
    """
    from gancomp_jax import checkpoints
    from gancomp_jax.utils.atomic_dir import check_output_dir
    check_output_dir(dst, (src,), overwrite, what="output")  # before reading: never replaces src or foreign files
    networks = checkpoints.load_model(src)
    gens = [n for n in ("G", "G_ema") if n in networks]
    if not gens:
        raise ValueError(f"{src} has no generator 'G' or 'G_ema' (networks: {sorted(networks)})")
    out = {n: svs_network(net, synthesis, torgb) if n in gens else net for n, net in networks.items()}
    meta = dict(checkpoints.read_description(src).get("metadata", {}))
    meta["svs"] = {"source": str(src), "synthesis": bool(synthesis), "torgb": bool(torgb)}
    return str(checkpoints.save_model(dst, out, meta, overwrite=overwrite, sources=(src,)))
