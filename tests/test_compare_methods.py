"""tools/compare_methods.py: same budget for every method, failures recorded, resume, table."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cm():
    spec = importlib.util.spec_from_file_location("compare_methods", REPO / "tools" / "compare_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STUDENTS = {"prune": "/s/prune/model", "prune_dcp": "/s/prune_dcp/model", "svs_init": "/s/svs_init/model"}


def _steps(kimg, batch):
    import math
    return math.ceil(float(kimg) * 1000 / batch)


def test_every_method_gets_the_same_budget_and_its_student(cm):
    from gancomp_jax.jobs import dgl_gan, gan_slimming

    budgets = {}
    for name, (_, kind, student) in cm.METHODS.items():
        c = cm.method_config(name, "/t", STUDENTS, 1.5)
        assert c.method.teacher == "/t"
        assert c.batch_size == 16 and c.data.source == "digits" and c.model.preset == "small32"
        if student is not None:
            assert c.method.student == STUDENTS[student]
        if kind == "train":
            budgets[name] = c.total_kimg
        elif kind == "dgl_gan":
            assert c.method.init == "pruned"
            budgets[name] = sum(dgl_gan.stage_config(c, s, Path("/w")).total_kimg for s in (1, 2))
        else:
            budgets[name] = sum(gan_slimming.stage_config(c, s, Path("/w")).total_kimg for s in (1, 3))
        assert c.total_steps == 0
    assert budgets == pytest.approx({n: 1.5 for n in cm.METHODS})
    # DCP-GAN and SVS are StyleKD fine-tuning of their own students
    assert cm.method_config("svs", "/t", STUDENTS, 1.0).method.name == "stylekd"
    assert cm.method_config("dcp_gan", "/t", STUDENTS, 1.0).method.student == STUDENTS["prune_dcp"]


def test_failures_recorded_finished_methods_skipped_budget_change_refused(cm, tmp_path, monkeypatch):
    calls = []

    def fake_run(name, config, workdir):
        calls.append(name)
        if name == "itgc" and calls.count("itgc") == 1:     # fails the first time only
            raise RuntimeError("energy network exploded\nsecond line")
        return {"model": str(workdir / "model"), "kimg": 1.008, "train_seconds": 3.0}

    monkeypatch.setattr(cm, "run_method", fake_run)
    methods = ["cagc_kd", "itgc"]
    res = cm.train_all(methods, "/t", STUDENTS, tmp_path, 1.0, log=lambda s: None)
    assert calls == methods
    assert res["itgc"] == {"error": "RuntimeError: energy network exploded"}
    assert json.loads((tmp_path / "methods/itgc/FAILED.json").read_text())["error"].startswith("RuntimeError")
    assert res["cagc_kd"]["train_seconds"] == 3.0

    res = cm.train_all(methods, "/t", STUDENTS, tmp_path, 1.0, log=lambda s: None)
    assert calls == methods + ["itgc"]                      # finished one skipped, failed one retried
    assert not (tmp_path / "methods/itgc/FAILED.json").exists()
    assert res["cagc_kd"]["kimg"] == 1.008
    with pytest.raises(ValueError, match="use a new OUT"):
        cm.train_all(methods, "/t", STUDENTS, tmp_path, 2.0, log=lambda s: None)


def test_table_has_report_numbers_times_and_errors(cm):
    def row(name, fid, macs):
        return dict(name=name, model=f"/m/{name}", params=10, macs=macs, compression_rate=1 - macs / 100,
                    images_per_second=50.0, metrics={"fid_digits": fid, "digits_coverage": 0.9,
                                                     "digits_classes_present": 10})
    report_rows = [row("teacher", 1.0, 100), row("pruned", 9.0, 10), row("cagc_kd", 4.0, 10)]
    results = {"cagc_kd": {"model": "/m/cagc_kd", "kimg": 1.008, "train_seconds": 12.3},
               "itgc": {"error": "RuntimeError: boom | bang"}}
    rows = cm.comparison_rows(report_rows, results)
    assert [r["method"] for r in rows] == ["teacher", "pruned", "cagc_kd", "itgc"]
    assert rows[2]["fid_digits"] == 4.0 and rows[2]["train_seconds"] == 12.3
    assert rows[3]["fid_digits"] is None and rows[3]["error"].startswith("RuntimeError")
    md = cm.markdown(rows, 1.0, 500).splitlines()
    assert "| CAGC KD | 4.00 | 0.900 | 10 | 10 | 90.0 % | 50 | 1.01 | 12 |  |" in md
    assert "| ITGC |  |  |  |  |  |  |  |  | RuntimeError: boom / bang |" in md


def test_bad_arguments(cm, capsys, tmp_path):
    assert cm.main([str(tmp_path), "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert cm.main([str(tmp_path), "--kimg", "0"]) == 2
    assert cm.main([str(tmp_path), "--teacher", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_tiny_budget(cm, tmp_path):
    out = tmp_path / "cmp"
    args = [str(out), "--kimg", "0.032", "--num_gen", "64", "--methods", "cagc_kd,dgl_gan",
            "--n_sample", "16", "--dcp_n_sample", "10"]
    assert cm.main(args) == 0
    data = json.loads((out / "compare.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"teacher", "pruned", "cagc_kd", "dgl_gan"}
    for n in ("cagc_kd", "dgl_gan"):
        assert rows[n]["error"] is None and rows[n]["kimg"] == pytest.approx(0.032, abs=0.02)
        assert rows[n]["macs"] == rows["pruned"]["macs"] < rows["teacher"]["macs"]
    assert "| CAGC KD |" in (out / "compare.md").read_text()
