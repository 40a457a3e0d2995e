"""The command line as a new user meets it: --help, --print_config, one `error:` line per mistake."""

import subprocess
import sys
from pathlib import Path

import pytest

from gancomp_jax.main import run_job
from test_generate import load_config, model_dir  # noqa: F401  (module-scoped tiny16 model fixture)

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "gancomp_jax.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def one_error_line(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_help_lists_jobs_experiments_and_how_to_see_keys():
    r = cli("--help")
    assert r.returncode == 0, r.stderr
    for word in ("generate", "train", "quickstart", "prune", "experiments/generate.py",
                 "experiments/quickstart.py", "--print_config"):
        assert word in r.stdout, word
    assert "Traceback" not in r.stderr


def test_print_config_shows_keys_and_overrides():
    r = cli("--config", "experiments/generate.py", "--print_config", "--config.seeds=3-4")
    assert r.returncode == 0, r.stderr
    assert '"seeds": "3-4"' in r.stdout and '"truncation_psi"' in r.stdout


def test_missing_config_file_is_one_line(tmp_path):
    line = one_error_line(cli("--config", "experiments/nope.py", "--workdir", str(tmp_path / "o")))
    assert "experiments/nope.py" in line and "does not exist" in line
    assert not (tmp_path / "o").exists()


def test_mistyped_key_suggests_the_right_one(tmp_path):
    line = one_error_line(cli("--config", "experiments/generate.py", "--workdir", str(tmp_path / "o"),
                              "--config.truncaton_psi=0.5"))
    assert line == "error: unknown config key 'truncaton_psi' (did you mean 'truncation_psi'?)"
    line = one_error_line(cli("--config", "experiments/train_stylegan2.py", "--workdir", str(tmp_path / "o"),
                              "--config.model.presett=x"))
    assert line == "error: unknown config key 'model.presett' (did you mean 'model.preset'?)"


def test_bad_value_names_the_key(tmp_path):
    line = one_error_line(cli("--config", "experiments/train_stylegan2.py", "--workdir", str(tmp_path / "o"),
                              "--config.total_kimg=abc"))
    assert "'total_kimg'" in line and "'abc'" in line


def generate_cfg(model, **kw):
    cfg = load_config("generate")
    cfg.checkpoint = str(model)
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def test_class_idx_on_unconditional_model_is_an_error(model_dir, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="class_idx=3 was given but the generator .* is unconditional"):
        run_job(generate_cfg(model_dir, class_idx=3), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # a job failing on its inputs leaves no run directory


def test_generating_from_a_discriminator_is_an_error(model_dir, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="network='D' .* is a discriminator; generation needs a generator"):
        run_job(generate_cfg(model_dir, network="D"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_existing_workdir_is_kept_when_a_job_fails(model_dir, tmp_path):  # noqa: F811
    out = tmp_path / "mine"
    out.mkdir()
    with pytest.raises(ValueError):
        run_job(generate_cfg(model_dir, class_idx=3), str(out))
    assert out.is_dir()


def test_tools_scripts_do_not_shadow_the_stdlib():
    """tools/profile.py must not replace the stdlib `profile` (used by cProfile) for sibling scripts."""
    code = ("import runpy, sys; sys.path.insert(0, 'tools'); sys.argv = ['tools/fid.py', '--help']\n"
            "try:\n    runpy.run_path('tools/fid.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import cProfile; cProfile.Profile; print('stdlib profile ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "stdlib profile ok" in r.stdout, r.stderr[-500:]


def test_generate_from_a_training_run_and_its_checkpoints(tmp_path):
    """--config.checkpoint may name a run directory (newest verified step) or checkpoints/<step>."""
    from test_train import tiny_config

    from gancomp_jax.train.trainer import train

    run = tmp_path / "run"
    train(tiny_config(total_steps=2, checkpoint_every_steps=1, keep_checkpoints=3), run)
    from_model = run_job(generate_cfg(run / "model", seeds="0-1"), str(tmp_path / "from_model"))
    from_run = run_job(generate_cfg(run, seeds="0-1"), str(tmp_path / "from_run"))
    from_step = run_job(generate_cfg(run / "checkpoints" / "2", seeds="0-1"), str(tmp_path / "from_step"))
    early = run_job(generate_cfg(run / "checkpoints" / "1", seeds="0-1"), str(tmp_path / "early"))
    for a, b, c in zip(from_model, from_run, from_step):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()  # the run's G_ema at its last step
    assert any(a.read_bytes() != e.read_bytes() for a, e in zip(from_model, early))  # an earlier step differs
    with pytest.raises(ValueError, match="cannot be used|not a training run|no verified"):
        (run / "checkpoints" / "1" / "checksums.json").write_text("{}")
        run_job(generate_cfg(run / "checkpoints" / "1", seeds="0"), str(tmp_path / "bad"))
