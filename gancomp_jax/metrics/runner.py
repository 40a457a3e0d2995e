"""Streaming feature extraction for metrics: generated images and dataset images, in batches.

A :class:`Detector` maps uint8 images ``[N, H, W, 3]`` (``0..255``, NHWC) to features ``[N, D]``
(NVlabs' detectors take uint8 as well). Generation, NVlabs' uint8 quantisation
``clip(x·127.5 + 128, 0, 255)`` and the detector run in one jitted program whose batch axis is
sharded over all local devices (``NamedSharding`` on a 1-D ``data`` mesh); only the features
``[B, D]`` come back to the host, where :class:`FeatureStats` accumulates them (float64 sums,
or all rows). So one batch of images exists at a time, whatever the number of samples.

Latents: ``z`` rows are consecutive draws of ``np.random.RandomState(seed).randn`` (``[N, z_dim]``
in order, independent of the batch size); NVlabs draws them with an unseeded ``torch.randn``.
``noise_mode='random'`` noise comes from ``fold_in(key(seed), batch_index)``.

Classes (``GeneratorSpec.class_sampling``) for conditional generators — StyleGAN2 with
``c_dim > 0`` (one-hot ``c``) and BigGAN (``n_classes``; the one-hot row is embedded by its
``shared`` layer, eval mode): ``'dataset'`` (default) draws like NVlabs (a random dataset item's
label) when the dataset has labels, else uniformly random classes; ``'uniform'`` always draws
uniformly random classes; ``'balanced'`` gives item ``i`` of ``N`` class ``⌊i·K/N⌋`` (class-major
blocks of ``N/K``; exactly ``N/K`` per class when ``K`` divides ``N``). Class draws use
``RandomState(seed + 1)``. The family is recognised from the config (``c_dim`` vs ``n_classes``);
nothing of the BigGAN family is imported here. BigGAN generators are sampled with
``truncation_psi=1`` only (its truncation resamples z per seed; see ``jobs/generate_biggan``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from gancomp_jax.metrics.stats_cache import FeatureStats, cache_path
from gancomp_jax.models.generator import Generator

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class Detector:
    """A feature network for metrics.

    Attributes:
      name: short name used in cache file names (e.g. ``'inception'``).
      fn: ``fn(params, images_uint8 [N, H, W, 3]) -> [N, D]``; a pure JAX function when
        ``traceable`` (it is then fused with generation under ``jax.jit``), else any host
        callable receiving a numpy array.
      params: the network's parameters (pytree; ``None`` for parameter-free functions).
      cache_key: JSON-able identity of the network and its preprocessing (weights file,
        options) that keys the dataset-statistics cache.
      traceable: see ``fn``.
    """

    name: str
    fn: Callable[[Any, Any], Any]
    params: Any = None
    cache_key: tuple = ()
    traceable: bool = True


def quantize_uint8(images):
    """NVlabs: ``(img * 127.5 + 128).clamp(0, 255).to(uint8)`` (truncation toward zero)."""
    return jnp.clip(images * 127.5 + 128, 0, 255).astype(jnp.uint8)


def make_mesh() -> jax.sharding.Mesh:
    """1-D ``data`` mesh over all local devices."""
    devices = jax.local_devices()
    return jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,))


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


@dataclasses.dataclass
class GeneratorSpec:
    """What to sample: a generator, its variables and the NVlabs ``G_kwargs``.

    ``labels``: optional int array of the dataset's labels (conditional generators sample
    their ``c`` from it, like NVlabs ``dataset.get_label(randint(len(dataset)))``).
    ``class_sampling``: ``'dataset'``, ``'uniform'`` or ``'balanced'`` (module docstring).
    ``module`` is a StyleGAN2 :class:`Generator` or a BigGAN generator (``config.n_classes``).
    """

    module: Generator
    variables: Any
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    noise_mode: str = "random"
    labels: np.ndarray | None = None
    class_sampling: str = "dataset"

    def __post_init__(self):
        from gancomp_jax.utils.ranges import check_truncation_psi

        self.truncation_psi = check_truncation_psi(self.truncation_psi)
        if self.class_sampling not in CLASS_SAMPLING:
            raise ValueError(f"class_sampling must be one of {CLASS_SAMPLING}, got {self.class_sampling!r}")
        if self.module is not None and self.is_biggan and self.truncation_psi != 1.0:
            raise ValueError(f"metrics of a BigGAN generator need truncation_psi=1, got {self.truncation_psi}")

    @property
    def config(self):
        return self.module.config

    @property
    def is_biggan(self) -> bool:
        """A BigGAN generator (its config has ``n_classes`` and no ``c_dim``)."""
        return hasattr(self.config, "n_classes") and not hasattr(self.config, "c_dim")

    @property
    def resolution(self) -> int:
        """Output image size in pixels."""
        return int(self.config.resolution if self.is_biggan else self.config.img_resolution)

    @property
    def c_dim(self) -> int:
        """Number of classes (0: unconditional)."""
        return int(self.config.n_classes if self.is_biggan else self.config.c_dim)


CLASS_SAMPLING = ("dataset", "uniform", "balanced")


def balanced_classes(start: int, n: int, total: int, num_classes: int) -> np.ndarray:
    """Classes of items ``start .. start+n-1`` of ``total``: ``⌊i·K/total⌋`` (class-major blocks)."""
    i = np.arange(start, start + n, dtype=np.int64)
    return (i * num_classes // max(int(total), 1)).astype(np.int64)


class LatentStream:
    """Deterministic latents and labels: ``next(n) -> (z [n, z_dim], c [n, c_dim] | None)``.

    ``sampling``/``total``: see the module docstring (``total`` is needed for ``'balanced'``).
    """

    def __init__(self, z_dim: int, c_dim: int, seed: int = 0, labels: np.ndarray | None = None,
                 sampling: str = "dataset", total: int | None = None):
        if sampling not in CLASS_SAMPLING:
            raise ValueError(f"class sampling must be one of {CLASS_SAMPLING}, got {sampling!r}")
        if sampling == "balanced" and c_dim and not total:
            raise ValueError("balanced class sampling needs the total number of samples")
        self.z_dim, self.c_dim = z_dim, c_dim
        self.sampling, self.total, self._done = sampling, total, 0
        self._z_rng = np.random.RandomState(seed)
        self._c_rng = np.random.RandomState(seed + 1)
        self.labels = None if labels is None or len(labels) == 0 or np.min(labels) < 0 else np.asarray(labels)

    def next(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        z = self._z_rng.randn(n, self.z_dim).astype(np.float32)
        start, self._done = self._done, self._done + n
        if not self.c_dim:
            return z, None
        if self.sampling == "balanced":
            cls = balanced_classes(start, n, self.total, self.c_dim)
        elif self.sampling == "dataset" and self.labels is not None:
            cls = self.labels[self._c_rng.randint(len(self.labels), size=n)]
        else:
            cls = self._c_rng.randint(self.c_dim, size=n)
        c = np.zeros((n, self.c_dim), np.float32)
        c[np.arange(n), cls] = 1
        return z, c


def make_image_fn(spec: GeneratorSpec) -> Callable:
    """``(variables, z, c, key) -> uint8 [N, R, R, 3]`` (grey generators repeated to 3 channels)."""
    G = spec.module
    cutoff = spec.truncation_cutoff
    biggan = spec.is_biggan

    def images(variables, z, c, key):
        if biggan:  # eval mode (stored BN statistics); one-hot c through G.shared
            img = G.apply(variables, z, c)
        else:
            img = G.apply(variables, z, c, truncation_psi=spec.truncation_psi, truncation_cutoff=cutoff,
                          noise_mode=spec.noise_mode, rngs={"noise": key})
        u8 = quantize_uint8(img)
        if u8.shape[-1] == 1:
            u8 = jnp.repeat(u8, 3, axis=-1)
        return u8
    return images


def generator_batches(spec: GeneratorSpec, num_items: int, batch_size: int = 64, seed: int = 0,
                      mesh: jax.sharding.Mesh | None = None, detector: Detector | None = None,
                      desc: str = "generator features", progress: bool = True,
                      with_classes: bool = False):
    """Yields host arrays per batch: detector features ``[b, D]`` (or uint8 images if
    ``detector`` is None), ``b ≤ batch_size`` rows, ``num_items`` rows in total; with
    ``with_classes`` pairs ``(array, requested classes int64 [b] | None)``."""
    mesh = mesh or make_mesh()
    ndev = mesh.devices.size
    bs = _round_up(max(int(batch_size), 1), ndev)
    cfg = spec.config
    c_dim = spec.c_dim
    stream = LatentStream(cfg.z_dim, c_dim, seed, spec.labels, spec.class_sampling, num_items)
    image_fn = make_image_fn(spec)
    data = NamedSharding(mesh, P(DATA_AXIS))
    repl = NamedSharding(mesh, P())
    fused = detector is not None and detector.traceable
    if fused:
        fn = jax.jit(lambda v, dp, z, c, k: detector.fn(dp, image_fn(v, z, c, k)),
                     out_shardings=data)
    else:
        fn = jax.jit(image_fn, out_shardings=data)
    variables = jax.device_put(spec.variables, repl)
    det_params = jax.device_put(detector.params, repl) if fused else None
    base_key = jax.random.key(seed)
    bar = tqdm(total=num_items, desc=desc, unit="img", disable=not progress, leave=False)
    done, index = 0, 0
    try:
        while done < num_items:
            n = min(bs, num_items - done)
            z, c = stream.next(n)
            classes = None if c is None else c.argmax(axis=1)
            if n < bs:
                z = np.concatenate([z, np.zeros((bs - n, cfg.z_dim), np.float32)])
                c = None if c is None else np.concatenate([c, np.zeros((bs - n, c_dim), np.float32)])
            z = jax.device_put(z, data)
            c = None if c is None else jax.device_put(c, data)
            key = jax.random.fold_in(base_key, index)
            if fused:
                out = np.asarray(fn(variables, det_params, z, c, key))[:n]
            else:
                out = np.asarray(fn(variables, z, c, key))[:n]
                if detector is not None:
                    out = np.asarray(detector.fn(detector.params, out))
            yield (out, classes) if with_classes else out
            done += n
            index += 1
            bar.update(n)
    finally:
        bar.close()


def compute_feature_stats_for_generator(spec: GeneratorSpec, detector: Detector, max_items: int,
                                        batch_size: int = 64, seed: int = 0,
                                        capture_all: bool = False, capture_mean_cov: bool = False,
                                        mesh=None, progress: bool = True) -> FeatureStats:
    """Detector statistics of ``max_items`` generated images (one batch in memory at a time)."""
    stats = FeatureStats(capture_all=capture_all, capture_mean_cov=capture_mean_cov, max_items=max_items)
    for feats in generator_batches(spec, max_items, batch_size, seed, mesh, detector,
                                   desc=f"generator {detector.name}", progress=progress):
        stats.append(feats)
    return stats


def _load_images(source, indices: Sequence[int], pool) -> np.ndarray:
    imgs = list(pool.map(lambda i: source[int(i)]["image"], indices))
    x = np.stack(imgs)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.dtype != np.uint8:
        raise ValueError(f"dataset images must be uint8, got {x.dtype}")
    return x


def dataset_batches(source, detector: Detector, num_items: int, batch_size: int = 64, mesh=None,
                    desc: str = "dataset features", progress: bool = True, num_threads: int = 4):
    """Yields detector features ``[b, D]`` of dataset items ``0..num_items-1`` (no x-flips)."""
    mesh = mesh or make_mesh()
    ndev = mesh.devices.size
    bs = _round_up(max(int(batch_size), 1), ndev)
    data = NamedSharding(mesh, P(DATA_AXIS))
    repl = NamedSharding(mesh, P())
    if detector.traceable:
        fn = jax.jit(detector.fn, out_shardings=data)
        params = jax.device_put(detector.params, repl)
    bar = tqdm(total=num_items, desc=desc, unit="img", disable=not progress, leave=False)
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        starts = list(range(0, num_items, bs))
        nxt = pool.submit(_load_images, source, range(0, min(bs, num_items)), pool) if starts else None
        try:
            for j, start in enumerate(starts):
                x = nxt.result()
                if j + 1 < len(starts):  # prefetch the next batch while this one runs
                    s2 = starts[j + 1]
                    nxt = pool.submit(_load_images, source, range(s2, min(s2 + bs, num_items)), pool)
                n = x.shape[0]
                if detector.traceable:
                    if n < bs:
                        x = np.concatenate([x, np.zeros((bs - n, *x.shape[1:]), x.dtype)])
                    out = np.asarray(fn(params, jax.device_put(x, data)))[:n]
                else:
                    out = np.asarray(detector.fn(detector.params, x))
                yield out
                bar.update(n)
        finally:
            bar.close()


def dataset_identity(source, dataset_name: str | None = None, num_items: int | None = None) -> tuple[str, dict]:
    """(name, JSON-able description) of a data source for the statistics cache; sources of files
    add the sha256 of the contents of their first ``num_items`` images (``content_digest``)."""
    from gancomp_jax.metrics.stats_cache import file_fingerprint
    desc = {"class": type(source).__name__, "len": len(source),
            "resolution": getattr(source, "resolution", None)}
    if hasattr(source, "content_digest"):
        desc["content_sha256"] = source.content_digest(num_items)
    for attr in ("path", "location", "root", "directory", "name", "split", "tint"):
        if hasattr(source, attr):
            v = getattr(source, attr)
            desc[attr] = file_fingerprint(v) if isinstance(v, (str, bytes)) or hasattr(v, "__fspath__") else repr(v)
    name = dataset_name or type(source).__name__.replace("Source", "").lower()
    return name, desc


def compute_feature_stats_for_dataset(source, detector: Detector, max_items: int | None = None,
                                      batch_size: int = 64, capture_all: bool = False,
                                      capture_mean_cov: bool = False, cache: bool = True,
                                      dataset_name: str | None = None, mesh=None,
                                      progress: bool = True) -> FeatureStats:
    """Detector statistics of the first ``max_items`` dataset images (all if None), cached.

    The cache key covers the dataset (class, length, resolution, file path/size/mtime and, for
    sources of files, the sha256 of the images' contents), the detector (``detector.cache_key``)
    and the statistics options; a cache file is used only if it verifies (see ``stats_cache``).
    """
    num_items = len(source) if max_items is None else min(len(source), int(max_items))
    if num_items < 1:
        raise ValueError("the dataset is empty")
    path = None
    if cache:
        name, desc = dataset_identity(source, dataset_name, num_items)
        options = dict(dataset=repr(sorted(desc.items())), detector=repr(detector.cache_key),
                       stats=repr(dict(capture_all=capture_all, capture_mean_cov=capture_mean_cov,
                                       max_items=num_items)))
        path = cache_path(name, detector.name, options)
        key = repr(sorted(options.items()))
        cached = FeatureStats.load_cached(path, key)
        if cached is not None:
            return cached
    stats = FeatureStats(capture_all=capture_all, capture_mean_cov=capture_mean_cov, max_items=num_items)
    for feats in dataset_batches(source, detector, num_items, batch_size, mesh,
                                 desc=f"dataset {detector.name}", progress=progress):
        stats.append(feats)
    if path is not None:
        stats.save(path, key)
    return stats
