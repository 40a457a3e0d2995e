"""BigGAN-PyTorch state dicts (``G.pth``, ``G_ema.pth``, ``D.pth``) ↔ our BigGAN variables.

Key mapping (BigGAN-PyTorch → ours; the first two dotted parts of ``blocks.i.j`` and
``output_layer.k`` join into one module name ``blocks_i_j`` / ``output_layer_k``):

- ``*.weight`` of convs ``[out, in, kh, kw]`` → ``params/*/weight [kh, kw, in, out]``;
  of SN linears ``[out, in]`` → ``[in, out]``; ``shared.weight`` → ``params/shared/embedding``;
  D's ``embed.weight [n_classes, ch]`` as is;
- ``*.bias``, ``output_layer.0.gain/bias``, attention ``gamma`` → ``params`` unchanged;
- ``*.u{i}`` ``[1, out]``, ``*.sv{i}`` ``[1]`` → ``buffers``;
- BN statistics ``*.stored_mean``, ``*.stored_var`` (and ``myBN``'s ``*.bn.*`` incl.
  ``accumulation_counter``) → ``buffers/.../bn/*``.

The architecture is inferred from the tensors (:func:`infer_generator_config`,
:func:`infer_discriminator_config`); ``state_dict.pth``'s ``config`` (when given) supplies what
tensors cannot show (``SN_eps``, ``BN_eps``) and is checked against what they do show.
Pure numpy; nothing from the file is executed (the file is read by
:func:`gancomp_jax.io.torch_pickle.load_torch_file`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from gancomp_jax.convert.errors import UnsupportedNetworkError
from gancomp_jax.models.biggan.config import (BigGANDiscriminatorConfig, BigGANGeneratorConfig,
                                              d_block_resolutions, d_downsample)

_BUFFER_LEAVES = re.compile(r"^(u\d+|sv\d+|stored_mean|stored_var|accumulation_counter)$")
_STAT_LEAVES = ("stored_mean", "stored_var", "accumulation_counter")
_EMBEDDINGS = ("shared", "embed")
# BigGAN-PyTorch config defaults for what tensors do not show
DEFAULT_SN_EPS = 1e-6  # the ImageNet launch scripts' --SN_eps 1e-6 (BigGAN.py's own default: 1e-12)
DEFAULT_BN_EPS = 1e-5


def _module_parts(key: str) -> list[str]:
    parts = key.split(".")
    if parts[0] in ("blocks", "output_layer"):
        n = 3 if parts[0] == "blocks" else 2
        parts = ["_".join(parts[:n])] + parts[n:]
    return parts


def to_variables(sd: Mapping[str, np.ndarray], where: str = "") -> dict[str, Any]:
    """``{'params', 'buffers'}`` nested dicts from a BigGAN-PyTorch state dict (no shape checks)."""
    params, buffers = {}, {}
    for key, value in sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        a = np.asarray(value, dtype=np.float32)
        parts = _module_parts(key)
        leaf = parts[-1]
        if _BUFFER_LEAVES.match(leaf):
            if leaf in _STAT_LEAVES and (len(parts) < 2 or parts[-2] != "bn"):
                parts = parts[:-1] + ["bn", leaf]
            buffers[tuple(parts)] = a
            continue
        if leaf == "weight":
            if parts[0] == "shared" and len(parts) == 2:
                parts = ["shared", "embedding"]
            elif a.ndim == 4:
                a = a.transpose(2, 3, 1, 0)
            elif a.ndim == 2 and parts[0] not in _EMBEDDINGS:
                a = a.T
        elif leaf not in ("bias", "gain", "gamma"):
            raise UnsupportedNetworkError(f"{where}: unexpected tensor {key!r} {a.shape} for a BigGAN network")
        params[tuple(parts)] = np.array(a, dtype=np.float32, order="C")
    return {"params": traverse_util.unflatten_dict(params), "buffers": traverse_util.unflatten_dict(buffers)}


def to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """BigGAN-PyTorch state dict (numpy, float32) from our variables (inverse of :func:`to_variables`)."""
    out = {}
    for coll in ("params", "buffers"):
        for path, v in traverse_util.flatten_dict(dict(variables.get(coll, {}))).items():
            parts = list(path)
            a = np.asarray(v, dtype=np.float32)
            if coll == "buffers" and parts[-1] in _STAT_LEAVES and parts[-2] == "bn":
                mybn = _has_counter(variables, parts[:-1])
                if not mybn:
                    parts = parts[:-2] + [parts[-1]]
            if coll == "params" and parts[-1] in ("weight", "embedding"):
                if parts == ["shared", "embedding"]:
                    parts = ["shared", "weight"]
                elif a.ndim == 4:
                    a = a.transpose(3, 2, 0, 1)
                elif a.ndim == 2 and parts[0] not in _EMBEDDINGS:
                    a = a.T
            head = parts[0].split("_")
            if head[0] == "blocks" or parts[0].startswith("output_layer_"):
                prefix = ["blocks"] + head[1:] if head[0] == "blocks" else ["output_layer", head[-1]]
                parts = prefix + parts[1:]
            out[".".join(parts)] = np.array(a, dtype=np.float32, order="C")
    return out


def _has_counter(variables, path) -> bool:
    node = variables["buffers"]
    for p in path:
        node = node[p]
    return "accumulation_counter" in node


# ---------------------------------------------------------------------------------------------
# Architecture inference


def _shape(sd, key, where) -> tuple[int, ...]:
    if key not in sd:
        raise UnsupportedNetworkError(f"{where}: missing tensor {key!r} (not a BigGAN-PyTorch network?)")
    return tuple(np.shape(sd[key]))


def _num_blocks(sd, where) -> int:
    idx = sorted({int(m.group(1)) for k in sd for m in [re.match(r"^blocks\.(\d+)\.0\.conv1\.weight$", k)] if m})
    if not idx or idx != list(range(len(idx))):
        raise UnsupportedNetworkError(f"{where}: no consecutive blocks.<i>.0.conv1.weight tensors "
                                      f"(found block indices {idx})")
    return len(idx)


def _num_svs(sd, prefix) -> int:
    return len([k for k in sd if re.match(re.escape(prefix) + r"\.u\d+$", k)])


def _check_config(cfg_in: Mapping[str, Any] | None, found: Mapping[str, Any], where: str) -> None:
    if not cfg_in:
        return
    for k, v in found.items():
        if k in cfg_in and cfg_in[k] is not None and cfg_in[k] != v:
            raise UnsupportedNetworkError(f"{where}: state_dict config says {k}={cfg_in[k]!r} but the tensors "
                                          f"show {v!r}")


def _g_attn_string(att) -> str:
    return "_".join(str(a) for a in att) or "0"


def infer_generator_config(sd: Mapping[str, np.ndarray], where: str = "G",
                           run_config: Mapping[str, Any] | None = None) -> BigGANGeneratorConfig:
    """The generator's architecture from its tensors (+ ``state_dict.pth``'s config for eps)."""
    nb = _num_blocks(sd, where)
    resolution = 4 * 2 ** nb
    if "shared.weight" not in sd:
        raise UnsupportedNetworkError(f"{where}: no shared.weight: only G_shared=True generators are supported")
    n_classes, shared_dim = _shape(sd, "shared.weight", where)
    lin_out, lin_in = _shape(sd, "linear.weight", where)
    if lin_out % 16:
        raise UnsupportedNetworkError(f"{where}: linear.weight has {lin_out} outputs, not a multiple of 4x4")
    chans = [lin_out // 16]
    hidden = []
    for i in range(nb):
        h_out, h_in = _shape(sd, f"blocks.{i}.0.conv1.weight", where)[:2]
        o_out, o_in = _shape(sd, f"blocks.{i}.0.conv2.weight", where)[:2]
        if h_in != chans[-1] or o_in != h_out:
            raise UnsupportedNetworkError(f"{where}: block {i} conv widths do not chain "
                                          f"(in {h_in} vs previous {chans[-1]}, conv2 in {o_in} vs conv1 out {h_out})")
        chans.append(o_out)
        hidden.append(h_out)
    cond_in = _shape(sd, "blocks.0.0.bn1.gain.weight", where)[1]
    hier = cond_in != shared_dim
    if hier:
        chunk = cond_in - shared_dim
        if chunk != lin_in or chunk < 1:
            raise UnsupportedNetworkError(f"{where}: ccbn input {cond_in} = shared_dim {shared_dim} + z chunk, but "
                                          f"linear.weight takes {lin_in}")
        dim_z = chunk * (nb + 1)
    else:
        dim_z = lin_in
    attention = tuple(8 * 2 ** i for i in range(nb) if f"blocks.{i}.1.gamma" in sd)
    mybn = "output_layer.0.bn.stored_mean" in sd
    rc = dict(run_config or {})
    found = {"resolution": resolution, "dim_z": dim_z, "shared_dim": shared_dim, "hier": hier,
             "n_classes": n_classes, "G_attn": _g_attn_string(attention), "mybn": mybn,
             "num_G_SVs": _num_svs(sd, "linear")}
    if rc.get("G_attn") is not None:
        rc["G_attn"] = _g_attn_string(sorted({int(a) for a in str(rc["G_attn"]).split("_") if a != "0"}
                                             & set(8 * 2 ** i for i in range(nb))))
    if rc.get("dim_z") is not None and hier:
        rc["dim_z"] = (int(rc["dim_z"]) // (nb + 1)) * (nb + 1)
    if rc.get("shared_dim") == 0:
        rc["shared_dim"] = rc.get("dim_z")
    _check_config(rc, found, where)
    hidden_t = () if hidden == chans[1:] else tuple(hidden)
    try:
        return BigGANGeneratorConfig(
            resolution=resolution, channels=tuple(chans), hidden=hidden_t, dim_z=dim_z, shared_dim=shared_dim,
            hier=hier, n_classes=n_classes, attention=attention, mybn=mybn,
            bn_eps=float(rc.get("BN_eps", DEFAULT_BN_EPS)), sn_eps=float(rc.get("SN_eps", DEFAULT_SN_EPS)),
            num_svs=max(_num_svs(sd, "linear"), 1), num_itrs=int(rc.get("num_G_SV_itrs", 1)))
    except ValueError as e:
        raise UnsupportedNetworkError(f"{where}: {e}") from None


def infer_discriminator_config(sd: Mapping[str, np.ndarray], where: str = "D",
                               run_config: Mapping[str, Any] | None = None) -> BigGANDiscriminatorConfig:
    nb = _num_blocks(sd, where)
    by_blocks = {len(d_downsample(r)): r for r in (32, 64, 128, 256, 512)}
    if nb not in by_blocks:
        raise UnsupportedNetworkError(f"{where}: {nb} D blocks match no BigGAN resolution "
                                      f"({ {v: k for k, v in by_blocks.items()} })")
    resolution = by_blocks[nb]
    chans, hidden = [], []
    prev = _shape(sd, "blocks.0.0.conv1.weight", where)[1]
    img_channels = prev
    for i in range(nb):
        h_out, h_in = _shape(sd, f"blocks.{i}.0.conv1.weight", where)[:2]
        o_out, o_in = _shape(sd, f"blocks.{i}.0.conv2.weight", where)[:2]
        if h_in != prev or o_in != h_out:
            raise UnsupportedNetworkError(f"{where}: block {i} conv widths do not chain")
        chans.append(o_out)
        hidden.append(h_out)
        prev = o_out
    n_classes, emb_dim = _shape(sd, "embed.weight", where)
    if emb_dim != chans[-1]:
        raise UnsupportedNetworkError(f"{where}: embed.weight width {emb_dim} != last block width {chans[-1]}")
    keys = d_block_resolutions(resolution)
    att = tuple(sorted({keys[i] for i in range(nb) if f"blocks.{i}.1.gamma" in sd}))
    rc = dict(run_config or {})
    found = {"resolution": resolution, "n_classes": n_classes}
    _check_config(rc, found, where)
    cfg_kw = dict(resolution=resolution, channels=tuple(chans), hidden=() if hidden == chans else tuple(hidden),
                  n_classes=n_classes, attention=att, sn_eps=float(rc.get("SN_eps", DEFAULT_SN_EPS)),
                  num_svs=max(_num_svs(sd, "linear"), 1), num_itrs=int(rc.get("num_D_SV_itrs", 1)),
                  img_channels=img_channels)
    try:
        cfg = BigGANDiscriminatorConfig(**cfg_kw)
    except ValueError as e:
        raise UnsupportedNetworkError(f"{where}: {e}") from None
    want = set(cfg.attention_blocks())
    have = {i for i in range(nb) if f"blocks.{i}.1.gamma" in sd}
    if want != have:
        raise UnsupportedNetworkError(f"{where}: attention after blocks {sorted(have)} cannot be expressed with "
                                      f"BigGAN-PyTorch's D_attn keys {keys}")
    return cfg


def check_against(variables: Mapping[str, Any], template: Mapping[str, Any], where: str) -> None:
    """Same tree and shapes as ``template`` (abstract variables of the inferred config)."""
    for coll in ("params", "buffers"):
        got = traverse_util.flatten_dict(dict(variables.get(coll, {})), sep="/")
        want = traverse_util.flatten_dict(dict(template.get(coll, {})), sep="/")
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        if missing or extra:
            raise UnsupportedNetworkError(f"{where}: {coll}: missing {missing[:5]}, unexpected {extra[:5]}")
        for k, v in want.items():
            if tuple(np.shape(got[k])) != tuple(v.shape):
                raise UnsupportedNetworkError(f"{where}: {coll}/{k}: shape {np.shape(got[k])}, "
                                              f"expected {tuple(v.shape)}")
            if not np.all(np.isfinite(got[k])):
                raise UnsupportedNetworkError(f"{where}: {coll}/{k}: non-finite values")
