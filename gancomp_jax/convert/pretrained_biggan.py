"""pytorch-pretrained-biggan state dict (``pytorch_model.bin``) <-> our
:class:`~gancomp_jax.models.biggan.pretrained.PretrainedBigGANGenerator` variables, and the
architecture inferred from the tensors and checked against its ``config.json``.

From the tensors: ``z_dim`` and ``n_classes`` (``embeddings.weight [z_dim, n_classes]``), ``ch``
(``conv_to_rgb``), the blocks and their widths (``bn_0`` / ``conv_3``), the attention position
(the ``layers.K`` holding ``gamma``), ``n_stats`` (``running_means``). Which blocks upsample is
not visible in the tensors (the convolutions are the same): it comes from ``config.json``'s
``layers``, as do ``eps`` and ``output_dim`` (checked: ``4 * 2**#upsampling``). Every other
``config.json`` value must agree with the tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gancomp_jax.convert.errors import UnsupportedNetworkError

PREFIX = "generator."


def _get(sd, key, where, ndim):
    if key not in sd:
        raise UnsupportedNetworkError(f"{where}: missing tensor '{key}'")
    v = sd[key]
    if v.ndim != ndim:
        raise UnsupportedNetworkError(f"{where}: '{key}' has shape {tuple(v.shape)}, expected {ndim} dims")
    return v


def infer_config(sd: dict[str, np.ndarray], cfg_json: dict[str, Any], where: str):
    """:class:`PretrainedBigGANConfig` from the tensors (and ``config.json`` for upsampling/eps)."""
    from gancomp_jax.models.biggan.pretrained import PretrainedBigGANConfig

    z_dim, n_classes = (int(x) for x in _get(sd, "embeddings.weight", where, 2).shape)
    ch = int(_get(sd, PREFIX + "conv_to_rgb.weight_orig", where, 4).shape[0])
    n_stats = int(_get(sd, PREFIX + "bn.running_means", where, 2).shape[0])
    modules = sorted({int(k.split(".")[2]) for k in sd if k.startswith(PREFIX + "layers.")})
    if modules != list(range(len(modules))):
        raise UnsupportedNetworkError(f"{where}: generator.layers indices {modules} are not 0..{len(modules) - 1}")
    widths, attn = [], []
    for m in modules:
        p = f"{PREFIX}layers.{m}."
        if p + "gamma" in sd:
            attn.append(len(widths))
            continue
        cin = int(_get(sd, p + "bn_0.running_means", where, 2).shape[1])
        cout = int(_get(sd, p + "conv_3.weight_orig", where, 4).shape[0])
        if cin % ch or cout % ch:
            raise UnsupportedNetworkError(f"{where}: block {m} widths {cin}->{cout} are not multiples of ch={ch}")
        widths.append((cin // ch, cout // ch))
    if len(attn) != 1:
        raise UnsupportedNetworkError(f"{where}: expected one self-attention layer (a 'gamma'), found {len(attn)}")
    layers_json = cfg_json.get("layers")
    if not isinstance(layers_json, list) or len(layers_json) != len(widths) or not all(
            isinstance(x, list) and len(x) == 3 for x in layers_json):
        raise UnsupportedNetworkError(f"{where}: config.json 'layers' should list {len(widths)} "
                                      f"[upsample, in, out] triples (the file has {len(widths)} blocks)")
    layers = []
    for k, ((a, b), (up, ja, jb)) in enumerate(zip(widths, layers_json)):
        if not isinstance(up, bool) or (ja, jb) != (a, b):
            raise UnsupportedNetworkError(f"{where}: config.json layers[{k}] = {[up, ja, jb]} but the tensors give "
                                          f"multipliers ({a}, {b})")
        layers.append((up, a, b))
    values = {"resolution": cfg_json.get("output_dim"), "z_dim": z_dim, "channel_width": ch, "n_classes": n_classes,
              "layers": tuple(layers), "attention_layer_position": attn[0], "eps": cfg_json.get("eps", 1e-4),
              "n_stats": n_stats}
    for jkey, key in (("z_dim", "z_dim"), ("channel_width", "channel_width"), ("num_classes", "n_classes"),
                      ("attention_layer_position", "attention_layer_position"), ("n_stats", "n_stats")):
        if jkey in cfg_json and cfg_json[jkey] != values[key]:
            raise UnsupportedNetworkError(f"{where}: config.json {jkey}={cfg_json[jkey]!r} but the tensors give "
                                          f"{values[key]!r}")
    if not isinstance(values["resolution"], int) or isinstance(values["resolution"], bool):
        raise UnsupportedNetworkError(f"{where}: config.json 'output_dim' should be an integer")
    if not isinstance(values["eps"], (int, float)) or isinstance(values["eps"], bool):
        raise UnsupportedNetworkError(f"{where}: config.json 'eps' should be a number")
    try:
        return PretrainedBigGANConfig(**values)
    except ValueError as e:
        raise UnsupportedNetworkError(f"{where}: {e}") from None


def to_variables(sd: dict[str, np.ndarray]) -> dict[str, dict]:
    """``{'params', 'buffers'}`` nested dicts (float32) from the state dict's names."""
    from gancomp_jax.models.biggan.pretrained import BUFFER_NAMES

    out: dict[str, dict] = {"params": {}, "buffers": {}}
    for key, value in sd.items():
        parts = key[len(PREFIX):].split(".") if key.startswith(PREFIX) else key.split(".")
        if parts[0] == "layers":
            parts = [f"layers_{parts[1]}"] + parts[2:]
        node = out["buffers" if parts[-1] in BUFFER_NAMES else "params"]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = np.asarray(value, np.float32)
    return out


def from_variables(variables: dict[str, dict]) -> dict[str, np.ndarray]:
    """The inverse of :func:`to_variables` (state-dict names)."""
    sd = {}

    def walk(node, path):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, path + [k])
            else:
                parts = path + [k]
                if parts[0].startswith("layers_"):
                    parts = ["layers", parts[0][len("layers_"):]] + parts[1:]
                name = ".".join(parts)
                sd[name if name.startswith("embeddings.") else PREFIX + name] = np.asarray(v)

    for c in ("params", "buffers"):
        walk(variables.get(c, {}), [])
    return sd


FORMAT = "pretrained-biggan"
DESCRIPTION = "pytorch-pretrained-biggan BigGAN-deep (pytorch_model.bin + config.json)"


def weights_and_config(path) -> tuple:
    """``(pytorch_model.bin, config.json)`` paths for a folder or for the ``.bin`` file itself."""
    from pathlib import Path

    from gancomp_jax.io.pretrained_biggan_bin import CONFIG_NAME, WEIGHTS_NAME

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return (folder / WEIGHTS_NAME if path.is_dir() else path), folder / CONFIG_NAME


def is_pretrained_biggan_dir(path) -> bool:
    from pathlib import Path

    from gancomp_jax.io.pretrained_biggan_bin import WEIGHTS_NAME

    return Path(path).is_dir() and (Path(path) / WEIGHTS_NAME).is_file()


def is_pretrained_biggan_file(path, max_alloc: int | None = None) -> bool:
    """Whether ``path`` is a pytorch-pretrained-biggan state dict (read by the restricted reader)."""
    from gancomp_jax.io.pretrained_biggan_bin import is_pretrained_biggan
    from gancomp_jax.io.torch_pickle import CheckpointFormatError, UnsafePickleError, load_torch_file

    try:
        return is_pretrained_biggan(load_torch_file(path, max_alloc=max_alloc))
    except (CheckpointFormatError, UnsafePickleError):
        return False


def import_pretrained_biggan(path, which=None, max_alloc: int | None = None):
    """``ImportResult`` ``{'G_ema': Network('pretrained_biggan_generator', ...)}`` of a
    ``pytorch_model.bin`` (or its folder); ``config.json`` must sit beside it."""
    import hashlib
    import time

    import jax

    from gancomp_jax.convert.biggan import check_against
    from gancomp_jax.convert.common import count_parameters
    from gancomp_jax.convert.errors import UnrecognizedFileError
    from gancomp_jax.convert.result import ImportResult, _requested
    from gancomp_jax.io.pretrained_biggan_bin import load_config, load_state_dict
    from gancomp_jax.io.torch_pickle import CheckpointFormatError, UnsafePickleError
    from gancomp_jax.models.network import Network
    from gancomp_jax.models.registry import abstract_variables

    t0 = time.perf_counter()
    wfile, cfile = weights_and_config(path)
    if not cfile.is_file():
        raise UnrecognizedFileError(f"{wfile}: a pytorch-pretrained-biggan state dict needs its config.json beside "
                                    f"it ({cfile} not found)")
    try:
        sd = load_state_dict(wfile, max_alloc=max_alloc)
    except (CheckpointFormatError, UnsafePickleError) as e:
        raise UnrecognizedFileError(str(e)) from None
    cfg_json = load_config(cfile)
    names = _requested(which, ["G_ema"], "G_ema (the TF-Hub EMA weights)", path)
    t1 = time.perf_counter()
    where = f"{wfile}: network 'G_ema'"
    try:
        cfg = infer_config(sd, cfg_json, where)
        variables = to_variables(sd)
        check_against(variables, abstract_variables("pretrained_biggan_generator", cfg), where)
    except UnsupportedNetworkError:
        raise
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise UnsupportedNetworkError(f"{where}: malformed values ({type(e).__name__}: {e})") from None
    variables = {c: jax.tree.map(np.asarray, variables[c]) for c in ("params", "buffers")}
    net = Network("pretrained_biggan_generator", cfg, variables)
    h = hashlib.sha256()
    with open(wfile, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    facts = {"kind": net.kind, "config": cfg.to_dict(), "num_params": count_parameters(variables),
             "source_key": wfile.name, "sha256": h.hexdigest()}
    metadata = {
        "source": {"path": str(Path(path).absolute()), "format": FORMAT, "description": DESCRIPTION,
                   "reader": "builtin", "sha256": facts["sha256"], "size_bytes": wfile.stat().st_size},
        "file_networks": ["G_ema"], "networks": {"G_ema": facts} if names else {}, "warnings": [],
        "load_seconds": round(t1 - t0, 3), "imports_seconds": 0.0,
        "convert_seconds": round(time.perf_counter() - t1, 3), "pretrained_biggan_config": cfg_json,
    }
    return ImportResult({"G_ema": net} if names else {}, metadata)
