"""Channel pruning of a BigGAN generator (uniform width, ℓ1 or first-k channel choice).

A BigGAN generator's channels fall into *groups* that must be kept or removed together:

- ``hidden{i}``: block ``i``'s inner width, produced by ``conv1`` (weight rows, bias, SN ``u``)
  and consumed by ``bn2`` (its gain/bias linears' output rows and SN ``u``, stored statistics)
  and ``conv2`` (input columns);
- ``res{j}``: the residual stream ``channels[j]`` (``j = 0``: the first linear's output, viewed as
  ``[C, 4, 4]``, so channel ``c`` is linear outputs ``16c .. 16c+15``; ``j ≥ 1``: block ``j-1``'s
  output, produced by its ``conv2`` and ``conv_sc``) and consumed by block ``j``'s ``bn1``,
  ``conv1`` and ``conv_sc``, or, after the last block, by ``output_layer_0`` (BN gain, bias,
  statistics) and ``output_layer_2`` (input columns).

A residual width followed by self-attention is never pruned: the released attention derives
its inner widths (``C/8``, ``C/2``) from its input width, so a narrower input is not a slice of
it. The class embedding ``shared`` and the z chunks are unchanged.

Each prunable group keeps ``max(1, round(width · (1 − ratio)))`` channels (``divisor`` d:
``round(width / d)``, DGL-GAN's uniform-width student); which ones: ``'l1'`` the largest ℓ1
norms of the producing layers' output filters (raw parameters, summed over all producers of a
group: conv2 + conv_sc for a residual width; ties by lower index), ``'first'`` the first ones.
Kept indices stay in ascending order.

Identity (``tests/test_prune_biggan.py``): spectral norm's power iteration on a weight whose
removed rows/columns are zero gives the same ``u``, ``v`` and σ as on the sliced weight with the
sliced ``u``; BatchNorm is per channel (stored or batch statistics of the removed channels drop
out). So the pruned generator equals, up to float rounding, the teacher with every weight that
produces or consumes a removed channel zeroed (:func:`mask_generator`). It does *not* equal the
unmasked teacher: the removed channels' contributions and the σ of every sliced layer change
(the student is then trained/distilled, as in DGL-GAN).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

PATH = tuple  # a path into the variables: ('params' | 'buffers', module, ..., leaf)


def _bn_slices(col: str, node: str) -> list[tuple[PATH, int]]:
    """Everything indexed by the channels of a ccbn layer ``col/node`` (``blocks_i_0/bn1``)."""
    out = []
    for lin in ("gain", "bias"):
        out.append((("params", col, node, lin, "weight"), 1))
        out.append((("buffers", col, node, lin, "u*"), 1))
    out.append((("buffers", col, node, "**", "stored_mean"), 0))
    out.append((("buffers", col, node, "**", "stored_var"), 0))
    return out


def _conv_rows(col: str, node: str) -> list[tuple[PATH, int]]:
    return [(("params", col, node, "weight"), 3), (("params", col, node, "bias"), 0),
            (("buffers", col, node, "u*"), 1)]


def _conv_cols(col: str, node: str) -> list[tuple[PATH, int]]:
    return [(("params", col, node, "weight"), 2)]


def channel_groups(cfg) -> dict[str, dict[str, Any]]:
    """``{name: {'width', 'producers': [(path, axis)], 'consumers': [(path, axis)], 'prunable'}}``.

    Producers' output-filter axes define the ℓ1 score; ``res0``'s producer is the first linear
    (handled by index expansion ×16, see :func:`_expand`)."""
    B = len(cfg.channels) - 1
    groups: dict[str, dict[str, Any]] = {}
    for i in range(B):
        blk = f"blocks_{i}_0"
        groups[f"hidden{i}"] = dict(width=cfg.block_hidden(i), prunable=True,
                                    producers=_conv_rows(blk, "conv1"),
                                    consumers=_bn_slices(blk, "bn2") + _conv_cols(blk, "conv2"))
    for j in range(B + 1):
        if j == 0:
            producers = [(("params", "linear", "weight"), 1), (("params", "linear", "bias"), 0),
                         (("buffers", "linear", "u*"), 1)]
            attn = False
        else:
            blk = f"blocks_{j - 1}_0"
            producers = _conv_rows(blk, "conv2") + _conv_rows(blk, "conv_sc")
            attn = cfg.block_resolutions[j - 1] in cfg.attention
        if j < B:
            nxt = f"blocks_{j}_0"
            consumers = _bn_slices(nxt, "bn1") + _conv_cols(nxt, "conv1") + _conv_cols(nxt, "conv_sc")
        else:
            consumers = [(("params", "output_layer_0", "gain"), 0), (("params", "output_layer_0", "bias"), 0),
                         (("buffers", "output_layer_0", "**", "stored_mean"), 0),
                         (("buffers", "output_layer_0", "**", "stored_var"), 0)] + _conv_cols("output_layer_2", "")
        groups[f"res{j}"] = dict(width=int(cfg.channels[j]), prunable=not attn, producers=producers,
                                 consumers=consumers)
    return groups


def _leaves(variables, pattern: PATH):
    """(container, key) pairs for the leaves matching ``pattern`` ('*' suffix: prefix match of a
    leaf name; '**': any depth including none; '' components are skipped)."""
    pattern = tuple(p for p in pattern if p != "")
    found = []

    def walk(node, pat):
        head, rest = pat[0], pat[1:]
        if head == "**":
            walk(node, rest)
            for v in node.values():
                if isinstance(v, dict):
                    walk(v, pat)
            return
        if not rest:
            for k in node:
                if (k == head or (head.endswith("*") and k.startswith(head[:-1]))) and not isinstance(node[k], dict):
                    found.append((node, k))
            return
        if head in node and isinstance(node[head], dict):
            walk(node[head], rest)
    walk(variables, pattern)
    return found


def _expand(path: PATH, idx: np.ndarray) -> np.ndarray:
    """Channel indices → array indices (the first linear: ``16c + s``)."""
    if path[1] == "linear":
        return (idx[:, None] * 16 + np.arange(16)[None, :]).reshape(-1)
    return idx


def _as_numpy_tree(tree):
    return {k: _as_numpy_tree(v) if isinstance(v, dict) else np.array(v) for k, v in tree.items()}


def l1_scores(variables, group: dict) -> np.ndarray:
    """Σ over the group's producing weights of the ℓ1 norm of each output channel's filter."""
    score = np.zeros(group["width"], np.float64)
    for path, axis in group["producers"]:
        if path[0] != "params" or path[-1] != "weight":
            continue
        for node, k in _leaves(variables, path):
            w = np.abs(np.asarray(node[k], np.float64))
            w = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).sum(1)
            if path[1] == "linear":
                w = w.reshape(-1, 16).sum(1)
            score += w
    return score


def kept_channels(variables, cfg, ratio: float = 0.0, divisor: float | None = None,
                  criterion: str = "l1") -> dict[str, np.ndarray]:
    """Kept channel indices (ascending int arrays) of every group."""
    if criterion not in ("l1", "first"):
        raise ValueError(f"BigGAN pruning criterion must be 'l1' or 'first', got {criterion!r}")
    if divisor is not None:
        if not float(divisor) >= 1:
            raise ValueError(f"channel divisor must be ≥ 1, got {divisor}")
    elif not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    keep = {}
    for name, g in channel_groups(cfg).items():
        width = g["width"]
        if not g["prunable"]:
            keep[name] = np.arange(width)
            continue
        n = round(width / float(divisor)) if divisor is not None else round(width * (1.0 - float(ratio)))
        n = int(min(width, max(1, n)))
        if criterion == "first":
            keep[name] = np.arange(n)
        else:
            order = np.argsort(-l1_scores(variables, g), kind="stable")
            keep[name] = np.sort(order[:n])
    return keep


def _apply(variables, cfg, keep, op) -> dict:
    out = _as_numpy_tree(variables)
    for name, g in channel_groups(cfg).items():
        idx = keep[name]
        if len(idx) == g["width"] and np.array_equal(idx, np.arange(g["width"])):
            continue
        for path, axis in g["producers"] + g["consumers"]:
            for node, k in _leaves(out, path):
                node[k] = op(node[k], axis, _expand(path, np.asarray(idx)),
                             g["width"] * (16 if path[1] == "linear" else 1))
    return out


def prune_generator(variables, cfg, ratio: float = 0.0, divisor: float | None = None,
                    criterion: str = "l1"):
    """Returns ``(student config, student variables, kept indices per group)``."""
    keep = kept_channels(variables, cfg, ratio, divisor, criterion)
    B = len(cfg.channels) - 1
    new = _apply(variables, cfg, keep, lambda a, axis, idx, _: np.take(a, idx, axis=axis))
    channels = tuple(len(keep[f"res{j}"]) for j in range(B + 1))
    hidden = tuple(len(keep[f"hidden{i}"]) for i in range(B))
    return dataclasses.replace(cfg, channels=channels, hidden=hidden), new, keep


def mask_generator(variables, cfg, keep) -> dict:
    """The teacher with every weight producing or consuming a removed channel zeroed (same shapes)."""
    def zero(a, axis, idx, full):
        m = np.zeros(full, bool)
        m[idx] = True
        shape = [1] * a.ndim
        shape[axis] = full
        return np.where(m.reshape(shape), a, 0).astype(a.dtype)
    return _apply(variables, cfg, keep, zero)


def prune_networks(networks, ratio: float = 0.0, divisor: float | None = None, criterion: str = "l1",
                   reference: str | None = None):
    """Prunes every BigGAN generator of a loaded model (``{'G': Network, 'G_ema': ..., 'D': ...}``)
    with the channels chosen on ``reference`` (default ``G_ema``, else ``G``), so G and G_ema stay
    aligned; discriminators are kept. Returns ``(networks, kept indices)``; the result can be
    written with ``checkpoints.save_model`` (an ordinary model directory of narrower widths)."""
    gens = [n for n, net in networks.items() if net.kind == "biggan_generator"]
    if not gens:
        raise ValueError(f"no BigGAN generator among the networks {sorted(networks)}")
    ref = reference or ("G_ema" if "G_ema" in gens else gens[0])
    if ref not in gens:
        raise ValueError(f"reference network {ref!r} is not a BigGAN generator (have {gens})")
    keep = kept_channels(networks[ref].variables, networks[ref].config, ratio, divisor, criterion)
    B = len(networks[ref].config.channels) - 1
    out = dict(networks)
    for name in gens:
        net = networks[name]
        if net.config != networks[ref].config:
            raise ValueError(f"{name} and {ref} have different architectures")
        cfg = dataclasses.replace(net.config, channels=tuple(len(keep[f"res{j}"]) for j in range(B + 1)),
                                  hidden=tuple(len(keep[f"hidden{i}"]) for i in range(B)))
        out[name] = dataclasses.replace(net, config=cfg, variables=_apply(
            net.variables, net.config, keep, lambda a, axis, idx, _: np.take(a, idx, axis=axis)))
    return out, keep
