"""Import BigGAN-PyTorch weights: one ``G.pth`` / ``G_ema.pth`` / ``D.pth`` file, or a weights
folder holding them (and ``state_dict.pth``, whose ``config`` supplies ``SN_eps``/``BN_eps``
and is checked against the tensors). Networks are named from the file name (``G_ema*`` →
``G_ema``, ``G*`` → ``G``, ``D*`` → ``D``), else from their kind (``G`` / ``D``).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from gancomp_jax.convert.errors import NetworkNotFoundError, UnrecognizedFileError, UnsupportedNetworkError
from gancomp_jax.io.torch_pickle import CheckpointFormatError, UnsafePickleError

FORMAT = "biggan-pytorch"
DESCRIPTION = "BigGAN-PyTorch state dict (G.pth / G_ema.pth / D.pth)"
FILE_NAMES = ("G_ema.pth", "G.pth", "D.pth")


def is_biggan_file(path: Path, max_alloc: int | None = None) -> bool:
    """Whether ``path`` is a BigGAN-PyTorch G/D state dict (read by the restricted reader)."""
    from gancomp_jax.io.biggan_pth import network_kind
    from gancomp_jax.io.torch_pickle import load_torch_file

    try:
        return network_kind(load_torch_file(path, max_alloc=max_alloc)) is not None
    except (CheckpointFormatError, UnsafePickleError):
        return False


def is_biggan_dir(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in FILE_NAMES)


def _name(path: Path, kind: str) -> str:
    stem = path.name.split(".")[0]
    if stem.startswith("G_ema"):
        return "G_ema"
    if stem.startswith("G") and kind == "generator":
        return "G"
    if stem.startswith("D") and kind == "discriminator":
        return "D"
    return "G" if kind == "generator" else "D"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_state_dict(sd, kind: str, where: str, run_config=None):
    """``checkpoints.Network`` from a BigGAN-PyTorch state dict (architecture inferred)."""
    import jax
    import numpy as np

    from gancomp_jax.convert.biggan import (check_against, infer_discriminator_config, infer_generator_config,
                                            to_variables)
    from gancomp_jax.models.network import Network
    from gancomp_jax.models.registry import abstract_variables

    if kind == "generator":
        cfg, net_kind = infer_generator_config(sd, where, run_config), "biggan_generator"
    else:
        cfg, net_kind = infer_discriminator_config(sd, where, run_config), "biggan_discriminator"
    variables = to_variables(sd, where)
    check_against(variables, abstract_variables(net_kind, cfg), where)
    variables = {c: jax.tree.map(np.asarray, variables[c]) for c in ("params", "buffers")}
    return Network(net_kind, cfg, variables)


def import_biggan(path: str | Path, which=None, max_alloc: int | None = None):
    """``ImportResult`` of the BigGAN-PyTorch file or weights folder at ``path``."""
    from gancomp_jax.convert.result import ImportResult, _requested
    from gancomp_jax.convert.common import count_parameters
    from gancomp_jax.io.biggan_pth import load_biggan_state_dict, load_run_config

    path = Path(path)
    t0 = time.perf_counter()
    folder = path if path.is_dir() else path.parent
    files = [folder / n for n in FILE_NAMES if (folder / n).is_file()] if path.is_dir() else [path]
    run = None
    if (folder / "state_dict.pth").is_file() and (path.is_dir() or path.name in FILE_NAMES):
        try:
            run = load_run_config(folder / "state_dict.pth", max_alloc=max_alloc)
        except (CheckpointFormatError, UnsafePickleError) as e:
            raise UnrecognizedFileError(str(e)) from None
    read = {}
    for f in files:
        try:
            kind, sd = load_biggan_state_dict(f, max_alloc=max_alloc)
        except UnsafePickleError as e:
            raise UnrecognizedFileError(str(e)) from None
        except CheckpointFormatError as e:
            raise UnrecognizedFileError(str(e)) from None
        name = _name(f, kind)
        if name in read:
            raise UnsupportedNetworkError(f"{f}: a second network named {name} in {folder}")
        read[name] = (f, kind, sd)
    present = list(read)
    names = _requested(which, present, ", ".join(present), path)
    t1 = time.perf_counter()
    nets, facts, warnings = {}, {}, []
    for n in names:
        f, kind, sd = read[n]
        try:
            nets[n] = convert_state_dict(sd, kind, f"{f}: network '{n}'", run["config"] if run else None)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            if isinstance(e, UnsupportedNetworkError):
                raise
            raise UnsupportedNetworkError(f"{f}: network '{n}': malformed values ({type(e).__name__}: {e})") from None
        facts[n] = {"kind": nets[n].kind, "config": nets[n].config.to_dict(),
                    "num_params": count_parameters(nets[n].variables), "source_key": f.name,
                    "sha256": _sha256(f)}
    if run is None:
        warnings.append(f"{folder}: no state_dict.pth: SN_eps 1e-6 and BN_eps 1e-5 assumed (the ImageNet launch "
                        f"scripts' values)")
    first = files[0]
    metadata: dict[str, Any] = {
        "source": {"path": str(path.absolute()), "format": FORMAT, "description": DESCRIPTION, "reader": "builtin",
                   "sha256": facts[names[0]]["sha256"] if names else "", "size_bytes": sum(f.stat().st_size for f in files)
                   if files else first.stat().st_size},
        "file_networks": present, "networks": facts, "warnings": warnings,
        "load_seconds": round(t1 - t0, 3), "imports_seconds": 0.0,
        "convert_seconds": round(time.perf_counter() - t1, 3),
    }
    if run is not None:
        metadata["training_args"] = run["config"]
        metadata["itr"] = run["itr"]
    return ImportResult(nets, metadata)

