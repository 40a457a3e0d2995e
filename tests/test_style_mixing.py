"""Style mixing against NVlabs' algorithm on the NVlabs fixture network (tests/fixtures/nvlabs_tiny16.npz).

The reference is written here in plain torch, in our own words: the fixture's NVlabs generator
(mapping + skip synthesis, float32, no clamp) rebuilt from its state dict and first checked
against the images NVlabs itself produced for the fixture, then NVlabs' ``style_mixing.py`` loop
(seeds → RandomState z, mapping, truncation on every layer, ``w[col_styles] = w_col[col_styles]``,
uint8 quantisation, NVlabs' grid layout) run through it. Our job must give the same pixels
within 1 uint8 level (float32 differences of ~1e-6 can flip a rounding boundary, never more).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
F = torch.nn.functional

from gancomp_jax import checkpoints  # noqa: E402
from gancomp_jax.jobs import style_mixing as job  # noqa: E402
from editing_helpers import load_experiment  # noqa: E402
from test_nvlabs_parity import configs_from_fixture, load_vars  # noqa: E402


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    return dict(np.load(fixtures_dir / "nvlabs_tiny16.npz"))


class TorchNVlabsG:
    """The fixture's NVlabs generator in plain torch (float32, skip architecture, no clamp)."""

    def __init__(self, ref):
        self.t = {k[2:]: torch.from_numpy(np.asarray(v, np.float32)) for k, v in ref.items() if k.startswith("G/")}
        self.res = int(ref["cfg/res"])
        self.map_layers = int(ref["cfg/map_layers"])
        self.num_ws = 2 * int(math.log2(self.res)) - 2
        self.w_avg = self.t["mapping.w_avg"]

    @staticmethod
    def lrelu(x):
        return F.leaky_relu(x, 0.2) * math.sqrt(2)

    def mapping(self, z):
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.map_layers):
            wt, b = self.t[f"mapping.fc{i}.weight"], self.t[f"mapping.fc{i}.bias"]
            x = self.lrelu(x @ (wt * (0.01 / math.sqrt(wt.shape[1]))).T + b * 0.01)
        return x[:, None, :].repeat(1, self.num_ws, 1)

    @staticmethod
    def fir(x, f, up=1, pad=(0, 0, 0, 0), gain=1.0):
        """upfirdn2d: zero-stuff by ``up``, pad (x0, x1, y0, y1), true convolution with ``f * gain``."""
        n, c, h, w = x.shape
        if up > 1:
            x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
        x = F.pad(x, list(pad))
        k = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
        return F.conv2d(x, k, groups=c)

    def affine(self, name, w):
        wt, b = self.t[f"{name}.affine.weight"], self.t[f"{name}.affine.bias"]
        return w @ (wt / math.sqrt(wt.shape[1])).T + b

    def modconv(self, x, weight, styles, demodulate, up=1):
        n = x.shape[0]
        o, i, kh, kw = weight.shape
        wgt = weight[None] * styles[:, None, :, None, None]
        if demodulate:
            wgt = wgt * (wgt.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
        x = x.reshape(1, n * i, *x.shape[2:])
        if up == 1:
            x = F.conv2d(x, wgt.reshape(n * o, i, kh, kw), padding=kh // 2, groups=n)
        else:  # transposed stride-2 conv, then the [1,3,3,1] FIR with gain up^2 (NVlabs conv2d_resample)
            wt = wgt.transpose(1, 2).reshape(n * i, o, kh, kw)
            x = F.conv_transpose2d(x, wt, stride=2, groups=n)
            x = self.fir(x, self.t["synthesis.b4.resample_filter"], pad=(1, 1, 1, 1), gain=4.0)
        return x.reshape(n, o, *x.shape[2:])

    def layer(self, name, x, w, noise_mode, up=1, noise=None):
        x = self.modconv(x, self.t[f"{name}.weight"], self.affine(name, w), True, up)
        if noise_mode == "const":  # ``noise``: replacement noise_const maps by NVlabs name (the projector's)
            const = self.t[f"{name}.noise_const"] if noise is None else noise[f"{name}.noise_const"]
            x = x + const * self.t[f"{name}.noise_strength"]
        return self.lrelu(x + self.t[f"{name}.bias"][None, :, None, None])

    def torgb(self, name, x, w):
        styles = self.affine(name, w) / math.sqrt(x.shape[1])
        return self.modconv(x, self.t[f"{name}.weight"], styles, False) + self.t[f"{name}.bias"][None, :, None, None]

    def synthesis(self, ws, noise_mode="const", noise=None):
        x = self.t["synthesis.b4.const"][None].repeat(ws.shape[0], 1, 1, 1)
        x = self.layer("synthesis.b4.conv1", x, ws[:, 0], noise_mode, noise=noise)
        img = self.torgb("synthesis.b4.torgb", x, ws[:, 1])
        idx, res = 1, 8
        while res <= self.res:
            b = f"synthesis.b{res}"
            x = self.layer(f"{b}.conv0", x, ws[:, idx], noise_mode, up=2, noise=noise)
            x = self.layer(f"{b}.conv1", x, ws[:, idx + 1], noise_mode, noise=noise)
            img = self.fir(img, self.t[f"{b}.resample_filter"], up=2, pad=(2, 1, 2, 1), gain=4.0)
            img = img + self.torgb(f"{b}.torgb", x, ws[:, idx + 2])
            idx, res = idx + 2, res * 2
        return img


def nvlabs_style_mixing(G, row_seeds, col_seeds, col_styles, psi, noise_mode):
    """NVlabs style_mixing.py's loop, restated: returns ({(row, col): uint8 HWC}, grid)."""
    to_u8 = lambda img: (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()  # noqa: E731
    seeds = list(set(row_seeds + col_seeds))
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(32) for s in seeds]))
    ws = G.mapping(z)
    ws = G.w_avg + (ws - G.w_avg) * psi
    w_of = dict(zip(seeds, ws))
    images = dict(((s, s), im) for s, im in zip(seeds, to_u8(G.synthesis(ws, noise_mode))))
    for r in row_seeds:
        for c in col_seeds:
            w = w_of[r].clone()
            w[col_styles] = w_of[c][col_styles]
            images[(r, c)] = to_u8(G.synthesis(w[None], noise_mode))[0]
    size = G.res
    canvas = Image.new("RGB", (size * (len(col_seeds) + 1), size * (len(row_seeds) + 1)), "black")
    for ri, rs in enumerate([0] + row_seeds):
        for ci, cs in enumerate([0] + col_seeds):
            if ri == 0 and ci == 0:
                continue
            key = (cs, cs) if ri == 0 else (rs, rs) if ci == 0 else (rs, cs)
            canvas.paste(Image.fromarray(images[key], "RGB"), (size * ci, size * ri))
    return images, np.asarray(canvas)


@pytest.fixture(scope="module")
def torch_g(ref):
    G = TorchNVlabsG(ref)
    with torch.no_grad():  # the transcription reproduces NVlabs' own outputs stored in the fixture
        ws = G.mapping(torch.from_numpy(ref["in/z"]))
        assert np.abs(ws.numpy() - ref["out/ws"]).max() <= 1e-4
        for mode, key in (("const", "out/img_const"), ("none", "out/img_nonoise")):
            img = G.synthesis(torch.from_numpy(ref["out/ws"]), mode).numpy()
            assert np.abs(img - ref[key]).max() <= 1e-3, key
    return G


@pytest.fixture(scope="module")
def model_dir(ref, tmp_path_factory):
    gcfg, _ = configs_from_fixture(ref)
    gv, _ = load_vars(ref, "G", "generator", gcfg)
    path = tmp_path_factory.mktemp("nvlabs_tiny16") / "model"
    checkpoints.save_model(path, {"G_ema": checkpoints.Network("generator", gcfg, jax.device_get(gv))})
    return path


def run_job(model_dir, out, **kw):
    return job.run(load_experiment("style_mixing", checkpoint=str(model_dir), **kw), str(out))


@pytest.mark.parametrize("styles,psi,noise_mode", [("0-2", 1.0, "const"), ("3,4,5", 0.7, "none")])
def test_style_mixing_equals_nvlabs(torch_g, model_dir, tmp_path, styles, psi, noise_mode):
    rows, cols = [85, 100, 75], [55, 821]
    out = tmp_path / "mix"
    run_job(model_dir, out, row_seeds="85,100,75", col_seeds="55,821", col_styles=styles,
            truncation_psi=psi, noise_mode=noise_mode)
    with torch.no_grad():
        want, want_grid = nvlabs_style_mixing(torch_g, rows, cols, job.parse_styles(styles), psi, noise_mode)
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted([f"{r}-{c}.png" for (r, c) in want] + ["grid.png"])
    for (r, c), img in want.items():
        got = np.asarray(Image.open(out / f"{r}-{c}.png"))
        assert got.shape == img.shape
        assert np.abs(got.astype(int) - img.astype(int)).max() <= 1, (r, c)
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == want_grid.shape
    assert np.abs(grid.astype(int) - want_grid.astype(int)).max() <= 1
    mixed = [want[(r, c)] for r in rows for c in cols]
    assert len({m.tobytes() for m in mixed}) == len(mixed)  # the mixes really differ


def test_style_mixing_bad_styles(model_dir, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match=r"col_styles \[6, 7\] out of range: this generator has 6 style layers"):
        run_job(model_dir, out, row_seeds="1", col_seeds="2", col_styles="4-7")
    assert not out.exists()
