"""The prune job: command line end to end (NVlabs pickle → student → generate), outputs, D options,
and bad input (one clear error, nothing written)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from gancomp_jax import checkpoints
from gancomp_jax.convert.fake_nvlabs import FakeNetwork, write_nvlabs_pickle
from gancomp_jax.jobs import prune as prune_job
from gancomp_jax.models import DiscriminatorConfig, GeneratorConfig
from gancomp_jax.models.nvlabs_compat import to_nvlabs_state_dict
from gancomp_jax.prune.surgery import slice_generator

REPO = Path(__file__).resolve().parents[1]
GCFG = GeneratorConfig(img_resolution=16, channels=(32, 32, 32, 32, 16, 16), z_dim=16, w_dim=16, mapping_layers=2)
DCFG = DiscriminatorConfig(img_resolution=16, channels=(16, 32, 32), mbstd_group_size=2)
G_KWARGS = dict(z_dim=16, w_dim=16, c_dim=0, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None))
D_KWARGS = dict(c_dim=0, img_resolution=16, img_channels=3, architecture="resnet", channel_base=256,
                channel_max=32, num_fp16_res=0, conv_clamp=None, block_kwargs={}, mapping_kwargs={},
                epilogue_kwargs=dict(mbstd_group_size=2))


def random_variables(kind, config, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.standard_normal(a.shape, dtype=np.float32),
                        checkpoints.abstract_variables(kind, config))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A model directory with G, G_ema and D."""
    g = checkpoints.Network("generator", GCFG, random_variables("generator", GCFG, 0))
    d = checkpoints.Network("discriminator", DCFG, random_variables("discriminator", DCFG, 1))
    return checkpoints.save_model(tmp_path_factory.mktemp("teacher") / "model", {"G": g, "G_ema": g, "D": d})


@pytest.fixture(scope="module")
def teacher_without_d(tmp_path_factory):
    g = checkpoints.Network("generator", GCFG, random_variables("generator", GCFG, 0))
    return checkpoints.save_model(tmp_path_factory.mktemp("teacher_g") / "model", {"G_ema": g})


def config(teacher, **kw):
    c = prune_job.default_config()
    c.teacher = str(teacher)
    c.n_sample, c.batch_size, c.progress, c.grid_seeds = 4, 4, False, "0-3"
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def _run_cli(config_file, workdir, *flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / config_file),
           "--workdir", str(workdir), *flags]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _run_in_process(config_file, workdir, *flags):
    from ml_collections import config_flags  # noqa: F401  (same parsing as the CLI, minus the process)
    import importlib.util
    spec = importlib.util.spec_from_file_location("cfg", REPO / "experiments" / config_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    for f in flags:
        key, value = f[len("--config."):].split("=", 1)
        old = c[key]
        c[key] = value if isinstance(old, str) else type(old)(value) if old is not None else float(value)
    from gancomp_jax.main import run_job
    run_job(c, str(workdir))


@pytest.mark.parametrize("via", ["process", pytest.param("cli", marks=pytest.mark.slow)])
def test_nvlabs_pickle_prune_then_generate(tmp_path, capsys, via):
    """Convert an NVlabs pickle (in memory), prune it, generate from the student."""
    gv, dv = random_variables("generator", GCFG, 2), random_variables("discriminator", DCFG, 3)
    pkl = write_nvlabs_pickle(tmp_path / "teacher.pkl", {
        "G": FakeNetwork("Generator", G_KWARGS, to_nvlabs_state_dict(gv, "G")),
        "G_ema": FakeNetwork("Generator", G_KWARGS, to_nvlabs_state_dict(gv, "G")),
        "D": FakeNetwork("Discriminator", D_KWARGS, to_nvlabs_state_dict(dv, "D"))})
    run = _run_cli if via == "cli" else _run_in_process
    out = tmp_path / "out"
    stdout = run("prune.py", out, f"--config.teacher={pkl}", "--config.criterion=content_aware",
                 "--config.ratio=0.7", "--config.n_sample=4", "--config.batch_size=4", "--config.grid_seeds=0-3")
    stdout = stdout or capsys.readouterr().out
    assert "pruned student" in stdout and "reduction" in stdout
    desc = json.loads((out / "model" / "model.json").read_text())
    meta = desc["metadata"]["pruning"]
    assert meta["criterion"] == "content_aware" and meta["ratio"] == 0.7
    assert meta["teacher"]["sha256"] == hashlib.sha256(Path(pkl).read_bytes()).hexdigest()
    assert meta["layers"] == ["b4.const", "b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]
    assert sorted(meta["kept"]) == sorted(meta["layers"])  # model.json keys are sorted
    assert [len(meta["kept"][n]) for n in meta["layers"]] == [10, 10, 10, 10, 5, 5] == meta["student_channels"]
    assert sorted(desc["networks"]) == ["D", "G", "G_ema"]
    scores = np.load(out / "scores.npz")
    assert sorted(scores.files) == sorted(meta["kept"]) and scores["b4.const"].shape == (32,)
    # the kept lists reproduce the student from the teacher
    nets = checkpoints.load_model(out / "model")
    teacher = checkpoints.load_any(pkl, ["G_ema"])["G_ema"]
    again = slice_generator(teacher, {k: np.array(v) for k, v in meta["kept"].items()})
    fa, fb = (traverse_util.flatten_dict(x, sep="/") for x in (again.variables, nets["G_ema"].variables))
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    for k, v in traverse_util.flatten_dict(nets["D"].variables, sep="/").items():
        np.testing.assert_array_equal(v, traverse_util.flatten_dict(dv, sep="/")[k])  # teacher D unchanged
    assert (out / "grid.png").is_file() and "| b4.const | 32 | 10 |" in (out / "report.md").read_text()

    gen = tmp_path / "gen"
    run("generate.py", gen, f"--config.checkpoint={out / 'model'}", "--config.seeds=0-1")
    assert (gen / "seed0000.png").is_file() and (gen / "seed0001.png").is_file()


@pytest.mark.parametrize("d_mode,widths", [("fresh", (16, 32, 32)), ("narrow", (8, 16, 16))])
def test_student_discriminator_options(teacher_without_d, tmp_path, d_mode, widths):
    res = prune_job.run(config(teacher_without_d, criterion="first", channel_multiplier=2, discriminator=d_mode),
                        str(tmp_path / "o"))
    nets = checkpoints.load_model(res["model"])
    assert nets["G_ema"].config.channels == (16, 16, 16, 16, 8, 8)
    assert nets["D"].config.channels == widths  # derived from the teacher G's widths, full or halved


def test_target_reduction_and_scratch_student(teacher_dir, tmp_path):
    from gancomp_jax.metrics.cost import generator_cost
    res = prune_job.run(config(teacher_dir, criterion="first", target_reduction=0.6, macs_key="macs_cagc",
                               student_init="scratch"), str(tmp_path / "o"))
    meta = json.loads((Path(res["model"]) / "model.json").read_text())["metadata"]["pruning"]
    assert meta["kept"] is None and meta["macs_convention"] == "macs_cagc"
    widths = tuple(meta["student_channels"])
    cagc = lambda ch: generator_cost(GCFG.replace(channels=ch))["macs_cagc"]
    assert meta["achieved_reduction"] == pytest.approx(1 - cagc(widths) / cagc(GCFG.channels))
    assert abs(meta["achieved_reduction"] - 0.6) < 0.05
    assert checkpoints.load_model(res["model"], ["G"])["G"].config.channels == widths


def test_quickstart_stage(teacher_dir, tmp_path, capsys):
    res = prune_job.quickstart_stage(teacher_dir, tmp_path / "prune", n_sample=4, batch_size=4, progress=False)
    assert Path(res["grid"]).is_file() and Path(res["model"]).is_dir()
    assert res["macs"]["student"] < res["macs"]["teacher"]
    assert "| MACs (executed) |" in capsys.readouterr().out


BAD = [
    (dict(ratio=1.0), ValueError, r"\[0, 1\)"),
    (dict(ratio=-0.2), ValueError, r"\[0, 1\)"),
    (dict(ratio=0.5, criterion="magnitude"), ValueError, "unknown pruning criterion 'magnitude'"),
    (dict(channel_multiplier=64), ValueError, "0 channels"),
    (dict(ratio=0.5, overrides="b8.conv0=0"), ValueError, "b8.conv0=0"),
    (dict(ratio=0.5, mask="face_parser"), ValueError, "needs the BiSeNet face-parser weight file"),
    (dict(ratio=0.5, mask="face_parser", mask_weights="/nonexistent/79999_iter.pth"), FileNotFoundError,
     "79999_iter.pth does not exist"),
    (dict(ratio=0.5, mask="ellipse"), ValueError, "unknown content mask 'ellipse'"),
    (dict(), ValueError, "exactly one width rule"),
    (dict(ratio=0.5, target_reduction=0.9), ValueError, "exactly one width rule"),
    (dict(ratio=0.5, surgery="approx"), ValueError, "surgery must be one of"),
]


@pytest.mark.parametrize("kw,exc,msg", BAD)
def test_bad_input_writes_nothing(teacher_dir, tmp_path, kw, exc, msg):
    out = tmp_path / "out"
    with pytest.raises(exc, match=msg):
        prune_job.run(config(teacher_dir, **kw), str(out))
    assert not out.exists()


def test_teacher_without_d_when_needed(teacher_without_d, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="the teacher has no discriminator 'D'"):
        prune_job.run(config(teacher_without_d, ratio=0.5), str(out))
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prune_job.run(config(tmp_path / "missing.pkl", ratio=0.5), str(out))
    assert not out.exists()


def test_cli_bad_ratio_is_one_error_line(tmp_path, teacher_dir):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments/prune.py"),
                        "--workdir", str(out), f"--config.teacher={teacher_dir}", "--config.ratio=1.5"],
                       env=env, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: pruning ratio must be in [0, 1)")
    assert not out.exists()


@pytest.mark.slow
def test_face_parser_mask_with_random_bisenet(teacher_dir, tmp_path):
    """mask='face_parser' runs the Flax BiSeNet (random weights, converted-directory layout)."""
    from gancomp_jax.nets import bisenet
    from gancomp_jax.nets.weights import save_converted
    variables = jax.jit(bisenet.BiSeNet().init)(jax.random.key(0), jax.numpy.zeros((1, 64, 64, 3)))
    weights = save_converted(tmp_path / "bisenet", "bisenet", variables, {"preprocess": "imagenet512"})
    res = prune_job.run(config(teacher_dir, ratio=0.5, mask="face_parser", mask_weights=str(weights),
                               n_sample=2, batch_size=2), str(tmp_path / "o"))
    meta = json.loads((Path(res["model"]) / "model.json").read_text())["metadata"]["pruning"]
    assert meta["scoring"]["mask"] == "face_parser" and meta["student_channels"][0] == 16
