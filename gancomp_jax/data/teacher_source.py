"""A data source sampled from a frozen teacher generator (data-free distillation).

``config.data.source = 'teacher'``: the "real" images a method sees are the teacher's own
samples, so distillation runs when the user has the teacher but not its dataset::

    --config.data.source=teacher --config.data.path=TEACHER   # model dir / run dir / .pkl / .pt
    [--config.data.teacher_network=G_ema] [--config.data.truncation_psi=1.0]
    [--config.data.teacher_seed=0] [--config.data.num_images=50000] [--config.data.noise_mode=random]
    [--config.data.xflip=True]

Element ``i`` (``0 <= i < num_images``) is the teacher's image for NVlabs' seed
``teacher_seed + i`` (``z = RandomState(seed).randn(z_dim)``; a conditional teacher also draws
its class from that RandomState), truncated with ``truncation_psi``, with per-layer noise
``'random'`` (drawn from ``fold_in(key(seed), 0)``, so the same for every run),
``'const'`` or ``'none'``, quantised to uint8 as NVlabs saves images
(``clip(x·127.5 + 128, 0, 255)``). So the set is fixed and finite: the pipeline shuffles it per
epoch, applies ``xflip`` and resumes exactly like any other source. Images are generated on
demand, one per read, by a jitted batch-1 generator on the default device (no file is
written); ``worker_count`` must be 0 (worker processes would each start the accelerator).

**Deviation from the released methods.** Every released compression method (CAGC, NICKEL &
DiME, DGL-GAN, StyleKD, ITGC, GAN Slimming, DCP-GAN) trains its discriminators on the *real*
dataset (FFHQ). With this source the discriminators learn the teacher's distribution instead:
the student is pulled towards the teacher's samples, artefacts and mode coverage included, and
can at best match the teacher (not the data). Metrics (FID against the real data) then measure
the teacher's gap plus the student's. Use it when the dataset is unavailable, and say so when
reporting results.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

NOISE_MODES = ("random", "const", "none")


class TeacherSource:
    """Random-access source: ``{'image': uint8 [R, R, 3], 'label': int}`` sampled from a teacher.

    Attributes:
      resolution, num_classes (the teacher's ``c_dim``; 0 for unconditional → labels -1),
      num_skipped (always 0).
    """

    num_skipped = 0

    def __init__(self, path: str, network: str = "G_ema", *, num_images: int = 50000, seed: int = 0,
                 truncation_psi: float = 1.0, noise_mode: str = "random", resolution: int | None = None):
        from gancomp_jax import checkpoints

        if not path:
            raise ValueError("data source 'teacher' needs config.data.path (the teacher: a model directory, "
                             "training run, NVlabs .pkl or rosinality .pt)")
        if int(num_images) < 1:
            raise ValueError(f"config.data.num_images={num_images} must be >= 1")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"config.data.noise_mode={noise_mode!r} must be one of {NOISE_MODES}")
        psi = float(truncation_psi)
        if not np.isfinite(psi):
            raise ValueError(f"config.data.truncation_psi={truncation_psi!r} must be a finite number")
        try:
            nets = checkpoints.load_any(path, [network])
        except KeyError as e:
            raise ValueError(f"config.data.path={path}: {e.args[0] if e.args else e}") from None
        if network not in nets or nets[network].kind != "generator":
            raise ValueError(f"config.data.path={path}: no generator named {network!r} "
                             f"(config.data.teacher_network)")
        net = nets[network]
        self.path, self.network = str(path), network
        self.config = net.config
        self._variables = net.variables
        self.resolution = int(net.config.img_resolution)
        if resolution and int(resolution) != self.resolution:
            raise ValueError(f"config.data.resolution={resolution} does not match the teacher's "
                             f"{self.resolution} px")
        self.num_classes = int(net.config.c_dim)
        self.num_images, self.seed = int(num_images), int(seed)
        self.truncation_psi, self.noise_mode = psi, noise_mode
        self._fn = None
        self._lock = threading.Lock()

    # Grain may copy the source; the jitted function and device arrays are rebuilt lazily.
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fn"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _generator(self):
        with self._lock:
            if self._fn is None:
                import jax

                from gancomp_jax.models import Generator

                G = Generator(self.config)
                v = jax.device_put(self._variables)
                psi, mode = self.truncation_psi, self.noise_mode
                base = jax.random.fold_in(jax.random.key(self.seed), 0)

                @jax.jit
                def gen(z, c, index):
                    rngs = {"noise": jax.random.fold_in(base, index)}
                    img = G.apply(v, z, c, truncation_psi=psi, noise_mode=mode, rngs=rngs)
                    return jax.numpy.clip(img * 127.5 + 128, 0, 255).astype(jax.numpy.uint8)[0]
                self._fn = gen
            return self._fn

    def latent(self, index: int) -> tuple[np.ndarray, np.ndarray | None, int]:
        """(z [1, z_dim], one-hot c [1, c_dim] or None, label) of element ``index``."""
        rs = np.random.RandomState(self.seed + int(index))
        z = rs.randn(1, self.config.z_dim).astype(np.float32)
        if self.num_classes:
            label = int(rs.randint(self.num_classes))
            c = np.zeros((1, self.num_classes), np.float32)
            c[0, label] = 1
            return z, c, label
        return z, None, -1

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.num_images:
            raise IndexError(f"teacher source index {index} out of range [0, {self.num_images})")
        z, c, label = self.latent(index)
        img = np.asarray(self._generator()(z, c, np.uint32(index)))
        return {"image": img, "label": label}

    def __repr__(self) -> str:
        return (f"TeacherSource({self.path!r}, {self.network}, n={self.num_images}, seed={self.seed}, "
                f"psi={self.truncation_psi}, noise={self.noise_mode})")
