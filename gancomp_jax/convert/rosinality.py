"""rosinality stylegan2-pytorch state dicts (and CAGC's pruned ones) → our model.

The tensors are renamed to NVlabs names and layouts (the table below), after which the
NVlabs path (shape inference + :func:`~gancomp_jax.models.nvlabs_compat.from_nvlabs_state_dict`)
does the rest. No value changes: rosinality and NVlabs store the same numbers.

Generator (``convs.{2k}`` is the up-sampling layer of resolution ``r = 8·2^k``)::

    style.{i}.{weight,bias}                 mapping.fc{i-1}.*        (EqualLinear lr_mul 0.01 + fused lrelu)
    input.input [1, C, 4, 4]                synthesis.b4.const [C, 4, 4]
    conv1 / convs.{2k} / convs.{2k+1}       synthesis.b4.conv1 / b{r}.conv0 / b{r}.conv1:
        conv.weight [1, O, I, 3, 3]             weight [O, I, 3, 3]   (no flip: both up-convs are
                                                                        conv_transpose2d(x, Wᵀ) + blur)
        conv.modulation.{weight,bias}           affine.*              (bias stored with its +1)
        noise.weight [1]                        noise_strength []
        activate.bias [O]                       bias [O]
    to_rgb1 / to_rgbs.{k}                   synthesis.b4.torgb / b{r}.torgb:
        conv.weight [1, 3, C, 1, 1]             weight [3, C, 1, 1]
        conv.modulation.*, bias [1, 3, 1, 1]    affine.*, bias [3]
    noises.noise_{j} [1, 1, r, r]           noise_const [r, r] of synthesis layer j
                                            (b4.conv1, b8.conv0, b8.conv1, ...)
    latent_avg (top level of the file)      mapping.w_avg
    *.blur.kernel, *.upsample.kernel        checked = make_kernel([1,3,3,1]) · 4, dropped

Discriminator (``convs.{i}``, i ≥ 1, is the ResBlock of resolution ``r = R / 2^(i-1)``)::

    convs.0.0.weight, convs.0.1.bias        b{R}.fromrgb.{weight,bias}
    convs.{i}.conv1.0.weight, .conv1.1.bias b{r}.conv0.*
    convs.{i}.conv2.1.weight, .conv2.2.bias b{r}.conv1.*
    convs.{i}.skip.1.weight                 b{r}.skip.weight
    final_conv.0.weight, final_conv.1.bias  b4.conv.*
    final_linear.0.*, final_linear.1.*      b4.fc.*, b4.out.*
    convs.{i}.{conv2,skip}.0.kernel         checked = make_kernel([1,3,3,1]), dropped

rosinality's ResBlock ``(conv2(conv1(x)) + skip(x)) / √2`` is NVlabs' resnet block (skip and
conv1 gains √0.5 with the lrelu gain √2); its minibatch std uses groups of ``min(N, 4)`` and
one feature; it has no activation clamp. Widths (``channel_multiplier`` 1 or 2, or pruned),
``n_mlp``, ``style_dim`` and the resolution all come from the shapes.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from gancomp_jax.convert.common import Converted, build_network, count_parameters
from gancomp_jax.convert.errors import UnsupportedNetworkError
from gancomp_jax.convert.shapes import discriminator_shapes, generator_shapes
from gancomp_jax.models import DiscriminatorConfig, GeneratorConfig

__all__ = ["convert_rosinality", "discriminator_to_nvlabs", "generator_to_nvlabs", "make_kernel"]

_STYLE = re.compile(r"^style\.(\d+)\.(weight|bias)$")
_CONVS = re.compile(r"^convs\.(\d+)\.")
_TO_RGBS = re.compile(r"^to_rgbs\.(\d+)\.")
_NOISE = re.compile(r"^noises\.noise_(\d+)$")


def make_kernel(taps=(1, 3, 3, 1)) -> np.ndarray:
    """rosinality's ``make_kernel``: the outer product of ``taps`` normalised to sum 1, ``[4, 4]``."""
    k = np.asarray(taps, np.float64)
    k = np.outer(k, k)
    return (k / k.sum()).astype(np.float32)


class _Renamer:
    """Moves tensors from a rosinality state dict to NVlabs names, tracking what is left over."""

    def __init__(self, sd: Mapping[str, np.ndarray], where: str):
        self.src = {k: np.asarray(v) for k, v in sd.items()}
        self.left = set(self.src)
        self.out: dict[str, np.ndarray] = {}
        self.where = where

    def take(self, name: str) -> np.ndarray:
        if name not in self.src:
            raise UnsupportedNetworkError(f"{self.where}: tensor '{name}' is missing; not a rosinality state dict")
        self.left.discard(name)
        return self.src[name]

    def put(self, src: str, dst: str, shape_fn=None) -> None:
        value = self.take(src)
        try:
            self.out[dst] = shape_fn(value) if shape_fn else value
        except ValueError as e:
            raise UnsupportedNetworkError(f"{self.where}: {src} has shape {value.shape}: {e}") from None

    def kernel(self, name: str, factor: int) -> None:
        """Checks a blur buffer against ``make_kernel([1,3,3,1]) · factor²`` and drops it."""
        if name not in self.src:
            return  # rosinality registers them as buffers; a stripped state dict may lack them
        value, want = self.take(name), make_kernel() * factor ** 2
        if value.shape != want.shape or not np.allclose(value, want, rtol=1e-6, atol=1e-7):
            raise UnsupportedNetworkError(
                f"{self.where}: {name} is not make_kernel([1,3,3,1]) * {factor ** 2}; other blur kernels "
                "are not supported")

    def finish(self) -> dict[str, np.ndarray]:
        if self.left:
            raise UnsupportedNetworkError(
                f"{self.where}: unexpected tensors {sorted(self.left)[:12]}; not a rosinality StyleGAN2 state dict")
        return self.out


def _squeeze_lead(value: np.ndarray) -> np.ndarray:
    """``[1, ...]`` → ``[...]`` (modulated conv weights, the constant input)."""
    if value.ndim == 0 or value.shape[0] != 1:
        raise ValueError(f"expected a leading dimension of 1, got {value.shape}")
    return value[0]


def _styled_conv(r: _Renamer, src: str, dst: str, up: bool) -> None:
    r.put(f"{src}.conv.weight", f"{dst}.weight", _squeeze_lead)
    r.put(f"{src}.conv.modulation.weight", f"{dst}.affine.weight")
    r.put(f"{src}.conv.modulation.bias", f"{dst}.affine.bias")
    r.put(f"{src}.noise.weight", f"{dst}.noise_strength", lambda v: v.reshape(()))
    r.put(f"{src}.activate.bias", f"{dst}.bias")
    if up:
        r.kernel(f"{src}.conv.blur.kernel", 2)


def _to_rgb(r: _Renamer, src: str, dst: str, up: bool) -> None:
    r.put(f"{src}.conv.weight", f"{dst}.weight", _squeeze_lead)
    r.put(f"{src}.conv.modulation.weight", f"{dst}.affine.weight")
    r.put(f"{src}.conv.modulation.bias", f"{dst}.affine.bias")
    r.put(f"{src}.bias", f"{dst}.bias", lambda v: v.reshape(-1))
    if up:
        r.kernel(f"{src}.upsample.kernel", 2)


def _indices(sd: Mapping[str, Any], pattern: re.Pattern) -> list[int]:
    return sorted({int(m.group(1)) for k in sd if (m := pattern.match(k))})


def generator_to_nvlabs(sd: Mapping[str, np.ndarray], latent_avg: np.ndarray | None,
                        where: str) -> dict[str, np.ndarray]:
    """A rosinality ``Generator.state_dict()`` (+ the file's ``latent_avg``) under NVlabs names.

    Without ``latent_avg`` no ``mapping.w_avg`` is produced.
    """
    r = _Renamer(sd, where)
    styles = _indices(sd, _STYLE)
    if styles != list(range(1, len(styles) + 1)):
        raise UnsupportedNetworkError(f"{where}: mapping layers style.{styles} are not numbered 1..n")
    for i in styles:
        r.put(f"style.{i}.weight", f"mapping.fc{i - 1}.weight")
        r.put(f"style.{i}.bias", f"mapping.fc{i - 1}.bias")
    r.put("input.input", "synthesis.b4.const", _squeeze_lead)
    _styled_conv(r, "conv1", "synthesis.b4.conv1", up=False)
    _to_rgb(r, "to_rgb1", "synthesis.b4.torgb", up=False)
    convs = _indices(sd, _CONVS)
    if len(convs) % 2 or convs != list(range(len(convs))):
        raise UnsupportedNetworkError(f"{where}: styled convs convs.{convs} do not come in up/plain pairs")
    layers = ["synthesis.b4.conv1"]
    for k in range(len(convs) // 2):
        res = 8 * 2 ** k
        _styled_conv(r, f"convs.{2 * k}", f"synthesis.b{res}.conv0", up=True)
        _styled_conv(r, f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", up=False)
        _to_rgb(r, f"to_rgbs.{k}", f"synthesis.b{res}.torgb", up=True)
        layers += [f"synthesis.b{res}.conv0", f"synthesis.b{res}.conv1"]
    if _indices(sd, _TO_RGBS) != list(range(len(convs) // 2)):
        raise UnsupportedNetworkError(
            f"{where}: to_rgbs.{_indices(sd, _TO_RGBS)} do not match {len(convs) // 2} up-sampling resolutions")
    noises = _indices(sd, _NOISE)
    if noises != list(range(len(layers))):
        raise UnsupportedNetworkError(
            f"{where}: noise buffers noises.noise_{noises}; expected noise_0..noise_{len(layers) - 1}")
    for j, layer in enumerate(layers):
        r.put(f"noises.noise_{j}", f"{layer}.noise_const", lambda v: v.reshape(v.shape[-2:]))
    if latent_avg is not None:
        r.out["mapping.w_avg"] = np.asarray(latent_avg, np.float32).reshape(-1)
    return r.finish()


def discriminator_to_nvlabs(sd: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """A rosinality ``Discriminator.state_dict()`` under NVlabs names."""
    r = _Renamer(sd, where)
    blocks = _indices(sd, _CONVS)
    if blocks != list(range(len(blocks))) or len(blocks) < 2:
        raise UnsupportedNetworkError(f"{where}: discriminator layers convs.{blocks}; expected fromRGB + ResBlocks")
    top = 4 * 2 ** (len(blocks) - 1)
    r.put("convs.0.0.weight", f"b{top}.fromrgb.weight")
    r.put("convs.0.1.bias", f"b{top}.fromrgb.bias")
    for i in blocks[1:]:
        res = top // 2 ** (i - 1)
        r.put(f"convs.{i}.conv1.0.weight", f"b{res}.conv0.weight")
        r.put(f"convs.{i}.conv1.1.bias", f"b{res}.conv0.bias")
        r.kernel(f"convs.{i}.conv2.0.kernel", 1)
        r.put(f"convs.{i}.conv2.1.weight", f"b{res}.conv1.weight")
        r.put(f"convs.{i}.conv2.2.bias", f"b{res}.conv1.bias")
        r.kernel(f"convs.{i}.skip.0.kernel", 1)
        r.put(f"convs.{i}.skip.1.weight", f"b{res}.skip.weight")
    r.put("final_conv.0.weight", "b4.conv.weight")
    r.put("final_conv.1.bias", "b4.conv.bias")
    for i, name in enumerate(("fc", "out")):
        r.put(f"final_linear.{i}.weight", f"b4.{name}.weight")
        r.put(f"final_linear.{i}.bias", f"b4.{name}.bias")
    return r.finish()


def _check_args(args: Mapping[str, Any] | None, found: dict[str, int], where: str) -> list[str]:
    """rosinality's training ``args`` (if saved) against the shapes: mismatches are warnings."""
    if not isinstance(args, Mapping):
        return []
    return [f"{where}: training args say {key}={args[key]!r} but the tensors show {value}"
            for key, value in found.items() if key in args and args[key] != value]


def convert_rosinality(sd: Mapping[str, np.ndarray], kind: str, name: str, source: str = "",
                       latent_avg: np.ndarray | None = None,
                       args: Mapping[str, Any] | None = None) -> Converted:
    """Converts a rosinality ``g`` / ``g_ema`` (``kind='generator'``) or ``d`` state dict.

    ``name`` is our network name (for messages); ``latent_avg`` becomes the generator's
    ``w_avg`` (zeros, with a warning, when None).
    """
    where = f"{source}: network '{name}'" if source else f"network '{name}'"
    warnings: list[str] = []
    if kind == "generator":
        nv = generator_to_nvlabs(sd, latent_avg, where)
        s = generator_shapes(nv, where)
        if s.architecture not in (None, "skip"):
            raise UnsupportedNetworkError(
                f"{where}: rosinality generators are 'skip', these tensors look {s.architecture!r}")
        if latent_avg is None:
            nv["mapping.w_avg"] = np.zeros(s.w_dim, np.float32)
            warnings.append(f"{where}: the file has no latent_avg; w_avg set to 0, so truncation "
                            "(truncation_psi < 1) pulls towards w = 0 and is wrong")
        elif np.shape(latent_avg) not in ((s.w_dim,), (1, s.w_dim)):
            raise UnsupportedNetworkError(
                f"{where}: latent_avg has shape {np.shape(latent_avg)}, expected ({s.w_dim},)")
        config = GeneratorConfig(
            img_resolution=s.img_resolution, channels=s.channels, z_dim=s.z_dim, w_dim=s.w_dim,
            img_channels=s.img_channels, mapping_layers=s.mapping.num_layers, mapping_lr_multiplier=0.01,
            architecture="skip", conv_clamp=None, num_mixed_res=0)
        found = {"size": s.img_resolution, "latent": s.w_dim, "n_mlp": s.mapping.num_layers}
        warnings += _check_args(args, found, where)
        facts: dict[str, Any] = dict(w_avg_present=latent_avg is not None)
    elif kind == "discriminator":
        nv = discriminator_to_nvlabs(sd, where)
        s = discriminator_shapes(nv, where)
        if s.mbstd_num_channels != 1:
            raise UnsupportedNetworkError(f"{where}: final_conv expects {s.mbstd_num_channels} minibatch-std "
                                          "channels; rosinality uses 1")
        config = DiscriminatorConfig(
            img_resolution=s.img_resolution, channels=s.channels, img_channels=s.img_channels,
            architecture="resnet", conv_clamp=None, mbstd_group_size=4, mbstd_num_channels=1, num_mixed_res=0)
        warnings += _check_args(args, {"size": s.img_resolution}, where)
        facts = {}
    else:
        raise ValueError(f"kind must be 'generator' or 'discriminator', got {kind!r}")
    network = build_network(kind, config, nv, where)
    facts = dict(kind=kind, num_params=count_parameters(network.variables), config=config.to_dict(), **facts)
    return Converted(network, facts, warnings)
