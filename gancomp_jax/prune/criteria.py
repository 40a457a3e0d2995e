"""Channel-importance criteria: one score per generator layer and output channel (lowest removed).

Every criterion is a function ``fn(inputs: ScoringInputs) -> {layer name: float64 [C]}``
registered with :func:`register_criterion`; adding one touches nothing else. Layer names are
those of :func:`gancomp_jax.prune.widths.layer_names` (``b4.const``, ``b4.conv1``, ...).

As in the released CAGC code (``Util/content_aware_pruning.py``, ``Util/pruning_util.py``) and
NICKEL & DiME (``utils/content_aware_pruning.py``), a layer's channels are scored through the
weights that *read* them — the layer's *consumer*: the next modulated conv (for ``b4.const``:
``b4.conv1``), and for the last layer the final ToRGB. Intermediate ToRGBs are not used
(CAGC issue #16). Each score is a function of the consumer's input-channel axis.

Criteria:

* ``content_aware`` (CAGC): for ``n_sample`` samples in batches of ``batch_size`` (the last
  batch takes the remainder, as released), images ``G(z)`` (random noise, no truncation) get
  salt-and-pepper noise inside a content mask: each masked pixel is hit with probability
  ``noise_prob`` and all its RGB channels are overwritten by one sign s ∈ {−1, +1}. The loss
  ``sum |noisy − img|`` (noisy = img with the hit pixels replaced by constants) is
  back-propagated; per batch, score = mean |∂L/∂W| over the consumer weight's output channels and
  kernel taps (the raw weight: for the const, the gradient of ``b4.conv1``'s weight — the
  released code never differentiates the const itself); scores are summed over batches.
* ``l1_out``: ℓ1 norm of each channel's outgoing weights. ``l1_weights='effective'`` (default,
  CAGC's ``l1-out``): the consumer's modulated (and, for convs, demodulated) weights averaged
  over the samples, ToRGB with its 1/sqrt(in) gain; ``'raw'``: the stored weights.
* ``gan_slimming``: mean over samples of |s_c|, the consumer's style (affine output, before the
  ToRGB weight gain) of channel c — GAN Slimming's channel scaling factors. This scores every
  layer by its own consumer's styles, which fixes the released code rather than copying it: the
  SVS release's ``get_gan_slimming_scores`` concatenates all layers' styles into one vector and
  slices it by the layer widths in order, so layers after the first are scored by the wrong
  styles. CAGC's ``l1-style`` metric uses |mean_batch s_c|; this uses mean_batch |s_c|.
* ``random`` (uniform, seeded) and ``first`` (keeps the lowest channel indices) for ablations.
"""

from __future__ import annotations

import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.models.generator import Generator
from gancomp_jax.prune.widths import layer_names

# Shared inputs, registry and sampling (gancomp_jax.prune.scoring), re-exported here.
from gancomp_jax.prune.scoring import (CRITERIA, SAMPLING_CRITERIA, SampleBatch, Scores,  # noqa: F401
                                       ScoringInputs, _as_jax, _get, _progress, _with, batch_sizes,
                                       check_inputs, compute_scores, consumer_paths, get_criterion,
                                       register_criterion, sample_batches)


# --------------------------------------------------------------------------- content-aware (CAGC)


def salt_and_pepper(img: jnp.ndarray, hit: jnp.ndarray, sign: jnp.ndarray) -> jnp.ndarray:
    """``img [N, H, W, C]`` with pixels where ``hit [N, H, W]`` overwritten by ``sign`` on every channel."""
    return jnp.where(hit[..., None], sign[..., None].astype(img.dtype), img)


def content_aware_loss(img: jnp.ndarray, hit: jnp.ndarray, sign: jnp.ndarray) -> jnp.ndarray:
    """CAGC's ``sum |noisy − img|`` (zero subgradient at untouched pixels, as torch's abs)."""
    return jnp.sum(jnp.abs(salt_and_pepper(img, hit, sign) - img))


def hit_mask(batch: SampleBatch, noise_prob: float, content: np.ndarray | None) -> np.ndarray:
    """Pixels that receive salt-and-pepper noise: inside ``content`` and ``uniform < noise_prob``."""
    hit = batch.uniform < np.float32(noise_prob)
    if content is not None:
        hit = hit & content
    return hit


def _content_mask(inputs: ScoringInputs, images: np.ndarray) -> np.ndarray:
    m = np.asarray(inputs.mask_fn(images))
    n, h, w = images.shape[:3]
    if m.shape != (n, h, w):
        raise ValueError(f"content mask function returned shape {m.shape}, expected {(n, h, w)} "
                         f"(one boolean per pixel)")
    return m.astype(bool)


@functools.lru_cache(maxsize=8)
def _content_aware_fns(cfg, noise_mode: str):
    """(forward, batch_scores), jitted once per (generator description, noise mode)."""
    G = Generator(cfg)
    paths = consumer_paths(cfg)

    def images(variables, params, z, c, key):
        return G.apply({**variables, "params": params}, z, c, noise_mode=noise_mode, rngs={"noise": key})

    @jax.jit
    def forward(variables, z, c, key):
        return images(variables, variables["params"], z, c, key)

    @jax.jit
    def batch_scores(variables, weights, z, c, key, hit, sign):
        def loss(weights):
            p = variables["params"]
            for i, path in enumerate(paths):
                p = _with(p, path + ("weight",), weights[i])
            return content_aware_loss(images(variables, p, z, c, key), hit, sign)
        grads = jax.grad(loss)(weights)
        # weight [kh, kw, in, out]: mean |grad| over taps and output channels -> [in]
        return {i: jnp.mean(jnp.abs(g), axis=(0, 1, 3)) for i, g in grads.items()}

    return forward, batch_scores


@register_criterion("content_aware", samples=True)
def content_aware(inputs: ScoringInputs) -> Scores:
    cfg = inputs.config
    variables = _as_jax(inputs.variables)
    paths = consumer_paths(cfg)
    weights = {i: _get(variables["params"], p + ("weight",)) for i, p in enumerate(paths)}
    noise_mode = inputs.noise_mode
    forward, batch_scores = _content_aware_fns(cfg, noise_mode)

    sizes = batch_sizes(inputs.n_sample, inputs.batch_size)
    widths = {i: cfg.channels[i] for i in range(len(paths))}
    acc = getattr(inputs, "accumulator", None)  # resume.ScoreAccumulator: sums sealed per batch
    start, total, extra = 0, {i: np.zeros(c, np.float64) for i, c in widths.items()}, {}
    if acc is not None:
        from gancomp_jax.prune.resume import variables_digest  # pylint: disable=import-outside-toplevel
        extra = {"criterion": "content_aware", "config": cfg.to_dict(), "variables": variables_digest(inputs.variables),
                 "n_sample": int(inputs.n_sample), "batch_size": int(inputs.batch_size),
                 "noise_prob": float(inputs.noise_prob), "noise_mode": noise_mode, "seed": int(inputs.seed),
                 "mask": inputs.mask_fn is not None}
        start, total = acc.load(extra, widths, len(sizes))
    bar = _progress(inputs, "content-aware scoring")
    bar.update(sum(sizes[:start]))
    for index, batch in enumerate(sample_batches(inputs)):
        if index < start:
            continue
        content = None
        if inputs.mask_fn is not None:
            content = _content_mask(inputs, np.asarray(forward(variables, batch.z, batch.c, batch.noise_key)))
        hit = hit_mask(batch, inputs.noise_prob, content)
        s = batch_scores(variables, weights, batch.z, batch.c, batch.noise_key, hit, batch.sign)
        for i in total:
            total[i] += np.asarray(s[i], np.float64)
        if acc is not None:
            acc.save(extra, index + 1, total)
        bar.update(len(batch.z))
    bar.close()
    return {name: total[i] for i, name in enumerate(layer_names(cfg))}


# --------------------------------------------------------------------------- style-based criteria


def consumer_styles(inputs: ScoringInputs) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """Per batch: ``(batch size, {layer: styles [B, C]})`` — each layer's consumer affine output
    ``s = w @ (A / sqrt(w_dim)) + b`` for ``w = mapping(z)`` (no truncation, no mixing)."""
    cfg = inputs.config
    G = Generator(cfg)
    variables = _as_jax(inputs.variables)
    paths = consumer_paths(cfg)

    @jax.jit
    def styles(variables, z, c):
        ws = G.apply(variables, z, c, method=Generator.map)
        w = ws[:, 0]
        out = {}
        for i, p in enumerate(paths):
            aff = _get(variables["params"], p + ("affine",))
            out[i] = w @ (aff["weight"] / np.sqrt(cfg.w_dim)) + aff["bias"]
        return out

    for batch in sample_batches(inputs):
        yield len(batch.z), {i: np.asarray(s, np.float64) for i, s in styles(variables, batch.z, batch.c).items()}


@register_criterion("gan_slimming", samples=True)
def gan_slimming(inputs: ScoringInputs) -> Scores:
    cfg = inputs.config
    total = {i: np.zeros(c, np.float64) for i, c in enumerate(cfg.channels)}
    bar = _progress(inputs, "gan_slimming scoring")
    for b, styles in consumer_styles(inputs):
        for i, s in styles.items():
            total[i] += np.abs(s).sum(axis=0)
        bar.update(b)
    bar.close()
    return {name: total[i] / int(inputs.n_sample) for i, name in enumerate(layer_names(cfg))}


@register_criterion("l1_out", samples=True)
def l1_out(inputs: ScoringInputs) -> Scores:
    cfg = inputs.config
    paths = consumer_paths(cfg)
    params = inputs.variables["params"]
    raw = {i: np.asarray(_get(params, p + ("weight",)), np.float64) for i, p in enumerate(paths)}
    names = layer_names(cfg)
    if inputs.l1_weights == "raw":
        return {names[i]: np.abs(w).sum(axis=(0, 1, 3)) for i, w in raw.items()}
    # Effective weights W[., ., i, o] * s[n, i] * d[n, o], averaged over samples n:
    # W * mean_n(s[n, i] d[n, o]) (ToRGB: no demodulation, gain 1/sqrt(in)).
    acc = {i: np.zeros(w.shape[2:], np.float64) for i, w in raw.items()}
    bar = _progress(inputs, "l1_out scoring")
    for b, styles in consumer_styles(inputs):
        for i, s in styles.items():
            w = raw[i]
            if paths[i][-1] == "torgb":
                acc[i] += np.broadcast_to(s.sum(axis=0)[:, None] / np.sqrt(w.shape[2]), acc[i].shape)
            else:
                d = 1.0 / np.sqrt(np.square(s) @ np.square(w).sum(axis=(0, 1)) + 1e-8)  # [B, O]
                acc[i] += s.T @ d
        bar.update(b)
    bar.close()
    n = int(inputs.n_sample)
    return {names[i]: np.abs(raw[i] * (acc[i] / n)).sum(axis=(0, 1, 3)) for i in raw}


# --------------------------------------------------------------------------- ablations


@register_criterion("random")
def random_scores(inputs: ScoringInputs) -> Scores:
    rng = np.random.default_rng(int(inputs.seed))
    return {name: rng.random(c) for name, c in zip(layer_names(inputs.config), inputs.config.channels)}


@register_criterion("first")
def first(inputs: ScoringInputs) -> Scores:
    """Decreasing scores, so the first channels (lowest indices) are kept."""
    return {name: np.arange(c, 0, -1, dtype=np.float64)
            for name, c in zip(layer_names(inputs.config), inputs.config.channels)}


from gancomp_jax.prune import dcp as _dcp  # noqa: E402,F401  registers 'dcp' (DCP-GAN; module imports this one)
