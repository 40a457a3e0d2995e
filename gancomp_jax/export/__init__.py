"""Export our networks for the PyTorch StyleGAN2 codebases.

* :mod:`~gancomp_jax.export.rosinality`: rosinality stylegan2-pytorch / CAGC ``.pt``
  checkpoints (``g_ema``, ``g``, ``d``, ``latent_avg``), per-layer widths as the tensors have
  them, written with ``torch.save`` or, without torch, by :mod:`~gancomp_jax.export.torch_zip`.
* :mod:`~gancomp_jax.export.nvlabs_safetensors`: NVlabs stylegan2-ada-pytorch state dicts in
  safetensors, and their reader.

:func:`export_model` writes both for a model directory / ``.pkl`` / ``.pt``
(``tools/export_pt.py`` is its command line). Heavy imports happen inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["ROSINALITY_FILE", "export_model"]

ROSINALITY_FILE = "rosinality.pt"
_ROS_KEYS = {"G_ema": "g_ema", "G": "g", "D": "d"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def export_model(model: str | os.PathLike, out_dir: str | os.PathLike, which: list[str] | None = None,
                 formats: tuple[str, ...] = ("rosinality", "safetensors"), writer: str = "auto",
                 overwrite: bool = False) -> dict[str, Any]:
    """Exports the networks of ``model`` (our model directory, an NVlabs ``.pkl`` or a
    rosinality ``.pt``) to ``out_dir``:

    * ``rosinality.pt``: ``{'g_ema', 'g', 'd', 'latent_avg'}`` for those networks present
      (``latent_avg`` = G_ema's ``w_avg``; ``d`` only for a resnet discriminator, as
      rosinality's; ``g_ema`` is required);
    * ``{name}.nvlabs.safetensors`` for each network (G_ema, G, D);
    * ``export.json``: what was written (files, sha256, widths, warnings).

    ``which`` restricts the networks (default: all in the model). Returns the export.json
    content. Raises ValueError / FileNotFoundError / FileExistsError before writing anything
    when the input is bad or ``out_dir`` exists (unless ``overwrite``).
    """
    from gancomp_jax import checkpoints
    from gancomp_jax.utils.atomic_dir import check_output_dir, write_marker, writing_dir
    from gancomp_jax.export.nvlabs_safetensors import save_nvlabs_safetensors
    from gancomp_jax.export.rosinality import (discriminator_to_rosinality, generator_to_rosinality,
                                               rosinality_compat_warnings, rosinality_d_warnings,
                                               save_rosinality_pt)

    out_dir = Path(out_dir)
    bad = [f for f in formats if f not in ("rosinality", "safetensors")]
    if bad or not formats:
        raise ValueError(f"unknown export format(s) {bad or formats}: choose rosinality and/or safetensors")
    check_output_dir(out_dir, (model,), overwrite)  # before reading: only an earlier export of ours is replaced
    networks = dict(checkpoints.load_any(model))
    names = list(networks) if which is None else list(which)
    missing = [n for n in names if n not in networks]
    if missing:
        raise ValueError(f"{model}: network(s) {missing} not in the model (found: {list(networks)})")
    networks = {n: networks[n] for n in names}
    if any(net.kind.startswith("biggan") for net in networks.values()):  # BigGAN: BigGAN-PyTorch's layout
        from gancomp_jax.export.biggan import export_biggan
        return export_biggan(model, out_dir, networks, writer=writer, overwrite=overwrite)

    warnings: list[str] = []
    ros: dict[str, Any] = {}
    if "rosinality" in formats:
        if "G_ema" not in networks or networks["G_ema"].kind != "generator":
            raise ValueError(f"{model}: a rosinality checkpoint needs a generator 'G_ema' "
                             f"(found: {list(networks)})")
        for name, net in networks.items():
            key = _ROS_KEYS.get(name)
            if key is None:
                warnings.append(f"network {name!r} has no rosinality key; left out of {ROSINALITY_FILE}")
            elif net.kind == "generator":
                warnings += [f"{name}: {w}" for w in rosinality_compat_warnings(net.config)]
                sd, latent_avg = generator_to_rosinality(net.variables, net.config)
                ros[key] = sd
                if name == "G_ema":
                    ros["latent_avg"] = latent_avg
            elif (net.config.architecture == "resnet" and not net.config.c_dim
                  and net.config.mbstd_num_channels == 1 and net.config.img_channels == 3):
                warnings += [f"{name}: {w}" for w in rosinality_d_warnings(net.config)]
                ros[key] = discriminator_to_rosinality(net.variables, net.config)
            else:
                warnings.append(f"{name}: this discriminator ({net.config.architecture}, c_dim "
                                f"{net.config.c_dim}, {net.config.mbstd_num_channels} mbstd channels) has no "
                                f"rosinality form; left out of {ROSINALITY_FILE}")
        ros = {k: ros[k] for k in ("g", "d", "g_ema", "latent_avg") if k in ros}

    files: dict[str, Any] = {}
    summary = dict(
        source=str(model), files=files, warnings=warnings,
        networks={n: dict(kind=net.kind, widths=list(net.config.channels),
                          img_resolution=net.config.img_resolution) for n, net in networks.items()})
    # Everything is written into a temporary folder beside out_dir that is moved into place when
    # complete: a killed export leaves no half-written out_dir (the next run removes the temporary).
    with writing_dir(out_dir, (model,)) as tmp:
        write_marker(tmp, "export_pt")
        if ros:
            used = save_rosinality_pt(tmp / ROSINALITY_FILE, ros, writer=writer)
            files[ROSINALITY_FILE] = dict(format="rosinality-pt", writer=used,
                                          networks=[k for k in ros if k != "latent_avg"],
                                          sha256=_sha256(tmp / ROSINALITY_FILE))
        if "safetensors" in formats:
            for name, net in networks.items():
                path = tmp / f"{name}.nvlabs.safetensors"
                save_nvlabs_safetensors(path, net, name, extra_metadata={"source": str(model)})
                files[path.name] = dict(format="nvlabs-safetensors", network=name, sha256=_sha256(path))
        (tmp / "export.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary
