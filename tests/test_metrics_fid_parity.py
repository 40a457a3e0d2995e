"""FID parity with pytorch-fid (its own activations, statistics and distance) for a random-weight
Inception in pytorch-fid's file layout, through tools/fid.py; both preprocessing conventions.

pytorch-fid imports torchvision, which cannot be installed beside this torch: the plain-torch
stand-in tests/fake_torchvision.py provides the Inception building blocks and tests/fid_reference.py
the one transform pytorch-fid's folder reader uses (``transforms.ToTensor``). Inception runs at
299 px, so the end-to-end parity test is marked slow (≈ 1-2 min on 2 free CPU cores).
"""

from __future__ import annotations

import importlib.util
import pathlib
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_fid")
import fake_torchvision  # noqa: E402
import fid_reference  # noqa: E402

pfi, fid_score = fid_reference.install()

from gancomp_jax.metrics import detectors  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def _randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
            elif name.endswith("bn.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    """Random weights saved as pytorch-fid's pt_inception-2015-12-05-6726825d.pth (its own model)."""
    m = fake_torchvision.inception_v3(num_classes=1008, aux_logits=False, init_weights=False)
    m.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    m.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    m.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    m.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    m.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    m.Mixed_7b = pfi.FIDInceptionE_1(1280)
    m.Mixed_7c = pfi.FIDInceptionE_2(2048)
    _randomize(m, 0)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(m.state_dict(), path, _use_new_zipfile_serialization=False)
    return path


def _write_folder(path, n, seed, size=32):
    path.mkdir()
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size] / size
    for i in range(n):  # smooth colour blobs plus noise, so features vary between images
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 + 0.1 * r))
        img = blob[..., None] * rng.uniform(0, 255, 3) + rng.uniform(0, 60, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path / f"img{i:03d}.png")
    return path


def _tools_fid():
    spec = importlib.util.spec_from_file_location("tools_fid", REPO / "tools" / "fid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tools_fid_mixed_sizes_match_pytorch_fid(weight_file, tmp_path, capsys):
    """A folder mixing 32 px, 48 px and 40x56 images: each is resized to 299 on its own, as pytorch-fid
    does with batch size 1 (its only setting that accepts mixed sizes)."""
    a = _write_folder(tmp_path / "a", 5, 0)
    rng = np.random.RandomState(3)
    for i, (h, w) in enumerate([(48, 48), (56, 40), (48, 48), (32, 32)]):
        Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(a / f"mix{i}.png")
    b = _write_folder(tmp_path / "b", 6, 1)
    state = torch.load(weight_file, weights_only=True)
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda url, progress=True: state
    try:
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        m1, s1 = fid_score.compute_statistics_of_path(str(a), model, 1, 2048, "cpu", 0)
        m2, s2 = fid_score.compute_statistics_of_path(str(b), model, 1, 2048, "cpu", 0)
        want = float(fid_score.calculate_frechet_distance(m1, s1, m2, s2))
    finally:
        pfi.load_state_dict_from_url = orig
    tool = _tools_fid()
    assert tool.main([str(a), str(b), "--inception", str(weight_file), "--batch-size", "3", "--no-progress"]) == 0
    got = float(capsys.readouterr().out.strip().split("FID:")[-1])
    assert got == pytest.approx(want, rel=1e-3), (got, want)


@pytest.mark.slow
def test_tools_fid_matches_pytorch_fid(weight_file, tmp_path, capsys):
    a = _write_folder(tmp_path / "a", 14, 0)
    b = _write_folder(tmp_path / "b", 12, 1)
    state = torch.load(weight_file, weights_only=True)
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda url, progress=True: state
    try:  # what calculate_fid_given_paths does, keeping b's statistics for the .npz case
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        m1, s1 = fid_score.compute_statistics_of_path(str(a), model, 7, 2048, "cpu", 0)
        m2, s2 = fid_score.compute_statistics_of_path(str(b), model, 7, 2048, "cpu", 0)
        want = float(fid_score.calculate_frechet_distance(m1, s1, m2, s2))
        np.savez_compressed(tmp_path / "b.npz", mu=m2, sigma=s2)
    finally:
        pfi.load_state_dict_from_url = orig
    tool = _tools_fid()
    assert tool.main([str(a), str(b), "--inception", str(weight_file), "--batch-size", "7", "--no-progress"]) == 0
    got = float(capsys.readouterr().out.strip().split("FID:")[-1])
    assert got == pytest.approx(want, rel=1e-3), (got, want)
    # folder vs pytorch-fid's statistics file
    assert tool.main([str(a), str(tmp_path / "b.npz"), "--inception", str(weight_file), "--no-progress"]) == 0
    got_npz = float(capsys.readouterr().out.strip().split("FID:")[-1])
    assert got_npz == pytest.approx(want, rel=1e-3)
    # bad input: one clear error line
    assert tool.main([str(a), str(tmp_path / "missing"), "--inception", str(weight_file)]) == 2
    assert "invalid path" in capsys.readouterr().err


@pytest.mark.parametrize("convention", ["pytorch_fid", "nvlabs"])
def test_inception_preprocessing_conventions(convention):
    rng = np.random.RandomState(3)
    u8 = rng.randint(0, 256, (2, 48, 40, 3)).astype(np.uint8)
    got = np.asarray(detectors.inception_preprocess(jnp.asarray(u8), convention))
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).to(torch.float32)
    if convention == "pytorch_fid":  # InceptionV3(resize_input=True, normalize_input=True) on ToTensor input
        ref = 2 * torch.nn.functional.interpolate(x / 255, size=(299, 299), mode="bilinear", align_corners=False) - 1
    else:  # NVlabs detector normalisation (x - 128) / 128 after resizing the [0, 255] image
        ref = (torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 128) / 128
    np.testing.assert_allclose(got, ref.numpy().transpose(0, 2, 3, 1), atol=2e-5)
