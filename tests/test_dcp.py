"""DCP-GAN criterion against a direct transcription of the released scoring (tiny 16 px generator)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.models import Generator, GeneratorConfig
from gancomp_jax.prune import criteria as crit
from gancomp_jax.prune import dcp
from gancomp_jax.prune.widths import layer_names

CFG = GeneratorConfig(img_resolution=16, channels=(32, 30, 24, 24, 20, 16), z_dim=16, w_dim=16,
                      mapping_layers=2)


@pytest.fixture(scope="module")
def variables():
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda a: rng.standard_normal(a.shape, dtype=np.float32),
                        checkpoints.abstract_variables("generator", CFG))


def reference_pca(w):
    """PCA by eigen-decomposition of the covariance; sign: the sample with the largest |projection|
    projects positively (scikit-learn <= 1.4's U-based svd_flip)."""
    x = w - w.mean(0)
    val, vec = np.linalg.eigh(x.T @ x)
    order = np.argsort(val)[::-1]
    val, vec = val[order], vec[:, order].T
    for k in range(len(vec)):
        proj = x @ vec[k]
        if proj[np.argmax(np.abs(proj))] < 0:
            vec[k] = -vec[k]
    return vec, val / val.sum()


def test_pca_matches_reference_and_sklearn():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 3.0
    comp, ratio = dcp.pca_components(w)
    ref_comp, ref_ratio = reference_pca(w)
    np.testing.assert_allclose(ratio, ref_ratio, rtol=1e-9)
    np.testing.assert_allclose(comp, ref_comp, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(comp, axis=1), 1.0, rtol=1e-12)
    sklearn = pytest.importorskip("sklearn.decomposition")
    pca = sklearn.PCA(6).fit(w)
    np.testing.assert_allclose(ratio, pca.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(comp @ pca.components_.T), np.eye(6), atol=1e-9)


def reference_scores(variables, inputs, alpha, n_direction, n_pca, stop):
    """Transcription of Get_Diversity_Pruning_Score + prune.py's sum (torch weight layout)."""
    G = Generator(CFG)
    v = jax.tree.map(jnp.asarray, variables)
    names = layer_names(CFG)
    consumers = [tuple(n.split(".")) for n in names[1:]] + [(f"b{CFG.img_resolution}", "torgb")]
    # PCA latents: the same draw as the implementation (shared seed stream)
    kz, kc = jax.random.split(jax.random.fold_in(jax.random.key(int(inputs.seed)), 0x0DC9))
    w_pca = np.asarray(G.apply(v, jax.random.normal(kz, (n_pca, CFG.z_dim)), method=Generator.map)[:, 0], np.float64)
    comp, ratio = reference_pca(w_pca)
    rng = np.random.default_rng([int(inputs.seed), 0x0DC9])

    @jax.jit
    @jax.grad
    def ref_grad(params, ws, d):
        vv = {**v, "params": params}
        img = G.apply(vv, ws, noise_mode="const", method=Generator.synthesize)
        img_pca = G.apply(vv, ws + alpha * d, noise_mode="const", method=Generator.synthesize)
        if stop:
            img_pca = jax.lax.stop_gradient(img_pca)
        return jnp.sum(jnp.abs(img_pca - img))

    out = {n: np.zeros(c) for n, c in zip(names, CFG.channels)}
    for batch in crit.sample_batches(inputs):
        ws = G.apply(v, jnp.asarray(batch.z), method=Generator.map)
        picks = rng.choice(len(ratio), n_direction, p=ratio / ratio.sum())
        grad_score = []
        for k in picks:
            d = jnp.asarray(comp[k], jnp.float32)
            grads = ref_grad(v["params"], ws, d)
            per_layer = []
            for blk, layer in consumers:
                g = np.asarray(grads["synthesis"][blk][layer]["weight"])      # [kh, kw, in, out]
                g_torch = np.transpose(g, (3, 2, 0, 1))[None]                 # [1, out, in, kh, kw]
                per_layer.append(np.mean(np.abs(g_torch), axis=(0, 1, 3, 4)))
            grad_score.append(per_layer)
        for li, n in enumerate(names):
            mean_grad = np.mean([grad_score[i][li] for i in range(n_direction)], axis=0)
            for i in range(n_direction):
                out[n] += (grad_score[i][li] - mean_grad) ** 2
    return out


@pytest.mark.parametrize("stop", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_dcp_scores_match_transcription(variables, stop):
    inputs = crit.ScoringInputs(CFG, variables, n_sample=6, batch_size=3, noise_mode="const", seed=5,
                                progress=False)
    got = dcp.dcp_scores(inputs, edit_strength=5.0, n_direction=3, n_pca=64, stop_perturbed_grad=stop)
    want = reference_scores(variables, inputs, 5.0, 3, 64, stop)
    for n in layer_names(CFG):
        assert got[n].shape == want[n].shape
        assert np.all(got[n] > 0)
        np.testing.assert_allclose(got[n], want[n], rtol=2e-3, atol=1e-5 * np.max(want[n]))


def test_registered_criterion_options_and_random_noise(variables):
    assert "dcp" in crit.CRITERIA and "dcp" in crit.SAMPLING_CRITERIA
    inputs = crit.ScoringInputs(CFG, variables, n_sample=4, batch_size=4, seed=1, progress=False)
    inputs.dcp_n_pca, inputs.dcp_n_direction = 32, 2
    a = crit.compute_scores("dcp", inputs)
    assert all(np.all(np.isfinite(a[n])) and a[n].max() > 0 for n in a)
    inputs.dcp_edit_strength = 0.5
    c = crit.compute_scores("dcp", inputs)
    assert any(not np.allclose(a[n], c[n]) for n in a)


def test_bad_options(variables):
    inputs = crit.ScoringInputs(CFG, variables, n_sample=2, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="n_direction"):
        dcp.dcp_scores(inputs, n_direction=0)
    with pytest.raises(ValueError, match="n_pca"):
        dcp.dcp_scores(inputs, n_pca=1)


def test_prune_job_passes_dcp_settings_to_the_criterion(variables):
    from gancomp_jax.jobs.prune import default_config, options_from_config
    from gancomp_jax.prune.pipeline import _scoring_inputs

    c = default_config()
    c.criterion, c.ratio = "dcp", 0.7
    c.dcp.edit_strength, c.dcp.n_direction, c.dcp.n_pca, c.dcp.stop_perturbed_grad = 10.0, 3, 32, True
    inputs = _scoring_inputs(options_from_config(c), CFG, variables, None)
    assert (inputs.dcp_edit_strength, inputs.dcp_n_direction, inputs.dcp_n_pca,
            inputs.dcp_stop_perturbed_grad) == (10.0, 3, 32, True)
