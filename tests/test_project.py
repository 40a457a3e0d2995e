"""Projector job (NVlabs projector.py): recovery, round trip into generate, resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from editing_helpers import DIGITS_TEACHER, REPO, load_experiment
from gancomp_jax import main as cli
from gancomp_jax.editing import projector as P
from gancomp_jax.jobs import project as job


def project_config(**kw):
    kw.setdefault("progress", False)
    kw.setdefault("video", "none")
    return load_experiment("project", "digits", **kw)


@pytest.fixture(scope="module")
def teacher_images(tmp_path_factory):
    """Images the digits teacher generated (seeds 1-3, const noise) as PNG targets."""
    out = tmp_path_factory.mktemp("gen")
    cli.run_job(load_experiment("generate", checkpoint=str(DIGITS_TEACHER), seeds="1-3", grid=False), str(out))
    return sorted(out.glob("seed*.png"))


def test_schedules_are_nvlabs():
    o = P.ProjectorOptions()
    assert (o.num_steps, o.w_avg_samples, o.initial_learning_rate, o.initial_noise_factor, o.lr_rampdown_length,
            o.lr_rampup_length, o.noise_ramp_length, o.regularize_noise_weight) == (
        1000, 10000, 0.1, 0.05, 0.25, 0.05, 0.75, 1e5)
    assert P.learning_rate(0, o) == 0.0
    assert P.learning_rate(25, o) == pytest.approx(0.05)          # half way up the 50-step ramp-up
    assert P.learning_rate(500, o) == pytest.approx(0.1)
    assert P.learning_rate(875, o) == pytest.approx(0.05)         # half way down the 250-step ramp-down
    assert P.w_noise_scale(0, 2.0, o) == pytest.approx(0.1)
    assert P.w_noise_scale(375, 2.0, o) == pytest.approx(0.1 * 0.25)
    assert P.w_noise_scale(750, 2.0, o) == 0.0


def test_noise_regularization_matches_a_direct_sum():
    rng = np.random.RandomState(0)
    maps = [rng.randn(4, 4).astype(np.float32), rng.randn(32, 32).astype(np.float32)]
    want = 0.0
    for m in maps:
        x = m.astype(np.float64)
        while True:
            want += np.mean(x * np.roll(x, 1, axis=1)) ** 2 + np.mean(x * np.roll(x, 1, axis=0)) ** 2
            if x.shape[0] <= 8:
                break
            x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
    assert float(P.noise_regularization([np.asarray(m) for m in maps])) == pytest.approx(want, rel=1e-5)


@pytest.fixture(scope="module")
def projected(teacher_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("proj") / "one"
    metrics = cli.run_job(project_config(target=str(teacher_images[0]), num_steps=100, video="gif",
                                         video_every=20), str(out))
    return out, metrics


def test_mse_projection_recovers_a_teacher_image(projected):
    out, metrics = projected
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".gancomp_jax_output.json", "metrics.json", "proj.gif", "proj.png", "projected_w.npz", "target.png"])
    w = np.load(out / "projected_w.npz")["w"]
    assert w.shape == (1, 8, 64) and w.dtype == np.float32
    assert np.all(w == w[:, :1])                                   # space='w': one w for every layer
    assert json.loads((out / "metrics.json").read_text())["psnr"] == metrics["psnr"]
    assert metrics["psnr"] > 25.0, metrics                         # 100 steps; 1000 steps: see the slow test
    assert metrics["lpips"] is None and "vgg16" in metrics["lpips_note"]
    assert Image.open(out / "proj.gif").n_frames == 6


def test_projected_w_round_trips_into_generate(projected, tmp_path):
    out, _ = projected
    gen = tmp_path / "gen"
    cli.run_job(load_experiment("generate", checkpoint=str(DIGITS_TEACHER),
                                projected_w=str(out / "projected_w.npz")), str(gen))
    a = np.asarray(Image.open(gen / "proj00.png"))
    b = np.asarray(Image.open(out / "proj.png"))
    assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b)


def test_rerun_of_a_finished_projection_does_nothing(projected, capsys):
    out, metrics = projected
    before = (out / "proj.png").stat().st_mtime_ns
    target = json.loads((out / ".gancomp_jax_output.json").read_text())["settings"]["target"]
    again = cli.run_job(project_config(target=target, num_steps=100, video="gif", video_every=20), str(out))
    assert again == metrics and (out / "proj.png").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match=r"other settings \(changed: num_steps\)"):
        cli.run_job(project_config(target=target, num_steps=7, video="gif", video_every=20), str(out))


@pytest.mark.slow  # another compilation of the step (~8 s of CPU); the W path is in the default set
def test_w_plus_and_optimized_noise_render(teacher_images, tmp_path):
    out = tmp_path / "wp"
    cli.run_job(project_config(target=str(teacher_images[1]), space="w_plus", render_noise="optimized",
                               num_steps=5, w_avg_samples=64), str(out))
    w = np.load(out / "projected_w.npz")["w"]
    assert w.shape == (1, 8, 64) and not np.allclose(w[0, 0], w[0, -1])   # one w per layer
    noise = np.load(out / "projected_noise.npz")
    want = ["synthesis.b4.conv1.noise_const"] + [f"synthesis.b{r}.conv{i}.noise_const" for r in (8, 16, 32)
                                                  for i in (0, 1)]
    assert sorted(noise.files) == sorted(want)
    for k in noise.files:                                             # renormalised: zero mean, unit mean square
        assert abs(noise[k].mean()) < 1e-4 and np.mean(noise[k] ** 2) == pytest.approx(1.0, rel=1e-3)


def test_batch_mode_resumes_after_an_interruption(teacher_images, tmp_path, monkeypatch):
    folder = tmp_path / "targets"
    folder.mkdir()
    for p in teacher_images:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "batch"
    cfg = dict(targets=str(folder), num_steps=3, w_avg_samples=64)
    calls = []
    real = job.Projector.run_one

    def interrupted(self, *a, **kw):
        calls.append(kw["desc"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(job.Projector, "run_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.run_job(project_config(**cfg), str(out))
    done = sorted(p.name for p in out.iterdir())
    assert done == [".gancomp_jax_output.json", "seed0001"]         # sealed first target, no half-written one
    first = (out / "seed0001" / "metrics.json").stat().st_mtime_ns
    monkeypatch.setattr(job.Projector, "run_one", real)
    calls.clear()
    monkeypatch.setattr(job.Projector, "run_one", lambda self, *a, **kw: calls.append(kw["desc"]) or real(self, *a, **kw))
    summary = cli.run_job(project_config(**cfg), str(out))
    assert [c.split()[-1] for c in calls] == ["seed0002.png", "seed0003.png"]
    assert (out / "seed0001" / "metrics.json").stat().st_mtime_ns == first
    assert summary["count"] == 3 and sorted(summary["targets"]) == ["seed0001", "seed0002", "seed0003"]
    for p in ("seed0001", "seed0002", "seed0003"):
        assert json.loads((out / p / ".gancomp_jax_output.json").read_text())["complete"] is True


def _bad_inputs(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "notimage.png").write_text("this is not a PNG")
    Image.new("L", (40, 30), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (32, 32), (1, 2, 3, 4)).save(tmp_path / "rgba.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (32, 32)).save(mixed / "a.png")
    Image.new("RGBA", (32, 32)).save(mixed / "b.png")
    np.savez(tmp_path / "w_wrong.npz", w=np.zeros((1, 7, 64), np.float32))
    np.savez(tmp_path / "w_nokey.npz", latent=np.zeros((1, 8, 64), np.float32))
    return tmp_path


BAD_TARGETS = [
    ({"target": "missing.png"}, r"target image .*missing.png does not exist"),
    ({"target": "notimage.png"}, r"target .*notimage.png is not a readable image"),
    ({"targets": "empty"}, r"targets folder .*empty holds no images"),
    ({"target": "grey.png"}, r"grey.png is a 1-channel \(grey-scale, mode L\) image; the generator makes 3-channel"),
    ({"target": "rgba.png"}, r"rgba.png is an RGBA image; the generator makes 3-channel"),
    ({"targets": "mixed"}, r"b.png is an RGBA image"),
    ({"target": "grey.png", "targets": "empty"}, r"set exactly one of config.target"),
]


@pytest.mark.parametrize("kw,message", BAD_TARGETS)
def test_bad_targets_one_error_no_output(tmp_path, kw, message):
    base = _bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises((ValueError, FileNotFoundError, NotADirectoryError), match=message):
        cli.run_job(project_config(**{k: str(base / v) for k, v in kw.items()}), str(out))
    assert not out.exists()


@pytest.mark.parametrize("file,message", [("w_wrong.npz", r"'w' has shape \(1, 7, 64\) .*needs floats of shape "
                                           r"\[N, 8, 64\]"), ("w_nokey.npz", r"has no key 'w'"),
                                          ("missing.npz", r"does not exist")])
def test_bad_projected_w_one_error_no_output(tmp_path, file, message):
    base = _bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        cli.run_job(load_experiment("generate", checkpoint=str(DIGITS_TEACHER), projected_w=str(base / file)),
                    str(out))
    assert not out.exists()


@pytest.mark.parametrize("loss", ["vgg_nvlabs", "lpips"])
def test_vgg_losses_without_weights_name_the_file(tmp_path, loss):
    with pytest.raises(ValueError, match=rf"loss='{loss}' needs torchvision's VGG16 weights \(vgg16-397923af.pth"):
        cli.run_job(project_config(target=str(tmp_path / "x.png"), loss=loss), str(tmp_path / "out"))
    with pytest.raises((FileNotFoundError, ValueError), match=r"nowhere/vgg16-397923af.pth"):
        cli.run_job(project_config(target=str(tmp_path / "x.png"), loss=loss,
                                   vgg16=str(tmp_path / "nowhere" / "vgg16-397923af.pth")), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_mp4_needs_an_encoder(tmp_path):
    from gancomp_jax.editing import outputs

    if outputs.ffmpeg_available():
        pytest.skip("imageio-ffmpeg is installed here")
    with pytest.raises(ValueError, match=r"video='mp4' needs an MP4 encoder \(pip install imageio imageio-ffmpeg\)"):
        cli.run_job(project_config(target=str(tmp_path / "x.png"), video="mp4"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_cli_prints_one_error_line(tmp_path):
    base = _bad_inputs(tmp_path / "in")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "gancomp_jax.main", "--config", f"{REPO}/experiments/project.py:digits",
                        "--workdir", str(tmp_path / "out"), f"--config.target={base / 'rgba.png'}"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: target ") and "RGBA" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_mse_projection_nvlabs_defaults_recovers_teacher_image(teacher_images, tmp_path):
    """NVlabs' defaults (1000 steps, 10,000 w_avg samples) with loss=mse."""
    metrics = cli.run_job(project_config(target=str(teacher_images[0]), num_steps=1000, w_avg_samples=10000),
                          str(tmp_path / "p"))
    print("PSNR (1000 steps, W, mse):", metrics["psnr"])
    assert metrics["psnr"] > 30.0, metrics


@pytest.mark.slow
def test_projects_into_a_rosinality_checkpoint(tmp_path):
    """Any MODEL load_any reads: here the rosinality .pt fixture (16 px), a non-square RGB target."""
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (20, 24, 3)).astype(np.uint8)).save(tmp_path / "t.png")
    out = tmp_path / "ros"
    metrics = cli.run_job(project_config(checkpoint=str(REPO / "tests" / "fixtures" / "rosinality_ros16.pt"),
                                         target=str(tmp_path / "t.png"), num_steps=3, w_avg_samples=16), str(out))
    assert np.asarray(Image.open(out / "target.png")).shape == (16, 16, 3) and np.isfinite(metrics["psnr"])
    assert np.load(out / "projected_w.npz")["w"].shape[0] == 1
