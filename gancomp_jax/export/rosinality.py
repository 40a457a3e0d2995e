"""Our generators (and resnet discriminators) → a rosinality stylegan2-pytorch checkpoint.

The inverse of :mod:`gancomp_jax.convert.rosinality`: variables go to NVlabs names and torch
layouts (:func:`gancomp_jax.models.nvlabs_compat.to_nvlabs_state_dict`), then to rosinality's
names, in the order rosinality's ``Generator.state_dict()`` lists them::

    mapping.fc{i}.*                  style.{i+1}.*
    synthesis.b4.const [C, 4, 4]     input.input [1, C, 4, 4]
    b4.conv1 / b{r}.conv0 / conv1    conv1 / convs.{2k} / convs.{2k+1}:
        weight [O, I, 3, 3]              conv.weight [1, O, I, 3, 3]
        affine.*                         conv.modulation.*
        noise_strength []                noise.weight [1]
        bias [O]                         activate.bias [O]
    b4.torgb / b{r}.torgb            to_rgb1 / to_rgbs.{k}: bias [1, 3, 1, 1], conv.weight
                                     [1, 3, C, 1, 1], conv.modulation.*
    noise_const of layer j           noises.noise_{j} [1, 1, r, r]
    mapping.w_avg                    latent_avg (top level of the file)
    (regenerated)                    convs.{2k}.conv.blur.kernel, to_rgbs.{k}.upsample.kernel
                                     = make_kernel([1,3,3,1]) · 4

Per-layer widths are whatever the tensors have, so a pruned student (non-uniform widths)
comes out as CAGC's pruned checkpoints are: rosinality's layout with narrower tensors, read
back by CAGC's ``Generator(..., generator_net_shape=...)`` / ``Get_Network_Shape``.

rosinality can represent: the ``skip`` generator architecture, RGB, no label, ``z_dim ==
w_dim`` and one hidden mapping width equal to ``w_dim``. Differences it cannot represent are
returned as warnings: an activation clamp (rosinality has none), a mapping learning-rate
multiplier other than 0.01 (rosinality's ``lr_mlp`` default; pass the same value when you
build its Generator), mixed-precision compute.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig, block_resolutions

__all__ = ["discriminator_to_rosinality", "generator_to_rosinality", "rosinality_compat_warnings",
           "rosinality_d_warnings", "save_rosinality_pt"]

WRITERS = ("auto", "torch", "zip")


def _make_kernel() -> np.ndarray:
    from gancomp_jax.convert.rosinality import make_kernel
    return make_kernel()


def rosinality_compat_warnings(cfg: GeneratorConfig) -> list[str]:
    """Raises ValueError for generators rosinality cannot represent; returns warnings for
    differences that only matter in edge cases (see the module docstring)."""
    problems = []
    if cfg.architecture != "skip":
        problems.append(f"architecture {cfg.architecture!r} (rosinality's generator is 'skip')")
    if cfg.c_dim:
        problems.append(f"a class-conditional generator (c_dim={cfg.c_dim}); rosinality has no labels")
    if cfg.img_channels != 3:
        problems.append(f"img_channels={cfg.img_channels} (rosinality's ToRGB writes 3 channels)")
    if cfg.z_dim != cfg.w_dim:
        problems.append(f"z_dim={cfg.z_dim} != w_dim={cfg.w_dim} (rosinality's mapping is style_dim wide)")
    if cfg.mapping_layer_features not in (None, cfg.w_dim):
        problems.append(f"mapping_layer_features={cfg.mapping_layer_features} != w_dim={cfg.w_dim}")
    if problems:
        raise ValueError("this generator cannot be written as a rosinality checkpoint: " + "; ".join(problems))
    warnings = []
    if cfg.conv_clamp is not None:
        warnings.append(f"the generator clamps activations at ±{cfg.conv_clamp:g} (conv_clamp); rosinality "
                        "has no clamp, so images differ wherever the clamp is active")
    if cfg.mapping_lr_multiplier != 0.01:
        warnings.append(f"mapping_lr_multiplier={cfg.mapping_lr_multiplier:g}: build rosinality's Generator "
                        f"with lr_mlp={cfg.mapping_lr_multiplier:g} (its default is 0.01)")
    if cfg.num_mixed_res:
        warnings.append(f"the generator computes its {cfg.num_mixed_res} highest resolutions in "
                        f"{cfg.mixed_dtype}; rosinality computes in float32")
    return warnings


def _synthesis_layers(cfg: GeneratorConfig) -> list[str]:
    """NVlabs names of the synthesis layers in W+ order (b4.conv1, b8.conv0, b8.conv1, ...)."""
    names = ["synthesis.b4.conv1"]
    for res in block_resolutions(cfg.img_resolution)[1:]:
        names += [f"synthesis.b{res}.conv0", f"synthesis.b{res}.conv1"]
    return names


def generator_to_rosinality(variables: dict[str, Any], cfg: GeneratorConfig
                            ) -> tuple["OrderedDict[str, np.ndarray]", np.ndarray | None]:
    """Our generator variables → (rosinality ``Generator.state_dict()``, ``latent_avg`` or None).

    Raises ValueError when the generator cannot be represented (see
    :func:`rosinality_compat_warnings`) or a tensor is missing.
    """
    from gancomp_jax.models.nvlabs_compat import to_nvlabs_state_dict

    rosinality_compat_warnings(cfg)
    nv = to_nvlabs_state_dict(variables, "G")
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in nv:
            raise ValueError(f"generator variables lack '{name}'")
        used.add(name)
        return np.array(nv[name], dtype=np.float32, order="C")

    sd: OrderedDict[str, np.ndarray] = OrderedDict()
    for i in range(cfg.mapping_layers):
        sd[f"style.{i + 1}.weight"] = take(f"mapping.fc{i}.weight")
        sd[f"style.{i + 1}.bias"] = take(f"mapping.fc{i}.bias")
    sd["input.input"] = take("synthesis.b4.const")[None]
    kernel = _make_kernel() * 4

    def styled(dst: str, src: str, up: bool) -> None:
        sd[f"{dst}.conv.weight"] = take(f"{src}.weight")[None]
        if up:
            sd[f"{dst}.conv.blur.kernel"] = kernel.copy()
        sd[f"{dst}.conv.modulation.weight"] = take(f"{src}.affine.weight")
        sd[f"{dst}.conv.modulation.bias"] = take(f"{src}.affine.bias")
        sd[f"{dst}.noise.weight"] = take(f"{src}.noise_strength").reshape(1)
        sd[f"{dst}.activate.bias"] = take(f"{src}.bias")

    def to_rgb(dst: str, src: str, up: bool) -> None:
        sd[f"{dst}.bias"] = take(f"{src}.bias").reshape(1, -1, 1, 1)
        if up:
            sd[f"{dst}.upsample.kernel"] = kernel.copy()
        sd[f"{dst}.conv.weight"] = take(f"{src}.weight")[None]
        sd[f"{dst}.conv.modulation.weight"] = take(f"{src}.affine.weight")
        sd[f"{dst}.conv.modulation.bias"] = take(f"{src}.affine.bias")

    styled("conv1", "synthesis.b4.conv1", up=False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", up=False)
    resolutions = block_resolutions(cfg.img_resolution)[1:]
    for k, res in enumerate(resolutions):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", up=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", up=False)
    for k, res in enumerate(resolutions):
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", up=True)
    for j, layer in enumerate(_synthesis_layers(cfg)):
        noise = take(f"{layer}.noise_const")
        sd[f"noises.noise_{j}"] = noise.reshape(1, 1, *noise.shape)
    latent_avg = take("mapping.w_avg") if "mapping.w_avg" in nv else None
    left = sorted(n for n in nv if n not in used and not n.endswith("resample_filter"))
    if left:
        raise ValueError(f"generator tensors with no rosinality counterpart: {left[:8]}")
    return sd, latent_avg


def rosinality_d_warnings(cfg: DiscriminatorConfig) -> list[str]:
    """Differences between our discriminator and rosinality's that its checkpoint cannot carry."""
    warnings = []
    if cfg.mbstd_group_size != 4:
        warnings.append(f"minibatch-std group size {cfg.mbstd_group_size} (rosinality uses min(batch, 4))")
    if cfg.conv_clamp is not None:
        warnings.append(f"the discriminator clamps activations at ±{cfg.conv_clamp:g}; rosinality has no clamp")
    if cfg.num_mixed_res:
        warnings.append(f"mixed precision ({cfg.mixed_dtype}) in {cfg.num_mixed_res} blocks; rosinality "
                        "computes in float32")
    return warnings


def discriminator_to_rosinality(variables: dict[str, Any], cfg: DiscriminatorConfig
                                ) -> "OrderedDict[str, np.ndarray]":
    """Our resnet discriminator → rosinality ``Discriminator.state_dict()`` (the inverse of
    :func:`gancomp_jax.convert.rosinality.discriminator_to_nvlabs`)."""
    from gancomp_jax.models.nvlabs_compat import to_nvlabs_state_dict

    problems = []
    if cfg.architecture != "resnet":
        problems.append(f"architecture {cfg.architecture!r} (rosinality's is resnet)")
    if cfg.c_dim:
        problems.append("a conditional discriminator")
    if cfg.mbstd_num_channels != 1:
        problems.append(f"mbstd_num_channels={cfg.mbstd_num_channels} (rosinality uses 1)")
    if cfg.img_channels != 3:
        problems.append(f"img_channels={cfg.img_channels}")
    if problems:
        raise ValueError("this discriminator cannot be written as a rosinality checkpoint: " + "; ".join(problems))
    nv = to_nvlabs_state_dict(variables, "D")
    blur = _make_kernel()
    top = cfg.img_resolution
    sd: OrderedDict[str, np.ndarray] = OrderedDict()

    def put(dst: str, src: str) -> None:
        if src not in nv:
            raise ValueError(f"discriminator variables lack '{src}'")
        sd[dst] = np.array(nv[src], dtype=np.float32, order="C")

    put("convs.0.0.weight", f"b{top}.fromrgb.weight")
    put("convs.0.1.bias", f"b{top}.fromrgb.bias")
    for i, res in enumerate(block_resolutions(top)[::-1][:-1], start=1):
        put(f"convs.{i}.conv1.0.weight", f"b{res}.conv0.weight")
        put(f"convs.{i}.conv1.1.bias", f"b{res}.conv0.bias")
        sd[f"convs.{i}.conv2.0.kernel"] = blur.copy()
        put(f"convs.{i}.conv2.1.weight", f"b{res}.conv1.weight")
        put(f"convs.{i}.conv2.2.bias", f"b{res}.conv1.bias")
        sd[f"convs.{i}.skip.0.kernel"] = blur.copy()
        put(f"convs.{i}.skip.1.weight", f"b{res}.skip.weight")
    put("final_conv.0.weight", "b4.conv.weight")
    put("final_conv.1.bias", "b4.conv.bias")
    put("final_linear.0.weight", "b4.fc.weight")
    put("final_linear.0.bias", "b4.fc.bias")
    put("final_linear.1.weight", "b4.out.weight")
    put("final_linear.1.bias", "b4.out.bias")
    return sd


def _resolve_writer(writer: str) -> str:
    if writer not in WRITERS:
        raise ValueError(f"unknown writer {writer!r}: choose from {', '.join(WRITERS)}")
    has_torch = importlib.util.find_spec("torch") is not None
    if writer == "torch" and not has_torch:
        raise ValueError("writer='torch' needs PyTorch installed; writer='zip' needs no torch")
    if writer == "auto":
        return "torch" if has_torch else "zip"
    return writer


def save_rosinality_pt(path: str | os.PathLike, checkpoint: dict[str, Any], writer: str = "auto") -> str:
    """Writes ``checkpoint`` (``{'g_ema': OrderedDict, 'g': ..., 'd': ..., 'latent_avg': array}``)
    as a ``torch.save`` file and returns the writer used.

    ``writer``: 'torch' (``torch.save`` of CPU tensors), 'zip' (this project's torch-free writer
    of the same format, :mod:`gancomp_jax.export.torch_zip`) or 'auto' (torch when installed).
    Both read back with ``torch.load(weights_only=True)``. Written atomically.
    """
    used = _resolve_writer(writer)
    path = Path(path)
    if used == "zip":
        from gancomp_jax.export.torch_zip import write_torch_zip
        write_torch_zip(path, checkpoint)
        return used
    import torch

    def to_torch(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return torch.from_numpy(np.array(v, order="C"))
        if isinstance(v, OrderedDict):
            return OrderedDict((k, to_torch(x)) for k, x in v.items())
        if isinstance(v, dict):
            return {k: to_torch(x) for k, x in v.items()}
        return v

    tmp = path.with_name(f".{path.name}.partial")
    try:
        torch.save(to_torch(checkpoint), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return used
