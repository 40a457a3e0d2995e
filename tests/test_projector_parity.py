"""The projector against NVlabs' ``project()`` loop, restated in plain torch on the NVlabs fixture.

Same generator (the fixture's NVlabs weights; torch transcription checked against NVlabs' own
outputs in test_style_mixing), same initial noise maps, ``initial_noise_factor=0`` (so no random
numbers enter the loop) and the ``mse`` distance. Everything else is NVlabs': w_avg / w_std from
``RandomState(123)``, the ramped learning rate, torch Adam on w and the noise maps, the pyramid
noise regulariser (weight 1e5), noise renormalisation, the recorded w per step.

Tolerance: both sides run float32; after 24 Adam steps the w differ by float rounding (measured
|Δw| 1.4e-6 for w moving by 1.6, noise maps 3e-6 at unit scale). We allow 2e-5 of w's per-component
scale and 3e-5 on the noise maps (>10x margin for other thread counts / summation orders); a
10x wrong noise-regulariser weight already moves w by 1e-4 and the noise by 5e-4.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gancomp_jax.editing import perceptual  # noqa: E402
from gancomp_jax.editing import projector as P  # noqa: E402
from gancomp_jax.models.generator import Generator  # noqa: E402
from test_nvlabs_parity import configs_from_fixture, load_vars  # noqa: E402
from test_style_mixing import TorchNVlabsG  # noqa: E402

STEPS, W_SAMPLES = 24, 500


def nvlabs_project(G, target_u8, init_noise, *, num_steps, w_avg_samples, lr0=0.1, rampdown=0.25, rampup=0.05,
                   reg_weight=1e5):
    """NVlabs projector.project with the MSE distance, no w noise and the given initial noise maps."""
    z = np.random.RandomState(123).randn(w_avg_samples, 32)
    w_samples = G.mapping(torch.from_numpy(z))[:, :1, :].numpy().astype(np.float32)
    w_avg = np.mean(w_samples, axis=0, keepdims=True)
    noise = {k: torch.tensor(v, requires_grad=True) for k, v in init_noise.items()}
    w_opt = torch.tensor(w_avg, requires_grad=True)
    opt = torch.optim.Adam([w_opt] + list(noise.values()), betas=(0.9, 0.999), lr=lr0)
    target = torch.from_numpy(target_u8.transpose(2, 0, 1)[None].astype(np.float32)) / 127.5 - 1
    w_out = []
    for step in range(num_steps):
        t = step / num_steps
        ramp = min(1.0, (1.0 - t) / rampdown)
        ramp = (0.5 - 0.5 * np.cos(ramp * np.pi)) * min(1.0, t / rampup)
        for g in opt.param_groups:
            g["lr"] = lr0 * ramp
        ws = w_opt.repeat([1, G.num_ws, 1])
        synth = G.synthesis(ws, "const", noise=noise)
        dist = (synth - target).square().mean()
        reg = 0.0
        for v in noise.values():
            x = v[None, None]
            while True:
                reg = reg + (x * torch.roll(x, shifts=1, dims=3)).mean() ** 2
                reg = reg + (x * torch.roll(x, shifts=1, dims=2)).mean() ** 2
                if x.shape[2] <= 8:
                    break
                x = torch.nn.functional.avg_pool2d(x, kernel_size=2)
        loss = dist + reg * reg_weight
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        w_out.append(w_opt.detach()[0].numpy().copy())
        with torch.no_grad():
            for buf in noise.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
    return np.stack(w_out), {k: v.detach().numpy() for k, v in noise.items()}, float(loss.detach())


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    return dict(np.load(fixtures_dir / "nvlabs_tiny16.npz"))


def test_projector_follows_nvlabs_loop(ref):
    gcfg, _ = configs_from_fixture(ref)
    gv, _ = load_vars(ref, "G", "generator", gcfg)
    G = Generator(gcfg)
    rng = np.random.RandomState(5)
    target = rng.randint(0, 256, (16, 16, 3)).astype(np.uint8)
    paths = P.noise_paths(gv)
    init = {"/".join(p): rng.randn(*np.shape(gv["buffers"][p[0]][p[1]][p[2]][p[3]])).astype(np.float32)
            for p in paths}
    o = P.ProjectorOptions(num_steps=STEPS, w_avg_samples=W_SAMPLES, initial_noise_factor=0.0)
    prepare, dist = perceptual.make_distance("mse")
    res = P.project(G, jax.tree.map(jnp.asarray, gv), target, prepare, dist, o, initial_noise=init)

    tg = TorchNVlabsG(ref)
    want_w, want_noise, want_loss = nvlabs_project(tg, target, {k.replace("/", "."): v for k, v in init.items()},
                                                   num_steps=STEPS, w_avg_samples=W_SAMPLES)
    _, w_std = P.w_stats(G, jax.tree.map(jnp.asarray, gv), 32, W_SAMPLES)
    scale = w_std / math.sqrt(gcfg.w_dim)
    got_w = res.ws[:, 0]
    moved = np.abs(want_w[-1] - want_w[0]).max()
    assert moved > 0.1 * scale                                         # the optimisation really moved w
    assert np.abs(got_w - want_w[:, 0]).max() <= 2e-5 * scale
    for k, v in want_noise.items():
        assert np.abs(res.noise[k.replace(".", "/")] - v).max() <= 3e-5, k
    assert res.losses[-1] == pytest.approx(want_loss, rel=1e-4)
