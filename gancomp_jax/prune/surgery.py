"""Weight surgery: slice a teacher generator's variables into a narrower student.

Given, per layer, the kept output-channel indices ``kept[name]`` (teacher indices, ascending):

* ``b4.const``: the constant's channels;
* each modulated conv: weight ``[kh, kw, in, out]`` by its input layer's and its own kept
  channels, bias by its own, the style affine's weight columns and bias by the input layer's;
* each ToRGB: weight input channels and affine by the block's ``conv1`` channels (bias, 3 outputs
  untouched); resnet ``skip`` convs by input and output;
* noise strengths, noise buffers, the mapping network and ``w_avg``: unchanged.

Exactness. Modulated convs are demodulated, so their missing input channels change nothing but
the (kept) sums. ToRGB, however, scales its styles by the equalised-lr gain ``1/sqrt(in)`` of
its *current* input width (and a resnet skip conv its weight by ``1/sqrt(in)``): a student with
fewer inputs would weigh every kept channel by ``sqrt(C_t / C_s)`` more than the teacher did.
``exact=True`` multiplies those weights by ``sqrt(C_s / C_t)`` so the student computes exactly
the teacher with the removed channels' weights set to zero; ``exact=False`` ("as released")
copies them unchanged, as CAGC (``Util/mask_util.py``) and NICKEL & DiME (``utils/mask_util.py``)
do — their students start with ToRGB contributions ``sqrt(C_t / C_s)`` times stronger.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from gancomp_jax.checkpoints import Network, check_variables
from gancomp_jax.models.config import GeneratorConfig, block_resolutions, resolution_log2
from gancomp_jax.prune.widths import layer_names


def select_kept(scores: Mapping[str, np.ndarray], cfg: GeneratorConfig, widths: tuple[int, ...]
                ) -> dict[str, np.ndarray]:
    """Per layer, the ascending indices of the ``widths[i]`` highest-scoring channels.

    The ``C - width`` lowest scores are removed (``argsort(score)[:n_remove]``, as released; a
    stable sort, so ties remove the lower index first).
    """
    kept = {}
    for name, c, w in zip(layer_names(cfg), cfg.channels, widths):
        s = np.asarray(scores[name])
        if s.shape != (c,):
            raise ValueError(f"scores for layer {name} have shape {s.shape}, expected ({c},)")
        if not 1 <= w <= c:
            raise ValueError(f"layer {name}: cannot keep {w} of {c} channels")
        removed = np.argsort(s, kind="stable")[:c - w]
        keep = np.ones(c, bool)
        keep[removed] = False
        kept[name] = np.flatnonzero(keep)
    return kept


def _gain_rescale(k_in: np.ndarray, c_in: int, exact: bool) -> float | None:
    if not exact or len(k_in) == c_in:
        return None
    return float(np.sqrt(len(k_in) / c_in))


def _slice_modconv(p: dict, k_in: np.ndarray, k_out: np.ndarray | None, rescale: float | None = None) -> None:
    p["affine"]["weight"] = p["affine"]["weight"][:, k_in]
    p["affine"]["bias"] = p["affine"]["bias"][k_in]
    w = p["weight"][:, :, k_in]
    if k_out is not None:
        w = w[..., k_out]
        p["bias"] = p["bias"][k_out]
    if rescale is not None:
        w = (w.astype(np.float64) * rescale).astype(p["weight"].dtype)
    p["weight"] = w


def slice_generator(teacher: Network, kept: Mapping[str, np.ndarray], exact: bool = True) -> Network:
    """The student generator: ``teacher`` with only the ``kept`` channels of every layer."""
    cfg = teacher.config
    names = layer_names(cfg)
    missing = [n for n in names if n not in kept]
    if missing:
        raise ValueError(f"kept channels missing for layers {missing}")
    K = []
    for name, c in zip(names, cfg.channels):
        k = np.asarray(kept[name], dtype=np.int64)
        if k.ndim != 1 or len(k) < 1 or np.any(np.diff(k) <= 0) or k[0] < 0 or k[-1] >= c:
            raise ValueError(f"kept channels of {name} must be ascending, distinct indices in [0, {c}), "
                             f"at least one; got {k.tolist()[:10]}")
        K.append(k)
    student_cfg = cfg.replace(channels=tuple(len(k) for k in K))
    variables = jax_free(teacher.variables)  # new dicts; arrays are replaced, never mutated
    syn = variables["params"]["synthesis"]
    for res in block_resolutions(cfg.img_resolution):
        blk = syn[f"b{res}"]
        if res == 4:
            i_c1 = 1
            blk["const"] = blk["const"][..., K[0]]
            _slice_modconv(blk["conv1"], K[0], K[1])
        else:
            i_c0 = 2 * (resolution_log2(res) - 2)
            i_in, i_c1 = i_c0 - 1, i_c0 + 1
            _slice_modconv(blk["conv0"], K[i_in], K[i_c0])
            _slice_modconv(blk["conv1"], K[i_c0], K[i_c1])
            if "skip" in blk:
                w = blk["skip"]["weight"][:, :, K[i_in]][..., K[i_c1]]
                r = _gain_rescale(K[i_in], cfg.channels[i_in], exact)
                blk["skip"]["weight"] = w if r is None else (w.astype(np.float64) * r).astype(w.dtype)
        if "torgb" in blk:
            _slice_modconv(blk["torgb"], K[i_c1], None, _gain_rescale(K[i_c1], cfg.channels[i_c1], exact))
    student = Network("generator", student_cfg, variables)
    check_variables("student G", student)
    return student


def jax_free(tree):
    """Nested dicts of numpy arrays (copies nothing that is already numpy)."""
    if isinstance(tree, Mapping):
        return {k: jax_free(v) for k, v in tree.items()}
    return np.asarray(tree)
