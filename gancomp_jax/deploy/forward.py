"""The deployable generator forward pass: latents in, NCHW float32 image out, weights baked in.

:func:`deploy_forward` closes over one generator's variables and returns
``fn(z[, c][, truncation_psi]) -> image`` with

* ``z``: float32 ``[N, z_dim]``; ``c``: float32 ``[N, c_dim]`` (conditional models only);
* ``truncation_psi``: float32 scalar — an input only when no fixed ψ is given, else baked in;
* ``image``: float32 ``[N, img_channels, R, R]`` (NVlabs' NCHW layout), nominally in [-1, 1]
  and not clamped: uint8 = ``clip(image * 127.5 + 128, 0, 255)`` truncated, as
  :func:`gancomp_jax.utils.images.to_uint8`.

It computes exactly what the generate job (``gancomp_jax.jobs.generate``) computes: the mapping
network, ``w_avg`` truncation of all layers, and the stored per-layer noise maps
(``noise_mode='const'``) or no noise (``'none'``). ``'random'`` noise is refused: a graph that
draws noise is not a deterministic function of its inputs, and the exporters need one.

The modulated convolution runs in its ``'shared'`` form whatever the model's ``modconv_impl``
(see :func:`deploy_config`). ``dtype='float32'`` runs every layer in float32 (the generate job's ``force_fp32``).
``dtype='float16'`` stores the synthesis weights as float16 and runs every synthesis block in
float16 (NVlabs' ``num_fp16_res`` = all blocks, with its float16 pre-normalisation of the
modulated convolution); the mapping network, ``w_avg`` and the output stay float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.models.config import GeneratorConfig, block_resolutions
from gancomp_jax.models.generator import Generator

DEPLOY_NOISE_MODES = ("const", "none")
DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One graph input: name, shape (``None`` = the batch dimension) and dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


def check_options(noise_mode: str, dtype: str) -> None:
    """Raises ValueError for options that cannot be exported."""
    if noise_mode == "random":
        raise ValueError("--noise_mode random cannot be exported: a graph that draws fresh noise is not a "
                         "deterministic function of its inputs (and jax2onnx / jax.export need one); use "
                         "'const' (the stored noise maps, NVlabs' noise_mode='const') or 'none'")
    if noise_mode not in DEPLOY_NOISE_MODES:
        raise ValueError(f"--noise_mode must be one of {DEPLOY_NOISE_MODES}, got {noise_mode!r}")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {DTYPES}, got {dtype!r}")


def deploy_config(cfg: GeneratorConfig, dtype: str) -> GeneratorConfig:
    """The generator description the exported graph runs (see the module docstring).

    The modulated convolution always runs in its ``'shared'`` form (plain convolutions): the
    ``'grouped'`` form needs one convolution group per sample, which a graph with a dynamic
    batch cannot have. Both forms compute the same numbers (``gancomp_jax.ops.modconv``).
    """
    cfg = cfg.replace(modconv_impl="shared")
    if dtype == "float16":
        return cfg.replace(num_mixed_res=len(block_resolutions(cfg.img_resolution)), mixed_dtype="float16")
    return cfg.replace(num_mixed_res=0)


def deploy_variables(variables: dict[str, Any], dtype: str) -> dict[str, Any]:
    """numpy variables; with float16 the synthesis ``params`` are stored as float16."""
    out = jax.tree.map(lambda a: np.asarray(a, np.float32), dict(variables))
    if dtype == "float16":
        params = dict(out["params"])
        params["synthesis"] = jax.tree.map(lambda a: a.astype(np.float16), params["synthesis"])
        out["params"] = params
    return out


def input_specs(cfg: GeneratorConfig, truncation_psi: float | None) -> list[InputSpec]:
    """The graph's inputs in call order."""
    specs = [InputSpec("z", (None, cfg.z_dim))]
    if cfg.c_dim:
        specs.append(InputSpec("c", (None, cfg.c_dim)))
    if truncation_psi is None:
        specs.append(InputSpec("truncation_psi", ()))
    return specs


def output_shape(cfg: GeneratorConfig) -> tuple[int | None, ...]:
    return (None, cfg.img_channels, cfg.img_resolution, cfg.img_resolution)


def deploy_forward(cfg: GeneratorConfig, variables: dict[str, Any], truncation_psi: float | None = None,
                   noise_mode: str = "const", dtype: str = "float32") -> Callable[..., jnp.ndarray]:
    """``fn(z[, c][, truncation_psi]) -> image [N, C, R, R]`` float32 (see the module docstring)."""
    check_options(noise_mode, dtype)
    G = Generator(deploy_config(cfg, dtype))
    v = deploy_variables(variables, dtype)
    has_c, psi_input = bool(cfg.c_dim), truncation_psi is None

    def forward(*args):
        args = list(args)
        z = args.pop(0)
        c = args.pop(0) if has_c else None
        psi = args.pop(0) if psi_input else float(truncation_psi)
        img = G.apply(v, z, c, truncation_psi=psi, noise_mode=noise_mode)
        return jnp.transpose(img.astype(jnp.float32), (0, 3, 1, 2))

    return forward
