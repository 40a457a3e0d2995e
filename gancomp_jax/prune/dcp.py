"""DCP-GAN's diversity-aware channel scores (Chung et al., CVPR 2024), criterion ``dcp``.

What the released code computes (``jiwoogit/DCP-GAN``, ``Util/diversity_aware_pruning.py``
``Get_Diversity_Pruning_Score`` and ``prune.py``):

1. PCA of ``n_pca`` (10 000) mapped latents ``w = mapping(z)``: components ``d_k`` (unit rows)
   and their explained-variance ratios ``ρ_k``.
2. For every batch of ``n_sample`` (5 000) latents in batches of ``batch_size`` (5; CAGC's
   batching, the last batch takes the remainder), draw ``n_direction`` (N = 10) component
   indices with replacement, with probability ``ρ``.
3. For each drawn direction ``d_i``: ``w' = w + α·d_i`` (``edit_strength`` α = 5; the same ``w`` at
   every layer), ``L_i = Σ |G(w') − G(w)|`` and, for each layer's *consumer* weight (as in
   :mod:`gancomp_jax.prune.criteria`: ``b4.conv1`` for the const, the next conv, the last ToRGB),
   ``g_i[c] = mean |∂L_i/∂W|`` over every axis but the input channel ``c``.
4. Score ``S[c] = Σ_batches Σ_i (g_i[c] − (1/N) Σ_k g_k[c])²`` (the spread of the gradient
   magnitudes over the directions); the highest scores are kept.

Where we differ from the released code, and why:

* Both images are differentiated, as released: ``generator.requires_grad = False`` before the
  perturbed forward pass sets a plain Python attribute and stops no gradient. The paper's
  stop-gradient on the perturbed branch is the option ``stop_perturbed_grad=True``.
* The two forward passes draw independent per-pixel noise (rosinality's ``randomize_noise``
  as released) when ``noise_mode='random'``; ``'const'`` / ``'none'`` make them share it.
* PCA signs follow scikit-learn ≤ 1.4 (``svd_flip`` on U: each component's sign makes the
  largest-magnitude entry of its U column positive), the convention of the released environments.
* Random draws come from our seeded streams (``ScoringInputs.seed``), not torch/numpy globals,
  so scores are reproducible; the released ``noise_path`` option is not ported.
* ``edit_strength`` defaults to DCP-GAN's 5.0; the SVS repository's ``prune_dcp.py`` (NVlabs
  port) uses 10.0. The prune job does not carry these two options yet: set them on the
  :class:`~gancomp_jax.prune.criteria.ScoringInputs` object (attributes ``dcp_edit_strength``,
  ``dcp_n_direction``, ``dcp_n_pca``, ``dcp_stop_perturbed_grad``) or call :func:`dcp_scores`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.models.generator import Generator
from gancomp_jax.prune.scoring import (Scores, ScoringInputs, _as_jax, _get, _progress, _with, consumer_paths,
                                       register_criterion, sample_batches)
from gancomp_jax.prune.widths import layer_names

EDIT_STRENGTH = 5.0
N_DIRECTION = 10
N_PCA = 10_000


def pca_components(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA of latents ``w [n, w_dim]`` → ``(unit components [K, w_dim], explained-variance ratios [K])``,
    ``K = min(n, w_dim)``, in decreasing variance (scikit-learn ≤ 1.4 sign convention)."""
    x = np.asarray(w, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    var = np.square(s)
    ratio = var / var.sum() if var.sum() > 0 else np.full_like(var, 1.0 / len(var))
    comp = vt / np.linalg.norm(vt, axis=1, keepdims=True)
    return comp, ratio


def mapped_latents(inputs: ScoringInputs, n: int) -> np.ndarray:
    """``n`` mapped latents ``w [n, w_dim]`` (z ~ N(0, I), random one-hot labels if conditional)."""
    cfg = inputs.config
    G = Generator(cfg)
    variables = _as_jax(inputs.variables)
    kz, kc = jax.random.split(jax.random.fold_in(jax.random.key(int(inputs.seed)), 0x0DC9))
    z = jax.random.normal(kz, (n, cfg.z_dim), jnp.float32)
    c = None
    if cfg.c_dim > 0:
        c = jax.nn.one_hot(jax.random.randint(kc, (n,), 0, cfg.c_dim), cfg.c_dim)
    ws = jax.jit(lambda v, z, c: G.apply(v, z, c, method=Generator.map))(variables, z, c)
    return np.asarray(ws[:, 0], np.float64)


def draw_directions(rng: np.random.Generator, ratio: np.ndarray, n_direction: int) -> np.ndarray:
    """Component indices ``[n_direction]`` drawn with replacement, probability ``ratio``."""
    p = np.asarray(ratio, np.float64)
    return rng.choice(len(p), size=int(n_direction), replace=True, p=p / p.sum())


def direction_spread(g: np.ndarray) -> np.ndarray:
    """``g [N, C]`` per-direction gradient magnitudes → ``Σ_i (g_i − mean_k g_k)² [C]``."""
    g = np.asarray(g, np.float64)
    return np.square(g - g.mean(axis=0, keepdims=True)).sum(axis=0)


def dcp_scores(inputs: ScoringInputs, edit_strength: float = EDIT_STRENGTH, n_direction: int = N_DIRECTION,
               n_pca: int = N_PCA, stop_perturbed_grad: bool = False) -> Scores:
    """DCP-GAN scores, one float64 ``[C]`` per layer name (see the module docstring)."""
    if int(n_direction) < 1:
        raise ValueError(f"n_direction must be >= 1, got {n_direction}")
    if int(n_pca) < 2:
        raise ValueError(f"n_pca must be >= 2, got {n_pca}")
    cfg = inputs.config
    G = Generator(cfg)
    variables = _as_jax(inputs.variables)
    paths = consumer_paths(cfg)
    weights = {i: _get(variables["params"], p + ("weight",)) for i, p in enumerate(paths)}
    noise_mode = inputs.noise_mode
    alpha = float(edit_strength)

    comp, ratio = pca_components(mapped_latents(inputs, int(n_pca)))

    @jax.jit
    def ws_of(variables, z, c):
        return G.apply(variables, z, c, method=Generator.map)

    @jax.jit
    def direction_grads(variables, weights, ws, d, key):
        k_img, k_edit = jax.random.split(key)

        def loss(weights):
            p = variables["params"]
            for i, path in enumerate(paths):
                p = _with(p, path + ("weight",), weights[i])
            v = {**variables, "params": p}
            img = G.apply(v, ws, noise_mode=noise_mode, method=Generator.synthesize, rngs={"noise": k_img})
            edited = G.apply(v, ws + alpha * d, noise_mode=noise_mode, method=Generator.synthesize,
                             rngs={"noise": k_edit})
            if stop_perturbed_grad:
                edited = jax.lax.stop_gradient(edited)
            return jnp.sum(jnp.abs(edited - img))

        grads = jax.grad(loss)(weights)
        return {i: jnp.mean(jnp.abs(g), axis=(0, 1, 3)) for i, g in grads.items()}  # [kh, kw, in, out] -> [in]

    total = {i: np.zeros(cfg.channels[i], np.float64) for i in range(len(paths))}
    bar = _progress(inputs, "dcp scoring")
    rng = np.random.default_rng([int(inputs.seed), 0x0DC9])
    for b, batch in enumerate(sample_batches(inputs)):
        ws = ws_of(variables, batch.z, batch.c)
        picks = draw_directions(rng, ratio, n_direction)
        per_dir = {i: [] for i in total}
        for j, k in enumerate(picks):
            d = jnp.asarray(comp[k], jnp.float32)
            g = direction_grads(variables, weights, ws, d, jax.random.fold_in(batch.noise_key, j))
            for i in total:
                per_dir[i].append(np.asarray(g[i], np.float64))
        for i in total:
            total[i] += direction_spread(np.stack(per_dir[i]))
        bar.update(len(batch.z))
    bar.close()
    return {name: total[i] for i, name in enumerate(layer_names(cfg))}


@register_criterion("dcp", samples=True)
def dcp(inputs: ScoringInputs) -> Scores:
    return dcp_scores(inputs,
                      edit_strength=getattr(inputs, "dcp_edit_strength", EDIT_STRENGTH),
                      n_direction=getattr(inputs, "dcp_n_direction", N_DIRECTION),
                      n_pca=getattr(inputs, "dcp_n_pca", N_PCA),
                      stop_perturbed_grad=getattr(inputs, "dcp_stop_perturbed_grad", False))
