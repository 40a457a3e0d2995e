"""StyleGAN2 loss terms on inputs with known answers."""

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.losses import logistic_d_loss, nonsaturating_g_loss, path_length_penalty, r1_penalty


def test_logistic_losses_known_values():
    logits = jnp.array([[0.0], [2.0], [-3.0]])
    np.testing.assert_allclose(nonsaturating_g_loss(logits), np.log1p(np.exp([-0.0, -2.0, 3.0])), rtol=1e-6)
    gen, real = logistic_d_loss(logits, -logits)
    np.testing.assert_allclose(gen, np.log1p(np.exp([0.0, 2.0, -3.0])), rtol=1e-6)
    np.testing.assert_allclose(real, np.log1p(np.exp([0.0, 2.0, -3.0])), rtol=1e-6)


def test_r1_of_quadratic_discriminator():
    rng = np.random.RandomState(0)
    a = jnp.asarray(rng.rand(4, 4, 3).astype(np.float32))
    x = jnp.asarray(rng.randn(5, 4, 4, 3).astype(np.float32))

    def d(img):  # D(x) = 1/2 Σ a x²  ⇒  ∇D = a x  ⇒  R1 = Σ a² x²
        return 0.5 * jnp.sum(a * img ** 2, axis=(1, 2, 3))[:, None]

    penalty, logits = r1_penalty(d, x)
    np.testing.assert_allclose(penalty, np.sum(np.asarray(a) ** 2 * np.asarray(x) ** 2, axis=(1, 2, 3)), rtol=1e-5)
    assert logits.shape == (5, 1)
    # The penalty is differentiable w.r.t. D's parameters: d/da Σ_n R1_n = 2 a Σ_n x².
    grad_a = jax.grad(lambda a_: jnp.sum(r1_penalty(lambda im: 0.5 * jnp.sum(a_ * im ** 2, axis=(1, 2, 3))[:, None], x)[0]))(a)
    np.testing.assert_allclose(grad_a, 2 * np.asarray(a) * np.sum(np.asarray(x) ** 2, axis=0), rtol=1e-5)


def test_path_length_on_linear_generator():
    rng = np.random.RandomState(1)
    n, L, dw, h, w, c = 3, 4, 5, 6, 6, 3
    A = rng.randn(L, dw, h, w, c).astype(np.float32)
    ws = jnp.asarray(rng.randn(n, L, dw).astype(np.float32))

    def g(ws):  # linear in ws, so J^T y = Σ_pixels A · y
        return jnp.einsum("nld,ldhwc->nhwc", ws, A)

    key = jax.random.key(3)
    pl_mean = jnp.float32(0.5)
    penalty, lengths, new_mean = path_length_penalty(g, ws, key, pl_mean, decay=0.01)
    y = np.asarray(jax.random.normal(key, (n, h, w, c))) / np.sqrt(h * w)
    jt_y = np.einsum("ldhwc,nhwc->nld", A, y)
    want_len = np.sqrt(np.mean(np.sum(jt_y ** 2, axis=2), axis=1))
    np.testing.assert_allclose(lengths, want_len, rtol=1e-5)
    want_mean = 0.5 + 0.01 * (want_len.mean() - 0.5)
    np.testing.assert_allclose(new_mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(penalty, (want_len - want_mean) ** 2, rtol=1e-5)
