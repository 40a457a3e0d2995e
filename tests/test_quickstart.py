"""Quickstart stages: a finished stage is reused only with unchanged settings."""

import json

import pytest

from gancomp_jax.jobs import quickstart
from gancomp_jax.main import run_job
from test_generate import load_config


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    cfg = load_config("init_model")
    cfg.preset = "tiny16"
    path = tmp_path_factory.mktemp("teacher") / "m"
    run_job(cfg, str(path))
    return path


def quickstart_config(teacher, **prune):
    cfg = load_config("quickstart")
    cfg.stages = "prune"
    cfg.teacher_model = str(teacher)
    cfg.prune.n_sample = 4
    cfg.prune.batch_size = 4
    cfg.prune.progress = False
    cfg.prune.grid_seeds = "0-1"
    for k, v in prune.items():
        cfg.prune[k] = v
    return cfg


def test_changed_settings_lists_leaves():
    assert quickstart.changed_settings({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == [
        "a.c: 2 -> 3", "d: '<unset>' -> 0"]


def test_rerun_skips_a_finished_stage_and_refuses_changed_settings(teacher, tmp_path):
    work = tmp_path / "qs"
    first = run_job(quickstart_config(teacher), str(work))
    done = json.loads((work / "prune" / "DONE.json").read_text())
    assert done["settings"]["prune"]["ratio"] == 0.7 and done["result"] == first["prune"]
    stamp = (work / "prune" / "DONE.json").stat().st_mtime_ns
    assert run_job(quickstart_config(teacher), str(work))["prune"] == first["prune"]  # skipped, same result
    assert (work / "prune" / "DONE.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"stage 'prune' .* other settings \(prune.ratio: 0.7 -> 0.5\).*delete"):
        run_job(quickstart_config(teacher, ratio=0.5), str(work))


def test_unknown_stage_and_missing_teacher_are_clear_errors(tmp_path):
    cfg = load_config("quickstart")
    cfg.stages = "prune,distil_magic"
    with pytest.raises(ValueError, match="unknown quickstart stage"):
        run_job(cfg, str(tmp_path / "a"))
    cfg = load_config("quickstart")
    cfg.teacher_model = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        run_job(cfg, str(tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow  # every stage with tiny budgets: a few minutes on 2 cores
def test_whole_pipeline_with_tiny_budgets(tmp_path):
    cfg = load_config("quickstart")
    cfg.prune.n_sample, cfg.prune.batch_size, cfg.prune.progress = 8, 8, False
    cfg.nickel_dime.total_kimg, cfg.nickel_dime.progress = 0.032, False
    cfg.dgl_gan.method.stage1_kimg, cfg.dgl_gan.method.stage2_kimg, cfg.dgl_gan.progress = 0.016, 0.016, False
    cfg.evaluate.num_gen, cfg.evaluate.progress = 64, False
    results = run_job(cfg, str(tmp_path / "qs"))
    assert list(results) == ["prune", "distil_nickel_dime", "distil_dgl_gan", "evaluate"]
    report = json.loads((tmp_path / "qs" / "evaluate" / "report.json").read_text())
    assert [row["name"] for row in report["rows"]] == ["teacher", "pruned", "nickel_dime", "dgl_gan"]
    assert all(row["metrics"]["fid_digits"] > 0 for row in report["rows"])
    assert (tmp_path / "qs" / "evaluate" / "quality_vs_macs.png").is_file()
