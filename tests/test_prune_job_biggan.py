"""The prune job on a BigGAN teacher (a model directory of the real architecture, random weights):
widths at ratio r / channel divisor, the student equal to ``prune/biggan.py``'s (which
``test_prune_biggan.py`` shows equals the masked teacher), outputs usable by generate, profile,
export and the BigGAN methods; StyleGAN2-only options refused with one error line."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import jax
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.jobs import prune as prune_job
from gancomp_jax.models.biggan import BigGANDiscriminatorConfig, init_discriminator
from gancomp_jax.models.network import Network
from gancomp_jax.prune import biggan as pb

from test_prune_biggan import teacher  # noqa: F401  (fixture: tiny 32 px BigGAN G, 5 classes, attention at 16)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher_dir(teacher, tmp_path_factory):  # noqa: F811
    cfg, v, _, _ = teacher
    dcfg = BigGANDiscriminatorConfig.biggan(32, ch=4, attention="0", n_classes=cfg.n_classes)
    rng = np.random.RandomState(3)
    dv = jax.tree.map(lambda a: (rng.randn(*a.shape) * 0.3).astype(np.float32),
                      jax.eval_shape(lambda k: init_discriminator(dcfg, k), jax.random.key(0)))
    g_ema = jax.tree.map(lambda a: np.asarray(a) * np.float32(1.01), v)  # G differs from G_ema
    path = tmp_path_factory.mktemp("bg") / "teacher"
    checkpoints.save_model(path, {"G": Network("biggan_generator", cfg, v),
                                  "G_ema": Network("biggan_generator", cfg, g_ema),
                                  "D": Network("biggan_discriminator", dcfg, dv)}, {"source": "test"})
    return path


def config(teacher, **kw):
    c = prune_job.default_config()
    c.teacher = str(teacher)
    c.criterion = "l1"
    c.grid_seeds = "0-2"
    c.progress = False
    for k, v in kw.items():
        c[k] = v
    return c


@pytest.fixture(scope="module")
def pruned(teacher_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "out"
    result = prune_job.run(config(teacher_dir, ratio=0.5), str(out))
    return out, result


def test_ratio_widths_and_student_equal_prune_generator(teacher_dir, pruned):
    out, result = pruned
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["grid.png", "model", "report.md", "scores.npz"]
    t = checkpoints.load_model(teacher_dir)
    s = checkpoints.load_model(out / "model")
    cfg = t["G_ema"].config
    # ratio 0.5: every prunable group keeps round(C/2); res2 feeds attention (16 px) and is kept
    assert cfg.channels == (16, 16, 16, 16) and s["G_ema"].config.channels == (8, 8, 16, 8)
    assert s["G_ema"].config.hidden == (8, 8, 8) and s["G"].config == s["G_ema"].config
    # G_ema's channels pruned with prune_generator, bit-equal (test_prune_biggan: = the masked teacher)
    want_cfg, want_v, keep = pb.prune_generator(t["G_ema"].variables, cfg, ratio=0.5)
    assert s["G_ema"].config == want_cfg
    for a, b in zip(jax.tree.leaves(want_v), jax.tree.leaves(s["G_ema"].variables)):
        np.testing.assert_array_equal(a, b)
    # G is pruned with G_ema's channels (stays aligned), D is the teacher's
    g_v = pb._apply(t["G"].variables, cfg, keep, lambda a, axis, idx, _: np.take(a, idx, axis=axis))
    for a, b in zip(jax.tree.leaves(g_v), jax.tree.leaves(s["G"].variables)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(t["D"].variables), jax.tree.leaves(s["D"].variables)):
        np.testing.assert_array_equal(a, b)
    meta = checkpoints.read_description(out / "model")["metadata"]["pruning"]
    assert meta["family"] == "biggan" and meta["criterion"] == "l1"
    assert meta["kept"]["hidden1"] == [int(i) for i in keep["hidden1"]]
    scores = np.load(out / "scores.npz")
    np.testing.assert_array_equal(scores["res3"], pb.l1_scores(t["G_ema"].variables, pb.channel_groups(cfg)["res3"]))
    assert result["params"]["student"] < result["params"]["teacher"]
    assert 0 < result["macs"]["student"] < result["macs"]["teacher"]
    report = (out / "report.md").read_text()
    assert "| hidden1 | 16 | 8 | 50.0% |" in report and "| res2 | 16 | 16 | 100.0% |" in report
    from PIL import Image
    assert Image.open(out / "grid.png").size == (3 * 32, 2 * 32)  # teacher / student rows, 3 seeds


def test_channel_divisor_and_first(teacher_dir, tmp_path):
    r = prune_job.run(config(teacher_dir, channel_multiplier=4, criterion="first", grid_seeds="0"), str(tmp_path / "o"))
    s = checkpoints.load_model(Path(r["model"]), ["G_ema"])["G_ema"]
    assert s.config.channels == (4, 4, 16, 4) and s.config.hidden == (4, 4, 4)
    meta = checkpoints.read_description(r["model"])["metadata"]["pruning"]
    assert meta["kept"]["res0"] == [0, 1, 2, 3]


def test_pruned_model_feeds_generate_profile_export_and_methods(teacher_dir, pruned, tmp_path):
    out, _ = pruned
    model = out / "model"
    from gancomp_jax.main import run_job
    import experiments.generate as gen_exp
    g = gen_exp.get_config()
    g.checkpoint, g.seeds, g.class_idx = str(model), "0-1", 3
    run_job(g, str(tmp_path / "gen"))
    assert sorted(p.name for p in (tmp_path / "gen").glob("seed*.png")) == ["seed0000.png", "seed0001.png"]
    # tools/profile.py (its file: the name shadows the stdlib's profile)
    spec = importlib.util.spec_from_file_location("gancomp_profile_tool", REPO / "tools" / "profile.py")
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert prof.run(prof.parse_args([str(out)])) == 0
    assert "widths [8, 8, 16, 8]" in buf.getvalue() and "MACs/image" in buf.getvalue()
    from gancomp_jax.export import export_model
    export_model(str(model), tmp_path / "exp")
    assert json.loads((tmp_path / "exp" / "export.json").read_text())["files"]["G_ema.pth"]
    back = checkpoints.load_any(str(tmp_path / "exp" / "G_ema.pth"))  # BigGAN-PyTorch layout, widths inferred
    assert [(n.config.channels, n.config.hidden) for n in back.values()] == [((8, 8, 16, 8), (8, 8, 8))]
    # a BigGAN-PyTorch file as the teacher: the family is known after loading, then the same checks
    with pytest.raises(ValueError, match="criterion 'content_aware' is for StyleGAN2 teachers.*G_ema.pth is a BigGAN"):
        prune_job.run(config(tmp_path / "exp" / "G_ema.pth", criterion="content_aware", ratio=0.5),
                      str(tmp_path / "p2"))
    assert not (tmp_path / "p2").exists()
    # the BigGAN methods take it as the student's start (G and D read back by the trainer's loader)
    from test_biggan_method import tiny_method_config

    from gancomp_jax.methods import biggan, dgl_gan_biggan
    from gancomp_jax.methods.base import BuildEnv
    from gancomp_jax.train.networks import load_source
    env = BuildEnv(batch_size=4, num_devices=1, mbstd_num_shards=1)
    c = tiny_method_config(init=str(out), n_classes=5)
    c2 = tiny_method_config(n_classes=5)
    c2.method = dgl_gan_biggan.default_config()
    c2.method.update(dict(stage=2, teacher=str(teacher_dir), stage1=str(out), num_D_steps=1))
    for method in (biggan.build(c, env), dgl_gan_biggan.build(c2, env)):
        nets = {role: load_source(role, spec) for role, spec in method.networks.items()}
        assert nets["G"].config.channels == (8, 8, 16, 8) and nets["D"].kind == "biggan_discriminator"
    assert nets["D_T"].config.channels == nets["D"].config.channels  # D kept at the teacher's width


BAD = [
    (dict(criterion="content_aware", ratio=0.5), "criterion 'content_aware' is for StyleGAN2 teachers.*family biggan"),
    (dict(criterion="dcp", ratio=0.5), "criterion 'dcp' is for StyleGAN2"),
    (dict(target_reduction=0.5), "target_reduction=0.5 is a StyleGAN2-only"),
    (dict(ratio=0.5, discriminator="narrow"), "discriminator='narrow'"),
    (dict(ratio=0.5, channel_multiplier=2), "exactly one width rule"),
    (dict(ratio=1.0), r"ratio must be in \[0, 1\)"),
]


@pytest.mark.parametrize("kw,msg", BAD)
def test_bad_options_write_nothing(teacher_dir, tmp_path, kw, msg):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=msg):
        prune_job.run(config(teacher_dir, **kw), str(out))
    assert not out.exists()


def test_cli_stylegan2_criterion_on_biggan_is_one_error_line(teacher_dir, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments/prune.py"),
                        "--workdir", str(out), f"--config.teacher={teacher_dir}", "--config.ratio=0.5",
                        "--config.criterion=gan_slimming"], env=env, capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("error: criterion 'gan_slimming' is for StyleGAN2 teachers"), r.stderr
    assert "BigGAN" in last and not out.exists()


def test_stylegan2_prune_run_does_not_import_biggan(tmp_path):
    """A StyleGAN2 prune, run to the end, never imports the BigGAN family (dispatch is lazy)."""
    code = f"""
import sys, jax, numpy as np
from gancomp_jax import checkpoints
from gancomp_jax.jobs import prune, report
from gancomp_jax.models import DiscriminatorConfig, GeneratorConfig
cfg = GeneratorConfig(img_resolution=8, channels=(8, 8, 8, 8), z_dim=4, w_dim=4, mapping_layers=1)
dcfg = DiscriminatorConfig(img_resolution=8, channels=(8, 8))
v, dv = (jax.tree.map(lambda a: np.full(a.shape, 0.1, np.float32), checkpoints.abstract_variables(k, c))
         for k, c in (("generator", cfg), ("discriminator", dcfg)))
checkpoints.save_model({str(tmp_path / 't')!r}, {{"G_ema": checkpoints.Network("generator", cfg, v),
                                                  "D": checkpoints.Network("discriminator", dcfg, dv)}})
c = prune.default_config()
c.teacher, c.criterion, c.ratio, c.grid_seeds, c.progress = {str(tmp_path / 't')!r}, "first", 0.5, "0", False
prune.run(c, {str(tmp_path / 'out')!r})
bad = [m for m in sys.modules if "biggan" in m]
assert not bad, bad
"""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "out" / "model" / "model.json").is_file()


def test_unprunable_family_refused():
    """pytorch-pretrained-biggan's BigGAN-deep (eval only) has no prune branch: one clear error."""
    nets = {"G_ema": Network("pretrained_biggan_generator", None, {})}
    with pytest.raises(ValueError, match="pretrained_biggan_generator, family biggan_deep\\) cannot be pruned"):
        prune_job._family(nets, "deep.bin")
