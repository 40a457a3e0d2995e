"""NVlabs-layout state dicts in safetensors: write our networks, read them back.

A file holds one network's ``state_dict()`` exactly as NVlabs stylegan2-ada-pytorch names and
shapes it (``mapping.fc0.weight [out, in]``, ``synthesis.b8.conv0.weight [O, I, 3, 3]``,
``synthesis.b4.const [C, 4, 4]``, the ``noise_const`` / ``w_avg`` / ``resample_filter``
buffers), float32, written with ``safetensors.numpy`` (no torch needed). In PyTorch::

    from safetensors.torch import load_file
    G.load_state_dict(load_file("student_G_ema.safetensors"))

where ``G`` is an NVlabs ``Generator`` of the same widths (for a pruned student, whose widths
do not follow ``channel_base``/``channel_max``, build the layers with the per-layer widths of
the ``gancomp_jax.config`` metadata entry).

String metadata (the safetensors header):

* ``format``: ``gancomp_jax.nvlabs_state_dict``; ``network``: e.g. ``G_ema``; ``kind``:
  ``generator`` | ``discriminator``;
* ``gancomp_jax.config``: our :class:`GeneratorConfig` / :class:`DiscriminatorConfig` as JSON
  (exact; used when reading back);
* ``nvlabs.init_kwargs``: the NVlabs constructor arguments (JSON) for what shapes cannot show
  (mapping lr multiplier, ``conv_clamp``, ``mbstd_group_size``, ...). Files written by other
  tools may carry only this, or nothing: the reader then goes through the NVlabs converter
  (:mod:`gancomp_jax.convert.nvlabs`), which infers widths from the shapes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig

__all__ = ["FORMAT", "load_nvlabs_safetensors", "nvlabs_init_kwargs", "save_nvlabs_safetensors"]

FORMAT = "gancomp_jax.nvlabs_state_dict"


def nvlabs_init_kwargs(kind: str, cfg: GeneratorConfig | DiscriminatorConfig) -> dict[str, Any]:
    """NVlabs constructor arguments describing ``cfg`` (widths aside: a pruned network's
    widths do not follow NVlabs' ``channel_base``/``channel_max`` schedule)."""
    if kind == "generator":
        return dict(
            z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
            img_channels=cfg.img_channels,
            mapping_kwargs=dict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier,
                                w_avg_beta=cfg.w_avg_beta, layer_features=cfg.mapping_layer_features,
                                embed_features=cfg.embed_features),
            synthesis_kwargs=dict(architecture=cfg.architecture, conv_clamp=cfg.conv_clamp, num_fp16_res=0))
    return dict(
        c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
        architecture=cfg.architecture, conv_clamp=cfg.conv_clamp, cmap_dim=cfg.cmap_dim, num_fp16_res=0,
        mapping_kwargs=dict(num_layers=cfg.mapping_layers),
        epilogue_kwargs=dict(mbstd_group_size=cfg.mbstd_group_size,
                             mbstd_num_channels=cfg.mbstd_num_channels))


def save_nvlabs_safetensors(path: str | os.PathLike, network, name: str = "G_ema",
                            extra_metadata: dict[str, str] | None = None) -> Path:
    """Writes one of our networks (a :class:`gancomp_jax.checkpoints.Network`) as an NVlabs
    state dict in safetensors, atomically."""
    from safetensors.numpy import save_file

    from gancomp_jax.models.nvlabs_compat import to_nvlabs_state_dict

    sd = to_nvlabs_state_dict(network.variables, "D" if network.kind == "discriminator" else name)
    sd = {k: np.array(v, dtype=np.float32, order="C") for k, v in sd.items()}
    metadata = {
        "format": FORMAT, "network": name, "kind": network.kind,
        "gancomp_jax.config": network.config.to_json(),
        "nvlabs.init_kwargs": json.dumps(nvlabs_init_kwargs(network.kind, network.config), sort_keys=True),
        **{str(k): str(v) for k, v in (extra_metadata or {}).items()},
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        save_file(sd, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_nvlabs_safetensors(path: str | os.PathLike, kind: str | None = None):
    """Reads an NVlabs-layout safetensors state dict back into a
    :class:`gancomp_jax.checkpoints.Network`.

    ``kind`` ('generator' | 'discriminator') is needed only when the file's metadata does not
    say. Raises FileNotFoundError / ValueError (naming the file and tensor) on bad input.
    """
    from safetensors import SafetensorError, safe_open

    from gancomp_jax.convert.common import build_network
    from gancomp_jax.convert.errors import ConversionError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file: {e}") from None
    kind = metadata.get("kind", kind)
    if kind not in ("generator", "discriminator"):
        raise ValueError(f"{path}: the metadata does not say whether this is a generator or a "
                         f"discriminator; pass kind='generator' or 'discriminator'")
    where = f"{path}: network '{metadata.get('network', kind)}'"
    try:
        if "gancomp_jax.config" in metadata:
            cls = GeneratorConfig if kind == "generator" else DiscriminatorConfig
            try:
                config = cls.from_dict(json.loads(metadata["gancomp_jax.config"]))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: bad gancomp_jax.config metadata: {e}") from None
            return build_network(kind, config, sd, where)
        from gancomp_jax.convert.nvlabs import convert_nvlabs_record
        from gancomp_jax.io.nvlabs_pkl import NetworkRecord

        kwargs = json.loads(metadata["nvlabs.init_kwargs"]) if "nvlabs.init_kwargs" in metadata else {}
        record = NetworkRecord(class_name="Generator" if kind == "generator" else "Discriminator",
                               init_kwargs=kwargs, state_dict=sd)
        name = metadata.get("network", "G_ema" if kind == "generator" else "D")
        return convert_nvlabs_record(record, name, str(path)).network
    except ConversionError as e:
        raise ValueError(str(e)) from None
