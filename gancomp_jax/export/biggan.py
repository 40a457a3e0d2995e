"""Write BigGAN networks back in BigGAN-PyTorch's layout: ``G.pth``, ``G_ema.pth``, ``D.pth``
(``torch.save`` of the state dict, loadable with ``G.load_state_dict(torch.load(...))`` into a
BigGAN-PyTorch ``Generator``/``Discriminator`` of the same widths) and ``export.json``.

Key mapping: :func:`gancomp_jax.convert.biggan.to_state_dict`. Written with ``torch.save`` when
torch is installed, else the project's torch-free writer of the same zip format.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_biggan(model, out_dir, networks: Mapping[str, Any], writer: str = "auto",
                  overwrite: bool = False) -> dict[str, Any]:
    from gancomp_jax.convert.biggan import to_state_dict
    from gancomp_jax.export.rosinality import save_rosinality_pt  # a plain torch.save / zip writer
    from gancomp_jax.utils.atomic_dir import write_marker, writing_dir

    bad = [n for n, net in networks.items() if not net.kind.startswith("biggan") or n not in ("G_ema", "G", "D")]
    if bad:
        raise ValueError(f"{model}: BigGAN-PyTorch export takes BigGAN networks named G_ema, G, D; "
                         f"cannot export {bad}")
    out_dir = Path(out_dir)
    files: dict[str, Any] = {}
    summary = dict(source=str(model), files=files, warnings=[],
                   networks={n: dict(kind=net.kind, widths=list(net.config.channels),
                                     img_resolution=net.config.resolution, config=net.config.to_dict())
                             for n, net in networks.items()})
    with writing_dir(out_dir, (model,)) as tmp:
        write_marker(tmp, "export_pt")
        for name, net in networks.items():
            sd = OrderedDict(sorted(to_state_dict(net.variables).items()))
            path = tmp / f"{name}.pth"
            used = save_rosinality_pt(path, sd, writer=writer)
            files[path.name] = dict(format="biggan-pytorch", network=name, writer=used, sha256=_sha256(path))
        (tmp / "export.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary
