#!/usr/bin/env python
"""Write a fake full-size NVlabs network pickle (random weights) for timing and tests.

    python tools/make_fake_nvlabs_pkl.py OUT.pkl [--preset paper256] [--seed 0] [--fp32]
    python tools/convert_pt_weights.py OUT.pkl /tmp/paper256_model     # time the converter

The file looks like a stylegan2-ada-pytorch ``network-snapshot-*.pkl`` of the preset: G, D and
G_ema with NVlabs' ``init_kwargs`` (``train.py`` defaults: ``conv_clamp=256``,
``num_fp16_res=4``; ``--fp32`` gives None/0), plus ``augment_pipe`` and
``training_set_kwargs``. Tensor names and shapes come from our model
(``to_nvlabs_state_dict`` of its abstract variables), values are float32 N(0, 1) draws. No
NVlabs code and no torch are needed (gancomp_jax.convert.fake_nvlabs writes the pickle).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")

#: NVlabs train.py ``--cfg`` specs: resolution, channel_base, mapping layers, minibatch-std group.
PRESETS = {
    "paper256": dict(res=256, channel_base=16384, map=8, mbstd=8),
    "paper512": dict(res=512, channel_base=32768, map=8, mbstd=8),
    "paper1024": dict(res=1024, channel_base=32768, map=8, mbstd=4),
    "stylegan2": dict(res=1024, channel_base=32768, map=8, mbstd=4),
    "cifar": dict(res=32, channel_base=32768, map=2, mbstd=32, d_arch="orig"),
}


def nvlabs_kwargs(preset: str, fp32: bool = False) -> tuple[dict, dict]:
    """``(G init_kwargs, D init_kwargs)`` as NVlabs' train.py builds them for ``preset``."""
    spec = PRESETS[preset]
    clamp, fp16 = (None, 0) if fp32 else (256, 4)
    common = dict(c_dim=0, img_resolution=spec["res"], img_channels=3)
    g = dict(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=spec["map"]),
             synthesis_kwargs=dict(channel_base=spec["channel_base"], channel_max=512, num_fp16_res=fp16,
                                   conv_clamp=clamp), **common)
    d = dict(block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=spec["mbstd"]),
             channel_base=spec["channel_base"], channel_max=512, num_fp16_res=fp16, conv_clamp=clamp, **common)
    if "d_arch" in spec:
        d["architecture"] = spec["d_arch"]
    return g, d


def random_state_dict(kind: str, config, network: str, rng) -> dict:
    """NVlabs-named float32 N(0, 1) tensors with the shapes of our ``kind`` network for ``config``."""
    import jax
    import numpy as np

    from gancomp_jax import checkpoints
    from gancomp_jax.models.nvlabs_compat import to_nvlabs_state_dict

    abstract = checkpoints.abstract_variables(kind, config)
    variables = jax.tree.map(lambda a: rng.standard_normal(a.shape, dtype=np.float32), abstract)
    return to_nvlabs_state_dict(variables, network)


def make_fake_pickle(path: str | os.PathLike, preset: str = "paper256", seed: int = 0, fp32: bool = False) -> Path:
    """Writes the fake snapshot of ``preset`` to ``path``."""
    import numpy as np

    from gancomp_jax.convert.fake_nvlabs import FakeNetwork, write_nvlabs_pickle
    from gancomp_jax.models import DiscriminatorConfig, GeneratorConfig

    gk, dk = nvlabs_kwargs(preset, fp32)
    spec = PRESETS[preset]
    gcfg = GeneratorConfig.nvlabs(spec["res"], spec["channel_base"], 512, mapping_layers=spec["map"])
    dcfg = DiscriminatorConfig.nvlabs(spec["res"], spec["channel_base"], 512,
                                      architecture=spec.get("d_arch", "resnet"))
    rng = np.random.default_rng(seed)
    networks = {
        "G": FakeNetwork("Generator", gk, random_state_dict("generator", gcfg, "G", rng)),
        "D": FakeNetwork("Discriminator", dk, random_state_dict("discriminator", dcfg, "D", rng)),
        "G_ema": FakeNetwork("Generator", gk, random_state_dict("generator", gcfg, "G_ema", rng)),
    }
    extra = dict(
        augment_pipe=FakeNetwork("AugmentPipe", dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1,
                                                     xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1,
                                                     saturation=1),
                                 {"p": np.zeros([], np.float32)}),
        training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="fake.zip",
                                 use_labels=False, max_size=70000, xflip=False, resolution=spec["res"]),
    )
    return write_nvlabs_pickle(path, networks, extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="pickle to write")
    p.add_argument("--preset", default="paper256", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="conv_clamp=None, num_fp16_res=0 (train.py --fp32)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    path = make_fake_pickle(args.out, args.preset, args.seed, args.fp32)
    size = path.stat().st_size / 2 ** 20
    print(f"wrote {path} ({args.preset}, {size:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
