"""Projection losses on random VGG16 weights in torchvision's file layout (no real weights offline).

``vgg_nvlabs`` builds NVlabs' LPIPS feature vectors; the squared distance of two of them must be
the LPIPS v0.1 distance the ``lpips`` package computes (same trunk file, its shipped heads).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from test_nets_lpips import _vgg_state, fake_torchvision, lpips  # noqa: E402  (installs the fake torchvision)

import jax.numpy as jnp  # noqa: E402

from editing_helpers import load_experiment  # noqa: E402
from gancomp_jax import main as cli  # noqa: E402
from gancomp_jax.editing import perceptual  # noqa: E402


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    state = _vgg_state(3)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    fake_torchvision.VGG16_STATE = state
    try:
        ref = lpips.LPIPS(net="vgg", version="0.1", verbose=False).eval()
    finally:
        fake_torchvision.VGG16_STATE = None
    return path, ref


@pytest.mark.parametrize("loss", ["vgg_nvlabs", "lpips"])
def test_vgg_losses_are_the_lpips_distance(trunk, loss):
    path, ref = trunk
    params = perceptual.load_lpips_params(loss, str(path))
    rng = np.random.RandomState(0)
    target = rng.randint(0, 256, (1, 32, 32, 3)).astype(np.uint8)
    synth = np.tanh(rng.randn(1, 32, 32, 3)).astype(np.float32)
    prepare, dist = perceptual.make_distance(loss, params)
    got = float(dist(prepare(jnp.asarray(target)), jnp.asarray(synth)))
    with torch.no_grad():
        t = torch.from_numpy(target.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
        want = float(ref(t, torch.from_numpy(synth.transpose(0, 3, 1, 2))))
    assert got == pytest.approx(want, rel=1e-4)
    assert perceptual.lpips_metric(params, target[0], target[0]) == 0.0


def test_area_downsample_is_torch_area():
    x = np.random.RandomState(1).randn(1, 512, 512, 3).astype(np.float32)
    got = np.asarray(perceptual.area_downsample(jnp.asarray(x)))
    want = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(256, 256), mode="area")
    assert np.abs(got - want.numpy().transpose(0, 2, 3, 1)).max() < 1e-5


@pytest.mark.slow  # compiling VGG16's gradient takes ~10 s of CPU; the distance itself is tested above
def test_project_job_with_vgg_loss_reports_lpips(trunk, tmp_path):
    from PIL import Image

    path, _ = trunk
    Image.fromarray(np.random.RandomState(2).randint(0, 256, (40, 48, 3)).astype(np.uint8)).save(tmp_path / "t.png")
    out = tmp_path / "out"
    metrics = cli.run_job(load_experiment("project", "digits", target=str(tmp_path / "t.png"), loss="vgg_nvlabs",
                                          vgg16=str(path), num_steps=3, w_avg_samples=16, video="none",
                                          progress=False), str(out))
    assert metrics["lpips"] is not None and metrics["lpips"] > 0 and np.isfinite(metrics["loss"])
    assert json.loads((out / "metrics.json").read_text())["loss_kind"] == "vgg_nvlabs"
