"""What every pruning criterion shares: the inputs (:class:`ScoringInputs`), the registry
(:func:`register_criterion`, :func:`compute_scores`), the layer → consumer mapping and the
seeded scoring samples.

The built-in criteria live in :mod:`gancomp_jax.prune.criteria`, DCP-GAN's in
:mod:`gancomp_jax.prune.dcp`; both import this module and neither imports the other's
internals (no import cycle). :mod:`gancomp_jax.prune.criteria` re-exports every name here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gancomp_jax.models.config import GeneratorConfig
from gancomp_jax.models.generator import NOISE_MODES
from gancomp_jax.prune.widths import layer_names

Scores = dict[str, np.ndarray]


@dataclasses.dataclass
class ScoringInputs:
    """What a criterion may use.

    Attributes:
      config: the teacher generator's description.
      variables: its variables ``{'params', 'buffers'}`` (numpy or jax arrays).
      n_sample: number of generated samples (400 in CAGC / NICKEL & DiME).
      batch_size: samples per gradient batch (CAGC 10, NICKEL & DiME 8).
      noise_prob: salt-and-pepper probability inside the content mask (0.05).
      mask_fn: ``images [N, H, W, C] in [-1, 1] -> bool [N, H, W]`` content mask, or None (all pixels).
      noise_mode: the generator's per-pixel noise while scoring ('random' as released).
      l1_weights: 'effective' or 'raw' (``l1_out``).
      seed: seeds every random draw (latents, noise, salt-and-pepper, ``random``).
      progress: show a tqdm bar.
    """

    config: GeneratorConfig
    variables: dict[str, Any]
    n_sample: int = 400
    batch_size: int = 10
    noise_prob: float = 0.05
    mask_fn: Callable[[np.ndarray], np.ndarray] | None = None
    noise_mode: str = "random"
    l1_weights: str = "effective"
    seed: int = 0
    progress: bool = True


CRITERIA: dict[str, Callable[[ScoringInputs], Scores]] = {}
#: criteria that draw generator samples (and so use n_sample / batch_size)
SAMPLING_CRITERIA: set[str] = set()


def register_criterion(name: str, samples: bool = False):
    """Decorator registering ``fn(inputs) -> scores`` under ``name``."""
    def deco(fn):
        if name in CRITERIA:
            raise ValueError(f"criterion {name!r} is already registered")
        CRITERIA[name] = fn
        if samples:
            SAMPLING_CRITERIA.add(name)
        return fn
    return deco


def get_criterion(name: str) -> Callable[[ScoringInputs], Scores]:
    if name not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {name!r}; available: {', '.join(sorted(CRITERIA))}")
    return CRITERIA[name]


def compute_scores(name: str, inputs: ScoringInputs) -> Scores:
    """Runs criterion ``name`` and checks it returned one finite score per channel of every layer."""
    fn = get_criterion(name)
    check_inputs(name, inputs)
    scores = fn(inputs)
    for lname, c in zip(layer_names(inputs.config), inputs.config.channels):
        s = scores.get(lname)
        if s is None or np.shape(s) != (c,):
            raise ValueError(f"criterion {name!r} returned {None if s is None else np.shape(s)} scores for "
                             f"layer {lname}, expected ({c},)")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"criterion {name!r} returned non-finite scores for layer {lname}")
    return {k: np.asarray(scores[k], np.float64) for k in layer_names(inputs.config)}


def check_inputs(name: str, inputs: ScoringInputs) -> None:
    if name in SAMPLING_CRITERIA:
        if int(inputs.n_sample) < 1:
            raise ValueError(f"n_sample must be >= 1, got {inputs.n_sample}")
        if int(inputs.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {inputs.batch_size}")
    if not 0.0 <= float(inputs.noise_prob) <= 1.0:
        raise ValueError(f"noise_prob must be in [0, 1], got {inputs.noise_prob}")
    if inputs.noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {inputs.noise_mode!r}")
    if inputs.l1_weights not in ("effective", "raw"):
        raise ValueError(f"l1_weights must be 'effective' or 'raw', got {inputs.l1_weights!r}")


# --------------------------------------------------------------------------- layers and sampling


def consumer_paths(cfg: GeneratorConfig) -> list[tuple[str, ...]]:
    """Per layer, the params path of the module reading its output (next conv, or the last ToRGB)."""
    names = layer_names(cfg)
    paths = []
    for i in range(len(names)):
        if i + 1 < len(names):
            blk, layer = names[i + 1].split(".")
        else:
            blk, layer = f"b{cfg.img_resolution}", "torgb"
        paths.append(("synthesis", blk, layer))
    return paths


def batch_sizes(n_sample: int, batch_size: int) -> list[int]:
    """CAGC's batches: ``n // b`` batches, the last one taking the remainder (one batch if n < b)."""
    n, b = int(n_sample), int(batch_size)
    n_batch = n // b
    if n_batch == 0:
        return [n]
    return [b] * (n_batch - 1) + [b + n % b]


@dataclasses.dataclass
class SampleBatch:
    """One batch of scoring samples: latents, labels, the generator's noise key, salt-and-pepper draws."""

    z: np.ndarray                 # [B, z_dim] float32
    c: np.ndarray | None          # [B, c_dim] one-hot, or None
    noise_key: jax.Array          # key of the generator's 'noise' stream
    uniform: np.ndarray           # [B, H, W] float32 in [0, 1): pixel hit if < noise_prob (and masked)
    sign: np.ndarray              # [B, H, W] float32 in {-1, +1}


def sample_batches(inputs: ScoringInputs) -> Iterator[SampleBatch]:
    """The scoring samples, deterministic for ``inputs.seed`` (batch i uses ``fold_in(seed, i)``)."""
    cfg = inputs.config
    res = cfg.img_resolution
    base = jax.random.key(int(inputs.seed))
    for i, b in enumerate(batch_sizes(inputs.n_sample, inputs.batch_size)):
        kz, kc, kn, ku, ks = jax.random.split(jax.random.fold_in(base, i), 5)
        z = np.asarray(jax.random.normal(kz, (b, cfg.z_dim), jnp.float32))
        c = None
        if cfg.c_dim > 0:
            c = np.asarray(jax.nn.one_hot(jax.random.randint(kc, (b,), 0, cfg.c_dim), cfg.c_dim))
        uniform = np.asarray(jax.random.uniform(ku, (b, res, res), jnp.float32))
        sign = np.asarray(jax.random.rademacher(ks, (b, res, res), jnp.float32))
        yield SampleBatch(z, c, kn, uniform, sign)


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _with(tree, path, value):
    """A copy of nested dict ``tree`` with ``tree[path] = value`` (only the path is copied)."""
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = _with(tree[path[0]], path[1:], value)
    return out


def _as_jax(variables):
    return jax.tree.map(jnp.asarray, dict(variables))


def _progress(inputs: ScoringInputs, desc: str):
    return tqdm(total=int(inputs.n_sample), desc=desc, unit="img", disable=not inputs.progress, leave=False)
