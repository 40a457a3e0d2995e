"""Deployable exports (tools/export_model.py, gancomp_jax.deploy, tools/onnx_generate.py).

The exported graphs must reproduce the generate job's images for the repository's NVlabs and
rosinality fixtures and for a pruned student of the shipped digits teacher: ONNX Runtime and a
``jax.export.deserialize`` round trip of the StableHLO artefact, const noise, with and without
truncation, batch 1 and a dynamic batch.

Tolerances. Both sides compute the same float32 operations (same weights, same formulas); they
differ only in the order convolutions and matrix products accumulate (MLAS vs XLA:CPU, and the
thread count). Each such sum of K float32 terms carries a relative rounding error of order
K·2⁻²⁴ in the worst case and √K·2⁻²⁴ typically; with K ≤ 9·64 here and ~10 layers in sequence,
images of magnitude ≲ 3 are expected to agree to ~1e-5 (measured: ≤ 2e-6 on this machine), so
the float bound is 1e-4 — loose enough for any summation order, tight enough that a wrong tap,
a missing noise map or a skipped truncation (≥ 1e-2) fails. uint8 images may differ by 1 level
where a value lies within that error of a rounding boundary.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from gancomp_jax import checkpoints  # noqa: E402
from gancomp_jax.convert.fake_nvlabs import FakeNetwork, write_nvlabs_pickle  # noqa: E402
from gancomp_jax.deploy import export_generator  # noqa: E402
from gancomp_jax.deploy.lowering import expressible, pad_without_pad  # noqa: E402
from gancomp_jax.jobs.generate import latents_for_seeds, make_generate_fn  # noqa: E402
from gancomp_jax.models import Generator  # noqa: E402
from gancomp_jax.utils.atomic_dir import MARKER  # noqa: E402
from gancomp_jax.utils.images import to_uint8  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _load_tool(name):
    import importlib.util
    saved = list(sys.path)  # the tools put the repository root first on sys.path; keep ours
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.path[:] = saved
    return mod


export_cli = _load_tool("export_model")

FLOAT_TOL = 1e-4
needs_jax2onnx = pytest.mark.skipif(
    find_spec("jax2onnx") is None,
    reason="jax2onnx is not installed: pip install --no-deps -r requirements-export.txt")
SEEDS = [0, 1, 2, 3, 7]
G_KWARGS = dict(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=0, conv_clamp=None,
                                      architecture="skip"),
                c_dim=0, img_resolution=16, img_channels=3)
D_KWARGS = dict(c_dim=0, img_resolution=16, img_channels=3, architecture="resnet", channel_base=512,
                channel_max=32, num_fp16_res=0, conv_clamp=None, block_kwargs={}, mapping_kwargs={},
                epilogue_kwargs=dict(mbstd_group_size=4))


# ---------------------------------------------------------------------------------------------
# Sources: an NVlabs pickle and a rosinality .pt (the repository fixtures), a pruned student.

@pytest.fixture(scope="module")
def nvlabs_ref(fixtures_dir):
    return dict(np.load(fixtures_dir / "nvlabs_tiny16.npz"))


@pytest.fixture(scope="module")
def nvlabs_pkl(tmp_path_factory, nvlabs_ref):
    sd = {net: {k[len(net) + 1:]: v for k, v in nvlabs_ref.items() if k.startswith(net + "/")} for net in ("G", "D")}
    path = tmp_path_factory.mktemp("nv") / "network-snapshot-000100.pkl"
    return write_nvlabs_pickle(path, {"G": FakeNetwork("Generator", G_KWARGS, sd["G"]),
                                      "D": FakeNetwork("Discriminator", D_KWARGS, sd["D"]),
                                      "G_ema": FakeNetwork("Generator", G_KWARGS, sd["G"])})


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    """The shipped digits teacher pruned by 30 % (l1_out scores), saved as a model directory."""
    from gancomp_jax.prune.pipeline import PruneOptions, prune

    teacher = checkpoints.load_model(REPO / "gancomp_jax" / "assets" / "digits_teacher")
    res = prune(teacher, PruneOptions(criterion="l1_out", ratio=0.3, n_sample=8, batch_size=4, progress=False))
    path = tmp_path_factory.mktemp("student") / "student"
    checkpoints.save_model(path, res.networks)
    assert res.networks["G_ema"].config.channels != teacher["G_ema"].config.channels
    return path


@pytest.fixture(scope="module")
def sources(nvlabs_pkl, fixtures_dir, student_dir):
    return {"nvlabs": str(nvlabs_pkl), "rosinality": str(fixtures_dir / "rosinality_ros16.pt"),
            "student": str(student_dir)}


@pytest.fixture(scope="module")
def exports(sources, tmp_path_factory):
    """``exports(name, fmt)``: the default export (dynamic batch, ψ an input, const noise), made once."""
    done = {}

    def get(name, fmt):
        if (name, fmt) not in done:
            out = tmp_path_factory.mktemp(f"{name}_{fmt}") / "export"
            done[name, fmt] = out, export_generator(sources[name], str(out), fmt)
        return done[name, fmt]
    return get


@functools.lru_cache(maxsize=None)
def _job_batch(source: str, psi: float, noise_mode: str = "const") -> np.ndarray:
    """What the generate job computes for SEEDS (one padded batch, as the job runs): NCHW float32."""
    _, net = checkpoints.pick_generator(checkpoints.load_any(source))
    cfg = net.config.replace(num_mixed_res=0)
    fn = make_generate_fn(Generator(cfg), psi, None, noise_mode)
    img = fn(jax.tree.map(jnp.asarray, net.variables), latents_for_seeds(SEEDS, cfg.z_dim), None, jax.random.key(0))
    return np.transpose(np.asarray(img), (0, 3, 1, 2))


def job_images(source: str, seeds, psi: float, noise_mode: str = "const") -> np.ndarray:
    """The generate job's images for ``seeds`` (a subset of SEEDS)."""
    return _job_batch(str(source), float(psi), noise_mode)[[SEEDS.index(s) for s in seeds]]


def assert_same_images(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape and got.dtype == np.float32
    diff = float(np.abs(got - want).max())
    assert diff <= FLOAT_TOL, f"max abs diff {diff}"
    u8 = lambda x: to_uint8(np.transpose(x, (0, 2, 3, 1))).astype(int)  # noqa: E731
    assert np.abs(u8(got) - u8(want)).max() <= 1
    return diff


# ---------------------------------------------------------------------------------------------
# The lowering rewrite.

def test_pad_rewrite_is_exact():
    from jax import lax

    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
    for cfg in [((0, 0, 0), (2, 2, 1), (3, -1, 1), (0, 0, 0)), ((0, 0, 0), (-1, 2, 0), (0, 0, 2), (1, 0, 0))]:
        np.testing.assert_array_equal(pad_without_pad(x, np.float32(0), cfg), lax.pad(x, np.float32(0), cfg))
    from gancomp_jax.ops.upfirdn2d import setup_filter, upsample2d
    f = lambda x: upsample2d(x, setup_filter([1, 3, 3, 1]))  # noqa: E731
    prims = {e.primitive.name for e in jax.make_jaxpr(expressible(f))(x).jaxpr.eqns}
    assert "pad" not in prims and "custom_vjp_call" not in prims
    np.testing.assert_array_equal(jax.jit(expressible(f))(x), jax.jit(f)(x))


# ---------------------------------------------------------------------------------------------
# ONNX and StableHLO against the generate job.

def onnx_run(path, feed):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["image"], feed)[0]


@needs_jax2onnx
@pytest.mark.parametrize("name", ["nvlabs", "student", pytest.param("rosinality", marks=pytest.mark.slow)])
def test_onnx_dynamic_batch_equals_generate(name, sources, exports):
    out, s = exports(name, "onnx")  # dynamic batch, ψ an input
    model = onnx.load(str(out / "generator.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["z", "truncation_psi"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert json.loads((out / MARKER).read_text())["tool"] == "export_model"
    assert s["source_sha256"] in (out / "README.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "README.md", "generator.onnx", "signature.json"])
    diffs = []
    for seeds in ([SEEDS[0]], SEEDS):
        for psi in (1.0, 0.7):
            got = onnx_run(out / "generator.onnx", {"z": latents_for_seeds(seeds, s["inputs"][0]["shape"][1]),
                                                    "truncation_psi": np.array(psi, np.float32)})
            diffs.append(assert_same_images(got, job_images(sources[name], seeds, psi)))
    print(f"{name}: ONNX Runtime vs generate job, max abs diff {max(diffs):.2e}")


@needs_jax2onnx
def test_onnx_fixed_batch_baked_truncation_cli(sources, tmp_path, capsys):
    out = tmp_path / "b1"
    assert export_cli.main([sources["rosinality"], str(out), "--format", "onnx", "--batch", "1",
                            "--truncation_psi", "0.7"]) == 0
    assert "wrote" in capsys.readouterr().out
    model = onnx.load(str(out / "generator.onnx"))
    assert [i.name for i in model.graph.input] == ["z"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    got = onnx_run(out / "generator.onnx", {"z": latents_for_seeds([7], 32)})
    assert_same_images(got, job_images(sources["rosinality"], [7], 0.7))


@needs_jax2onnx
def test_onnx_equals_nvlabs_reference_outputs(exports, nvlabs_ref):
    """Beyond our own generate job: the NVlabs reference images of the fixture itself."""
    out, _ = exports("nvlabs", "onnx")
    z = nvlabs_ref["in/z"].astype(np.float32)
    for psi, key in ((1.0, "out/img_const"), (0.7, "out/img_trunc07_const")):
        got = onnx_run(out / "generator.onnx", {"z": z, "truncation_psi": np.array(psi, np.float32)})
        np.testing.assert_allclose(got, nvlabs_ref[key], atol=1e-3)


@pytest.mark.parametrize("name", ["student", pytest.param("nvlabs", marks=pytest.mark.slow),
                                  pytest.param("rosinality", marks=pytest.mark.slow)])
def test_stablehlo_round_trip_equals_generate(name, sources, exports):
    out, s = exports(name, "stablehlo")
    sig = json.loads((out / "signature.json").read_text())
    assert sig["inputs"][0]["shape"] == ["N", s["inputs"][0]["shape"][1]] and "cpu" in sig["platforms"]
    exported = jax.export.deserialize(bytearray((out / "generator.stablehlo").read_bytes()))
    for seeds in ([SEEDS[0]], SEEDS):
        for psi in (1.0, 0.7):
            z = latents_for_seeds(seeds, s["inputs"][0]["shape"][1])
            got = np.asarray(exported.call(z, np.array(psi, np.float32)))
            assert_same_images(got, job_images(sources[name], seeds, psi))


@pytest.mark.slow
def test_stablehlo_fixed_batch_baked_truncation(sources, tmp_path):
    out = tmp_path / "shlo1"
    export_generator(sources["student"], str(out), "stablehlo", truncation_psi=0.7, batch=1)
    exported = jax.export.deserialize(bytearray((out / "generator.stablehlo").read_bytes()))
    assert len(exported.in_avals) == 1 and exported.in_avals[0].shape == (1, 64)
    got = np.asarray(exported.call(latents_for_seeds([3], 64)))
    assert_same_images(got, job_images(sources["student"], [3], 0.7))


@needs_jax2onnx
@pytest.mark.slow
def test_float16_export_is_close(sources, tmp_path):
    out = tmp_path / "f16"
    s = export_generator(sources["student"], str(out), "onnx", truncation_psi=0.7, dtype="float16")
    f32 = job_images(sources["student"], SEEDS, 0.7)
    got = onnx_run(out / "generator.onnx", {"z": latents_for_seeds(SEEDS, 64)})
    # float16 carries ~3 decimal digits through ~10 layers: a few 1e-3 of the [-1, 1] range
    assert float(np.abs(got - f32).max()) < 0.05 and s["dtype"] == "float16"


@pytest.mark.parametrize("fmt", ["stablehlo", pytest.param("onnx", marks=[needs_jax2onnx, pytest.mark.slow])])
def test_conditional_model_takes_labels(fmt, tmp_path):
    """A class-conditional generator (c_dim 4, random weights): the graph takes ``c`` after ``z``."""
    from gancomp_jax.models import get_preset

    cfg = get_preset("tiny16").generator.replace(c_dim=4)
    net = checkpoints.init_network("generator", cfg, jax.random.key(1))
    rng = np.random.default_rng(0)  # noise strengths and all else away from their zero init
    net.variables = jax.tree.map(lambda a: (rng.standard_normal(a.shape) * 0.3).astype(np.float32), net.variables)
    checkpoints.save_model(tmp_path / "m", {"G_ema": net})
    s = export_generator(str(tmp_path / "m"), str(tmp_path / fmt), fmt)
    assert [i["name"] for i in s["inputs"]] == ["z", "c", "truncation_psi"]
    z = latents_for_seeds(SEEDS[:3], 32)
    c = np.eye(4, dtype=np.float32)[[0, 2, 3]]
    fn = make_generate_fn(Generator(cfg), 0.7, None, "const")
    want = np.transpose(np.asarray(fn(net.variables, z, c, jax.random.key(0))), (0, 3, 1, 2))
    psi = np.array(0.7, np.float32)
    if fmt == "onnx":
        got = onnx_run(tmp_path / fmt / "generator.onnx", {"z": z, "c": c, "truncation_psi": psi})
    else:
        got = np.asarray(jax.export.deserialize(bytearray((tmp_path / fmt / "generator.stablehlo").read_bytes()))
                         .call(z, c, psi))
    assert_same_images(got, want)


# ---------------------------------------------------------------------------------------------
# The dependency-light example script.

@needs_jax2onnx
def test_onnx_generate_writes_the_generate_jobs_pngs(sources, exports, tmp_path):
    from gancomp_jax.main import run_job
    from test_generate import load_config

    exp, _ = exports("student", "onnx")
    cfg = load_config("generate")
    cfg.checkpoint, cfg.seeds, cfg.truncation_psi, cfg.grid = sources["student"], "0-5", 0.7, False
    run_job(cfg, str(tmp_path / "job"))
    # run the script with JAX and gancomp_jax made unimportable
    code = ("import sys, runpy; sys.modules['jax'] = None; sys.modules['gancomp_jax'] = None; "
            f"sys.argv = ['onnx_generate.py', {str(exp / 'generator.onnx')!r}, "
            f"{str(tmp_path / 'ort')!r}, '--seeds', '0-5', '--truncation_psi', '0.7', '--batch_size', '4']; "
            f"runpy.run_path({str(REPO / 'tools' / 'onnx_generate.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    for seed in range(6):
        a = np.asarray(Image.open(tmp_path / "ort" / f"seed{seed:04d}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "job" / f"seed{seed:04d}.png")).astype(int)
        assert a.shape == b.shape == (32, 32, 3) and np.abs(a - b).max() <= 1


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=needs_jax2onnx), "stablehlo"])
def test_generated_readme_usage_runs(fmt, exports, monkeypatch):
    """The Python example in OUT_DIR/README.md runs as written, in OUT_DIR."""
    out, s = exports("student", fmt)
    text = (out / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(out)
    scope: dict = {}
    exec(compile(code, str(out / "README.md"), "exec"), scope)
    assert scope["uint8"].shape == (4, 32, 32, 3) and scope["uint8"].dtype == np.uint8
    want = to_uint8(np.transpose(job_images(s["source"], [0, 1, 2, 3], 0.7), (0, 2, 3, 1)))
    assert np.abs(scope["uint8"].astype(int) - want.astype(int)).max() <= 1


def test_onnx_generate_bad_input(tmp_path):
    (tmp_path / "not.onnx").write_bytes(b"not a graph")
    for argv in ([str(tmp_path / "missing.onnx"), str(tmp_path / "o")],
                 [str(tmp_path / "not.onnx"), str(tmp_path / "o")],
                 [str(tmp_path / "not.onnx"), str(tmp_path / "o"), "--seeds", "3-1"]):
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "onnx_generate.py"), *argv],
                              capture_output=True, text=True, timeout=60)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), proc.stderr
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: one error line, exit 2, nothing written.

def run_cli(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        sys.exit(export_cli.main([str(a) for a in argv]))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_bad_inputs(sources, tmp_path, capsys):
    out = tmp_path / "out"
    assert "must be one of ('onnx', 'stablehlo')" in run_cli(capsys, sources["nvlabs"], out, "--format", "tflite")
    msg = run_cli(capsys, sources["nvlabs"], out, "--format", "onnx", "--noise_mode", "random")
    assert "not a deterministic function" in msg
    # a discriminator-only model
    d_only = tmp_path / "d_only"
    checkpoints.save_model(d_only, {"D": checkpoints.load_any(sources["nvlabs"], ["D"])["D"]})
    assert "holds no generator (found: D (discriminator))" in run_cli(capsys, d_only, out, "--format", "onnx")
    assert "is a discriminator" in run_cli(capsys, sources["nvlabs"], out, "--format", "onnx", "--network", "D")
    # a converted feature network
    from gancomp_jax.nets.weights import save_converted
    feat = tmp_path / "feat"
    save_converted(feat, "vgg16", {"params": {"w": np.zeros(3, np.float32)}}, {})
    assert "is a converted feature network (vgg16)" in run_cli(capsys, feat, out, "--format", "onnx")
    assert not out.exists() and leftovers(tmp_path) == []


@needs_jax2onnx
def test_output_folder_rules(sources, tmp_path, capsys):
    src = sources["rosinality"]
    out = tmp_path / "out"
    assert export_cli.main([src, str(out), "--format", "stablehlo", "--batch", "2"]) == 0
    before = (out / "generator.stablehlo").read_bytes()
    assert "already exists" in run_cli(capsys, src, out, "--format", "stablehlo")
    assert (out / "generator.stablehlo").read_bytes() == before
    # --overwrite replaces an export of ours
    assert export_cli.main([src, str(out), "--format", "onnx", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "README.md", "generator.onnx", "signature.json"])
    # ... and never a folder that is not ours
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    assert "only replaces an output of gancomp_jax" in run_cli(capsys, src, user, "--format", "onnx", "--overwrite")
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    # ... nor a model directory (ours, but not an export)
    model = tmp_path / "model"
    checkpoints.save_model(model, {"G_ema": checkpoints.load_any(src)["G_ema"]})
    assert "only replaces an earlier export" in run_cli(capsys, src, model, "--format", "onnx", "--overwrite")
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "variables"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["conversion", "writing"])
def test_failed_export_leaves_nothing(where, sources, tmp_path, monkeypatch):
    import gancomp_jax.deploy.readme as readme
    import gancomp_jax.deploy.stablehlo as shlo

    def boom(*a, **k):
        raise RuntimeError("simulated failure")
    monkeypatch.setattr(*((shlo, "export_stablehlo") if where == "conversion" else (readme, "render")), boom)
    with pytest.raises(RuntimeError, match="simulated"):
        export_generator(sources["rosinality"], str(tmp_path / "out"), "stablehlo")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
