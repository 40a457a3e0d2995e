"""tools/bench_prune_scoring.py (issue 23, item 14): content-aware scoring, ours vs the released CAGC
code. CI has no CAGC checkout, so the default tests check the plain-torch stand-ins for CAGC's CUDA
ops (against direct computations and our JAX ops), the argument errors and the ours-only mode; the
side-by-side run needs ``CAGC_REPO`` (a checkout of lychenyoko/content-aware-gan-compression)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gancomp_jax.ops.bias_act import bias_act  # noqa: E402
from gancomp_jax.ops.upfirdn2d import upfirdn2d as jax_upfirdn2d  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "bench_prune_scoring.py"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


standins = _load("cagc_standins")
bench = _load("bench_prune_scoring")


def naive_upfirdn2d(x, k, up, down, p0, p1):
    """Loop definition: zero-insert, pad/crop, true convolution, subsample (float64)."""
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    big = np.zeros((n, c, h * up + 2 * max(p0, 0) + 2 * max(p1, 0), w * up + 2 * max(p0, 0) + 2 * max(p1, 0)))
    big[:, :, max(p0, 0):max(p0, 0) + h * up, max(p0, 0):max(p0, 0) + w * up] = u
    big = big[:, :, max(-p0, 0):max(p0, 0) + h * up + max(p1, 0) - max(-p1, 0),
              max(-p0, 0):max(p0, 0) + w * up + max(p1, 0) - max(-p1, 0)]
    kh, kw = k.shape
    oh, ow = big.shape[2] - kh + 1, big.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    out[:, :, i, j] += big[:, :, i + a, j + b] * k[kh - 1 - a, kw - 1 - b]
    return out[:, :, ::down, ::down]


# the (up, down, pad) CAGC's model uses (Upsample, upsampling conv blur, Downsample) and odd ones
CASES = [(2, 1, (2, 1)), (1, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (1, 1)), (3, 2, (-1, 2)), (2, 2, (0, -1))]


@pytest.mark.parametrize("up,down,pad", CASES)
def test_upfirdn2d_standin_matches_the_loop_definition_and_our_jax_op(up, down, pad):
    rng = np.random.default_rng(up * 10 + down)
    x = rng.standard_normal((2, 3, 5, 6))
    k = rng.standard_normal((4, 3))  # asymmetric: a flipped / transposed kernel would be caught
    want = naive_upfirdn2d(x, k, up, down, *pad)
    got = standins.upfirdn2d(torch.from_numpy(x), torch.from_numpy(k), up=up, down=down, pad=pad).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # float64: exact up to rounding
    ours = jax_upfirdn2d(jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32), k.astype(np.float32), up=up, down=down,
                         padding=(pad[0], pad[1], pad[0], pad[1]))
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.asarray(ours).transpose(0, 3, 1, 2), want, atol=1e-5 * scale)


def test_upfirdn2d_standin_gradient():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: standins.upfirdn2d(t, k, up=2, down=1, pad=(2, 1)), (x,))


def test_fused_leaky_relu_standin():
    rng = np.random.default_rng(0)
    x, b = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal(5)
    y = x + b[None, :, None, None]
    want = np.where(y >= 0, y, 0.2 * y) * np.sqrt(2)
    got = standins.fused_leaky_relu(torch.from_numpy(x), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    ours = bias_act(jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32), jnp.asarray(b, jnp.float32), act="lrelu")
    np.testing.assert_allclose(np.asarray(ours).transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-6)
    # the module: learned bias 'bias' (state-dict key activate.bias), zeros at init; 2-D inputs (EqualLinear)
    m = standins.FusedLeakyReLU(5)
    assert list(m.state_dict()) == ["bias"] and float(m.bias.detach().abs().sum()) == 0
    x2 = torch.from_numpy(x[:, :, 0, 0])
    np.testing.assert_allclose(m(x2).detach().numpy(), np.where(x2 >= 0, x2, 0.2 * x2) * np.sqrt(2), rtol=1e-12)


def test_torchvision_standins():
    img = torch.tensor([[[[-2.0, -1.0], [0.0, 3.0]]] * 3])  # [1, 3, 2, 2]
    g = standins.make_grid(img, nrow=1, padding=2, pad_value=0, normalize=True, range=(-1, 1), scale_each=False)
    assert g.shape == (3, 2, 2)  # one image: no padding
    np.testing.assert_allclose(g[0].numpy(), [[0.0, 0.0], [0.5, 1.0]], atol=1e-4)  # clamped to the range, mapped
    assert float(img.min()) == -2.0  # the input is not modified
    grid = standins.make_grid(torch.ones(3, 3, 2, 2), nrow=2, padding=1)
    assert grid.shape == (3, 7, 7) and float(grid.sum()) == 3 * 3 * 4
    t = standins.Compose([standins.ToTensor(), standins.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])(
        np.full((2, 3, 3), 255, np.uint8))
    assert t.shape == (3, 2, 3) and np.allclose(t.numpy(), 2.0)
    assert standins.no_download_load_url("https://example.invalid/x.pth") == {}


def test_install_makes_cagcs_imports_resolve():
    names = ("op", "op.fused_act", "op.upfirdn2d", "torchvision", "torchvision.utils", "torchvision.transforms")
    saved = {n: sys.modules[n] for n in names if n in sys.modules}
    try:
        standins.install()
        from op import FusedLeakyReLU, fused_leaky_relu, upfirdn2d  # noqa: F401  (CAGC's model.py import)
        from op.fused_act import fused_leaky_relu as f2  # noqa: F401
        from torchvision import transforms, utils  # noqa: F401  (CAGC's Util imports)
        assert upfirdn2d is standins.upfirdn2d and utils.make_grid is standins.make_grid
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


@pytest.mark.parametrize("argv,needle", [
    ([], "--cagc_repo DIR is required"),
    (["--cagc_repo", "/nonexistent/cagc"], "is not a directory"),
    (["--cagc_repo", "{tmp}"], "is not a CAGC checkout: model.py is missing"),
    (["--ours_only", "--cagc_repo", "{tmp}"], "exclude each other"),
    (["--ours_only", "--n_sample", "5", "--batch_size", "2"], "must be a multiple of --batch_size"),
    (["--ours_only", "--threads", "999"], "--threads must be in"),
    (["--cagc_repo", "{tmp}", "--mask", "none"], "only for --ours_only"),
])
def test_bad_arguments_give_one_error_line_exit_2(argv, needle, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err


def test_out_never_replaces_a_file_that_is_not_ours(tmp_path, capsys):
    user = tmp_path / "notes.json"
    user.write_text('{"mine": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(user)
    for out, needle in ((user, "not an earlier output"), (link, "symbolic link"), (tmp_path, "not an earlier output")):
        assert bench.main(["--ours_only", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert user.read_text() == '{"mine": 1}'


def test_a_folder_without_cagcs_scorer_is_refused(tmp_path, capsys):
    for f in bench.CAGC_FILES:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("# not CAGC\n")
    assert bench.main(["--cagc_repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no Get_Content_Aware_Pruning_Score" in err[0]


def test_ours_only_on_a_tiny_model(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert bench.main(["--ours_only", "--preset", "tiny16", "--n_sample", "4", "--batch_size", "2", "--mask", "none",
                       "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "steady s/image" in text and "compile (s)" in text
    r = json.loads(out.read_text())
    assert r["ours"]["scores_finite"] and r["ours"]["steady_s"] > 0 and r["ours"]["compile_s"] > 0
    assert r["n_sample"] == 4 and "cagc" not in r and r["tool"] == "bench_prune_scoring"
    assert bench.earlier_output(out)  # a re-run may replace it


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CAGC_REPO"), reason="needs CAGC_REPO: a CAGC checkout")
def test_side_by_side_with_the_released_code(tmp_path):
    """Both sides on one small random model (CAGC's scorer needs 512-d z and 8 mapping layers)."""
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(TOOL), "--cagc_repo", os.environ["CAGC_REPO"], "--resolution", "32",
                        "--channel_max", "32", "--n_sample", "2", "--batch_size", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["same_image_max_abs_diff"] < 1e-3  # the exported model is CAGC's generator too
    assert r["ours"]["scores_finite"] and r["cagc"]["scores_finite"]
    assert r["cagc"]["s_per_image"] > 0 and r["ratio_cagc_over_ours"] > 0
