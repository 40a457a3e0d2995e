"""Interpolation (lerp in W, slerp in Z, projected w keyframes, several models) and the edit report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from editing_helpers import DIGITS_TEACHER, load_experiment
from gancomp_jax import main as cli
from gancomp_jax.editing import interpolate as I
from gancomp_jax.jobs import prune as prune_job


def test_slerp_and_frame_counts():
    rng = np.random.RandomState(0)
    a, b = rng.randn(16), rng.randn(16)
    assert np.allclose(I.slerp(a, b, 0.0), a) and np.allclose(I.slerp(a, b, 1.0), b)
    mid = I.slerp(a / np.linalg.norm(a), b / np.linalg.norm(b), 0.5)
    assert np.linalg.norm(mid) == pytest.approx(1.0)              # stays on the sphere (lerp would not)
    assert np.allclose(I.slerp(a, 2 * a, 0.5), 1.5 * a)            # parallel: falls back to lerp
    assert len(I.path_weights(3, 4)) == 9
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        I.path_weights(1, 4)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A 70 %-pruned digits student (l1_out, no distillation)."""
    out = tmp_path_factory.mktemp("student") / "prune"
    c = prune_job.default_config()
    c.teacher, c.criterion, c.ratio, c.progress, c.grid_seeds = str(DIGITS_TEACHER), "l1_out", 0.7, False, "0-1"
    cli.run_job(c, str(out))
    return out / "model"


def test_morph_keyframes_are_the_generated_images(student, tmp_path):
    gen = tmp_path / "gen"
    cli.run_job(load_experiment("generate", checkpoint=str(DIGITS_TEACHER), seeds="4,9", grid=False), str(gen))
    for space, models in (("w", f"{DIGITS_TEACHER},{student}"), ("z", str(DIGITS_TEACHER))):
        out = tmp_path / f"morph_{space}"
        n = len(models.split(","))
        cli.run_job(load_experiment("interpolate", checkpoints=models, names="t,s" if n == 2 else "t",
                                    seeds="4,9", frames=3, space=space), str(out))
        strip = np.asarray(Image.open(out / "strip.png"))
        assert strip.shape == (n * 32, 4 * 32, 3)                  # n models x (1 segment * 3 + 1) frames
        for col, seed in ((0, 4), (3, 9)):
            want = np.asarray(Image.open(gen / f"seed{seed:04d}.png")).astype(int)
            assert np.abs(strip[:32, col * 32:(col + 1) * 32].astype(int) - want).max() <= 1
        gif = Image.open(out / "morph.gif")
        assert gif.n_frames == 4 and gif.size == (n * 32, 32)       # models side by side
        assert json.loads((out / "interpolate.json").read_text())["num_frames"] == 4


def test_morph_from_projected_w_files(tmp_path):
    rng = np.random.RandomState(1)
    files = []
    for i in range(2):
        np.savez(tmp_path / f"w{i}.npz", w=rng.randn(1, 8, 64).astype(np.float32) * 0.3)
        files.append(str(tmp_path / f"w{i}.npz"))
    out = tmp_path / "m"
    cli.run_job(load_experiment("interpolate", checkpoints=str(DIGITS_TEACHER), projected_w=",".join(files),
                                frames=2, video="none"), str(out))
    gen = tmp_path / "g"
    cli.run_job(load_experiment("generate", checkpoint=str(DIGITS_TEACHER), projected_w=files[1]), str(gen))
    strip = np.asarray(Image.open(out / "strip.png"))
    assert np.array_equal(strip[:, 64:96], np.asarray(Image.open(gen / "proj00.png")))
    assert not (out / "morph.gif").exists()
    with pytest.raises(ValueError, match="interpolated in W"):
        cli.run_job(load_experiment("interpolate", checkpoints=str(DIGITS_TEACHER), projected_w=",".join(files),
                                    space="z"), str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_edit_report_digits(student, tmp_path):
    out = tmp_path / "report"
    cfg = load_experiment("edit_report", "digits", students=str(student), names="teacher,pruned", digits_targets=3,
                          num_steps=10, w_avg_samples=64, show_targets=3, row_seeds="1,2", col_seeds="3",
                          morph_seeds="1,2", frames=2, progress=False)
    report = cli.run_job(cfg, str(out))
    rows = {r["model"]: r for r in report["models"]}
    assert sorted(rows) == ["pruned", "teacher"] and rows["pruned"]["params"] < rows["teacher"]["params"]
    for r in rows.values():
        assert r["targets"] == 3 and np.isfinite(r["mean_psnr"]) and r["mean_lpips"] is None
    assert "LPIPS not computed" in report["lpips_note"]
    assert np.asarray(Image.open(out / "projections.png")).shape == (3 * 32, 3 * 32, 3)
    for n in ("teacher", "pruned"):
        assert np.asarray(Image.open(out / "style_mixing" / f"{n}.png")).shape == (3 * 32, 2 * 32, 3)
        assert len(list((out / "project" / n).glob("digit*/projected_w.npz"))) == 3
    assert np.asarray(Image.open(out / "morph" / "strip.png")).shape == (2 * 32, 3 * 32, 3)
    md = (out / "report.md").read_text()
    assert "| teacher | 263,987 | 3 |" in md and "projections.png" in md
    # the digits targets are real data-set images, identical for every model
    t = np.asarray(Image.open(out / "project" / "teacher" / "digit0001" / "target.png"))
    s = np.asarray(Image.open(out / "project" / "pruned" / "digit0001" / "target.png"))
    assert np.array_equal(t, s)
    again = cli.run_job(cfg, str(out))                               # resumes: nothing is projected again
    assert again["models"] == report["models"]
