"""NVlabs stylegan2-ada-pytorch networks (a :class:`~gancomp_jax.io.NetworkRecord`) → our model.

The description is assembled from two sources:

* the tensor shapes (:mod:`gancomp_jax.convert.shapes`): resolution, image channels, z/w/c
  dims, mapping depth and widths, every per-layer (G) or per-resolution (D) width, the
  architecture, the number of minibatch-std channels, the label projection width;
* the constructor arguments (``init_kwargs``, with ``init_args`` matched to NVlabs'
  positional order) for what shapes cannot show: ``mapping_kwargs.lr_multiplier`` (0.01),
  ``w_avg_beta`` (0.995), ``conv_clamp`` (None), ``num_fp16_res`` (0), D's
  ``epilogue_kwargs.mbstd_group_size`` (4).

Where a kwarg states something the shapes also show (``z_dim``, ``mapping_kwargs.num_layers``,
``architecture``, ...) the two must agree: a stated value that disagrees is an error, a
missing one whose NVlabs default disagrees is a warning (the shapes win). ``channel_base`` /
``channel_max`` are only recorded: a pruned checkpoint's widths legitimately differ from the
schedule. The converted model always runs in float32 (``num_mixed_res=0``); the file's
``num_fp16_res`` is kept in the facts.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from gancomp_jax.convert.common import Converted, build_network, count_parameters
from gancomp_jax.convert.errors import UnsupportedNetworkError
from gancomp_jax.convert.shapes import (DiscriminatorShapes, GeneratorShapes, discriminator_shapes,
                                        generator_shapes)
from gancomp_jax.io.nvlabs_pkl import NetworkRecord
from gancomp_jax.io.torch_pickle import describe
from gancomp_jax.models import DiscriminatorConfig, GeneratorConfig
from gancomp_jax.models.config import generator_layer_channels, nvlabs_channels

__all__ = ["NVLABS_CLASSES", "convert_nvlabs_record", "discriminator_config", "generator_config"]

#: Bare class name (as NVlabs pickles store it) → our network kind.
NVLABS_CLASSES = {"Generator": "generator", "Discriminator": "discriminator"}

# NVlabs constructor signatures (training/networks.py), for positional init_args.
_G_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_D_ARGS = ("c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max",
           "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs")
_MISSING = object()
# kwargs that change nothing in a float32 forward pass
_HARMLESS = {"fp16_channels_last", "channels_last", "use_fp16", "fused_modconv_default", "freeze_layers",
             "num_ws", "class_name"}
_FILTER = [1, 3, 3, 1]


class _Kwargs:
    """One level of constructor kwargs; remembers which keys were read.

    Values come from the file, so the typed getters (:meth:`sub`, :meth:`number`) check them.
    """

    def __init__(self, values: Any, scope: str, where: str):
        if values is not None and not isinstance(values, Mapping):
            raise UnsupportedNetworkError(
                f"{where}: init_kwargs {scope.rstrip('.') or 'of the network'} should be a dict, "
                f"got {describe(values)}")
        self.values = dict(values or {})
        self.scope = scope
        self.where = where
        self.read: set[str] = set()

    def sub(self, key: str) -> "_Kwargs":
        """The nested kwargs dict ``key`` (e.g. ``mapping_kwargs``); absent or None: empty."""
        return _Kwargs(self.get(key), f"{self.scope}{key}.", self.where)

    def number(self, key: str, default: Any, kind: type = float, allow_none: bool = False) -> Any:
        """``key`` as an int or float (``kind``); None only where ``allow_none``."""
        value = self.get(key, default)
        if value is None and allow_none:
            return None
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if ok and kind is int:
            ok = float(value).is_integer() and abs(value) < 2 ** 31
        elif ok:
            ok = bool(np.isfinite(value))
        if not ok:
            what = "an integer" if kind is int else "a finite number"
            raise UnsupportedNetworkError(
                f"{self.where}: init_kwargs {self.scope}{key}={describe(value)} should be {what}"
                + (" or None" if allow_none else ""))
        return kind(value)

    def has(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.values.get(key, default)

    def unread(self) -> list[str]:
        return [f"{self.scope}{k}" for k in self.values if k not in self.read and k not in _HARMLESS]


class _Reconciler:
    """Compares kwargs with what the tensors show; collects warnings."""

    def __init__(self, where: str):
        self.where = where
        self.warnings: list[str] = []

    def agree(self, kw: _Kwargs, key: str, from_shapes: Any, default: Any = _MISSING,
              none_means: Any = None) -> None:
        """A stated ``key`` must equal ``from_shapes``; an absent one is compared via ``default``.

        ``none_means``: what a ``None`` value stands for (NVlabs' "None: use w_dim").
        """
        resolve = lambda v: none_means if v is None and none_means is not None else v  # noqa: E731
        if kw.has(key):
            stated = kw.get(key)
            if not _same(resolve(stated), from_shapes):
                raise UnsupportedNetworkError(
                    f"{self.where}: init_kwargs say {kw.scope}{key}={describe(stated)} but the tensors show "
                    f"{from_shapes!r}; the file is inconsistent")
        elif default is not _MISSING and resolve(default) != from_shapes:
            self.warnings.append(
                f"{self.where}: init_kwargs lack {kw.scope}{key}; its NVlabs default {default!r} disagrees "
                f"with the tensors ({from_shapes!r}), using the tensors")

    def require(self, kw: _Kwargs, key: str, allowed: Any, what: str) -> None:
        if kw.has(key) and not _same(kw.get(key), allowed):
            raise UnsupportedNetworkError(
                f"{self.where}: {kw.scope}{key}={describe(kw.get(key))} is not supported ({what})")

    def unknown(self, *levels: _Kwargs) -> None:
        extra = [k for kw in levels for k in kw.unread()]
        if extra:
            self.warnings.append(f"{self.where}: ignored unrecognised init_kwargs {extra}")


def _same(a: Any, b: Any) -> bool:
    """``a == b`` for values from a file (arrays or odd types compare as different, never raise)."""
    numbers = (int, float, np.number)
    if type(a) is not type(b) and not (isinstance(a, numbers) and isinstance(b, numbers)):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. an array's ambiguous truth value
        return False


def _named_kwargs(record: NetworkRecord, names: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(record.init_kwargs, Mapping) or not isinstance(record.init_args, (tuple, list)):
        raise UnsupportedNetworkError(f"{where}: init_kwargs should be a dict and init_args a tuple, got "
                                      f"{describe(record.init_kwargs)} and {describe(record.init_args)}")
    kwargs = dict(zip(names, record.init_args))
    kwargs.update(record.init_kwargs)
    return kwargs


def _check_filter(rec: _Reconciler, kw: _Kwargs) -> None:
    if not kw.has("resample_filter"):
        return
    value = kw.get("resample_filter")
    try:
        taps = [float(t) for t in np.ravel(np.asarray(value, dtype=np.float64))]
    except (TypeError, ValueError):
        taps = None
    if taps != _FILTER:
        raise UnsupportedNetworkError(
            f"{rec.where}: {kw.scope}resample_filter={describe(value)}; only [1, 3, 3, 1] is supported")


def _kind(record: NetworkRecord, where: str) -> str:
    bare = record.class_name.rsplit(".", 1)[-1]
    if bare not in NVLABS_CLASSES or "stylegan3" in record.class_name:
        raise UnsupportedNetworkError(
            f"{where}: class {record.class_name!r} is not a StyleGAN2 Generator or Discriminator "
            f"(expected class_name 'Generator' or 'Discriminator' from stylegan2-ada-pytorch)")
    return NVLABS_CLASSES[bare]


def generator_config(record: NetworkRecord, where: str) -> tuple[GeneratorConfig, dict[str, Any], list[str]]:
    """The generator description of ``record`` plus facts and warnings (see module docstring)."""
    s: GeneratorShapes = generator_shapes(record.state_dict, where)
    rec = _Reconciler(where)
    named = _named_kwargs(record, _G_ARGS, where)
    top = _Kwargs({k: v for k, v in named.items() if k in _G_ARGS}, "", where)
    # stylegan3-repo's networks_stylegan2.Generator takes **synthesis_kwargs at the top level.
    synth_values = {k: v for k, v in named.items() if k not in _G_ARGS}
    synth_values.update(top.sub("synthesis_kwargs").values)
    synth = _Kwargs(synth_values, "synthesis_kwargs.", where)
    mapping = top.sub("mapping_kwargs")

    for key in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels"):
        rec.agree(top, key, getattr(s, key))
    rec.agree(mapping, "num_layers", s.mapping.num_layers, default=8)
    if s.mapping.layer_features is not None:
        rec.agree(mapping, "layer_features", s.mapping.layer_features, default=None, none_means=s.w_dim)
    if s.c_dim:
        rec.agree(mapping, "embed_features", s.mapping.embed_features, default=None, none_means=s.w_dim)
    rec.require(mapping, "activation", "lrelu", "the mapping uses leaky ReLU")
    lr = mapping.number("lr_multiplier", 0.01)
    beta = mapping.number("w_avg_beta", 0.995, allow_none=True)
    if beta is None:
        rec.warnings.append(f"{where}: mapping_kwargs.w_avg_beta=None (no w_avg tracked); using 0.995")
        beta = 0.995

    architecture = s.architecture or synth.get("architecture", "skip")
    if architecture not in ("orig", "skip", "resnet"):
        raise UnsupportedNetworkError(f"{where}: synthesis_kwargs.architecture={describe(architecture)} is not "
                                      "one of 'orig', 'skip', 'resnet'")
    rec.agree(synth, "architecture", architecture, default="skip")
    rec.require(synth, "use_noise", True, "every synthesis layer has noise inputs")
    rec.require(synth, "activation", "lrelu", "synthesis layers use leaky ReLU")
    rec.require(synth, "kernel_size", 3, "synthesis convs are 3x3")
    _check_filter(rec, synth)
    base, cmax = synth.number("channel_base", 32768, int), synth.number("channel_max", 512, int)
    clamp = synth.number("conv_clamp", None, allow_none=True)
    fp16 = synth.number("num_fp16_res", 0, int, allow_none=True) or 0
    rec.unknown(top, synth, mapping)

    if not s.has_w_avg:
        rec.warnings.append(f"{where}: no mapping.w_avg in the file; w_avg set to 0, so truncation "
                            "(truncation_psi < 1) pulls towards w = 0 and is wrong")
    config = GeneratorConfig(
        img_resolution=s.img_resolution, channels=s.channels, z_dim=s.z_dim, w_dim=s.w_dim, c_dim=s.c_dim,
        img_channels=s.img_channels, mapping_layers=s.mapping.num_layers, mapping_lr_multiplier=lr,
        mapping_layer_features=None if s.mapping.layer_features in (None, s.w_dim) else s.mapping.layer_features,
        embed_features=None if s.c_dim == 0 or s.mapping.embed_features == s.w_dim else s.mapping.embed_features,
        w_avg_beta=float(beta), architecture=architecture, conv_clamp=clamp, num_mixed_res=0)
    schedule = generator_layer_channels(nvlabs_channels(s.img_resolution, base, cmax))
    facts = dict(channel_base=base, channel_max=cmax, num_fp16_res=fp16, w_avg_present=s.has_w_avg,
                 widths_follow_channel_base=schedule == s.channels)
    return config, facts, rec.warnings


def discriminator_config(record: NetworkRecord, where: str) -> tuple[DiscriminatorConfig, dict[str, Any], list[str]]:
    """The discriminator description of ``record`` plus facts and warnings."""
    s: DiscriminatorShapes = discriminator_shapes(record.state_dict, where)
    rec = _Reconciler(where)
    top = _Kwargs(_named_kwargs(record, _D_ARGS, where), "", where)
    block = top.sub("block_kwargs")
    mapping = top.sub("mapping_kwargs")
    epilogue = top.sub("epilogue_kwargs")

    for key in ("c_dim", "img_resolution", "img_channels"):
        rec.agree(top, key, getattr(s, key))
    rec.agree(top, "architecture", s.architecture, default="resnet")
    rec.agree(epilogue, "mbstd_num_channels", s.mbstd_num_channels, default=1)
    group = epilogue.number("mbstd_group_size", 4, int, allow_none=True)
    for kw in (block, epilogue):
        rec.require(kw, "activation", "lrelu", "discriminator layers use leaky ReLU")
    _check_filter(rec, block)
    cmap_dim = None
    if s.mapping is not None:
        m = s.mapping
        if top.get("cmap_dim") is not None:
            rec.agree(top, "cmap_dim", s.cmap_dim)
        rec.agree(mapping, "num_layers", m.num_layers, default=8)
        if m.embed_features != s.cmap_dim or m.layer_features not in (None, s.cmap_dim):
            raise UnsupportedNetworkError(
                f"{where}: label mapping widths (embed {m.embed_features}, hidden {m.layer_features}) differ "
                f"from cmap_dim {s.cmap_dim}; not supported")
        rec.require(mapping, "lr_multiplier", 0.01, "the discriminator's label mapping uses lr 0.01")
        rec.require(mapping, "activation", "lrelu", "the mapping uses leaky ReLU")
        mapping.read.update({"layer_features", "embed_features", "w_avg_beta"})  # checked via shapes
        cmap_dim = None if s.cmap_dim == s.channels[-1] else s.cmap_dim
        mapping_layers = m.num_layers
    else:
        top.read.add("cmap_dim")
        mapping_layers = mapping.number("num_layers", 8, int)
    base, cmax = top.number("channel_base", 32768, int), top.number("channel_max", 512, int)
    clamp = top.number("conv_clamp", None, allow_none=True)
    fp16 = top.number("num_fp16_res", 0, int, allow_none=True) or 0
    rec.unknown(top, block, mapping, epilogue)

    config = DiscriminatorConfig(
        img_resolution=s.img_resolution, channels=s.channels, c_dim=s.c_dim, img_channels=s.img_channels,
        cmap_dim=cmap_dim, mapping_layers=mapping_layers, architecture=s.architecture, conv_clamp=clamp,
        mbstd_group_size=group, mbstd_num_channels=s.mbstd_num_channels,
        num_mixed_res=0)
    per_res = nvlabs_channels(s.img_resolution, base, cmax)
    facts = dict(channel_base=base, channel_max=cmax, num_fp16_res=fp16,
                 widths_follow_channel_base=tuple(per_res[r] for r in sorted(per_res, reverse=True)) == s.channels)
    return config, facts, rec.warnings


def convert_nvlabs_record(record: NetworkRecord, name: str, source: str = "") -> Converted:
    """Converts one network of an NVlabs pickle (``name`` is its key: 'G', 'G_ema', 'D')."""
    where = f"{source}: network '{name}'" if source else f"network '{name}'"
    kind = _kind(record, where)
    expected = {"G": "generator", "G_ema": "generator", "D": "discriminator"}.get(name, kind)
    if kind != expected:
        raise UnsupportedNetworkError(f"{where} holds a {record.class_name}; expected a {expected}")
    if kind == "generator":
        config, facts, warnings = generator_config(record, where)
        state_dict = dict(record.state_dict)
        if "mapping.w_avg" not in state_dict:
            state_dict["mapping.w_avg"] = np.zeros(config.w_dim, np.float32)
    else:
        config, facts, warnings = discriminator_config(record, where)
        state_dict = record.state_dict
    network = build_network(kind, config, state_dict, where)
    facts = dict(class_name=record.class_name, kind=kind, num_params=count_parameters(network.variables),
                 config=config.to_dict(), **facts)
    return Converted(network, facts, warnings)
