"""tools/compare_methods.py: plateau stopping in a resumable chunked loop, seeds, the same budget
for every method, failures recorded, report.md / report.json / curves.png written from real files."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cm():
    spec = importlib.util.spec_from_file_location("compare_methods", REPO / "tools" / "compare_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STUDENTS = {"prune": "/s/prune/model", "prune_dcp": "/s/prune_dcp/model", "svs_init": "/s/svs_init/model"}


def test_plateau_decision(cm):
    d = cm.plateau_decision
    falling = [[k, 100.0 / k] for k in range(1, 7)]
    assert d(falling, 6, 40, 4, 0.02) is None                       # still improving
    flat = [[1, 100], [2, 50], [3, 49.5], [4, 60], [5, 49.2], [6, 55]]
    assert d(flat, 6, 40, 4, 0.02) == "plateau"                     # 49.2 > 0.98 * 50
    assert d(flat, 6, 40, 4, 0.001) is None                         # 49.2 < 0.999 * 50
    assert d(flat[:4], 4, 40, 4, 0.02) is None                      # not enough evaluations yet
    assert d(falling, 40, 40, 4, 0.02) == "cap"
    assert d([], 8, 40, 4, 0.02) is None and d([], 40, 40, 4, 0.02) == "cap"
    assert d(flat, 6, 40, 0, 0.02) is None                          # patience 0: cap only


def test_every_method_gets_the_same_budget_seed_and_its_student(cm):
    from gancomp_jax.jobs import dgl_gan, gan_slimming

    cap, chunk = 10.0, 3.0
    for name, (_, kind, student) in cm.METHODS.items():
        c = cm.method_config(name, "/t", STUDENTS, seed=1, ratio=0.9, eval_every_kimg=2, eval_num_gen=300, cap=cap)
        assert c.method.teacher == "/t" and c.seed == 1
        assert c.batch_size == 16 and c.data.source == "digits" and c.model.preset == "small32"
        assert c.eval.every_kimg == 2 and c.eval.num_gen == 300 and c.eval.best_metric == "fid_digits"
        assert c.eval.hooks == ("gancomp_jax.metrics.hook:make_hook",)
        if student is not None:
            assert c.method.student == STUDENTS[student]
        pre = cm.pre_kimg(name, c)
        targets = cm.chunk_targets(pre, cap, chunk)
        assert targets[-1] == cap and all(b > a for a, b in zip(targets, targets[1:]))
        if kind == "train":
            assert pre == 0 and targets == [3.0, 6.0, 9.0, 10.0]
        else:   # the fixed first stage: its share of the cap, then the last stage up to the cap
            assert pre == pytest.approx(cm.kimg_of(cap * cm.PRE_SPLIT[name], 16))
            job, last = (dgl_gan, 2) if kind == "dgl_gan" else (gan_slimming, 3)
            c.method["stage2_kimg" if last == 2 else "stage3_kimg"] = cap - pre
            total = sum(job.stage_config(c, s, Path("/w")).total_kimg for s in (1, last))
            assert total == pytest.approx(cap, abs=0.02)
        if kind == "gan_slimming":
            assert c.prune.ratio == 0.9
    assert cm.method_config("svs", "/t", STUDENTS).method.name == "stylekd"
    assert cm.method_config("dcp_gan", "/t", STUDENTS).method.student == STUDENTS["prune_dcp"]
    runs = cm.plan_runs(["itgc", "svs", "cagc_kd"], [0.7, 0.9], [0, 1])
    assert runs == [("itgc", 0.7, 0), ("svs", 0.7, 0), ("cagc_kd", 0.7, 0), ("itgc", 0.7, 1), ("svs", 0.7, 1),
                    ("cagc_kd", 0.7, 1), ("svs", 0.9, 0), ("cagc_kd", 0.9, 0), ("svs", 0.9, 1), ("cagc_kd", 0.9, 1)]


def _fid(seed, kimg):  # falls until 6 kimg (seed 0) / 8 kimg (seed 1), then flat with noise
    knee = 6 if seed == 0 else 8
    return 40.0 + 200.0 / min(kimg, knee) + (0.3 if int(kimg) % 2 else 0.0) + seed


class FakeTrainer:
    """Stands in for train_chunk: writes the metrics.jsonl a trainer run with the eval hook
    writes (one Eval/fid_digits record per eval interval, records after a resume appended), and
    can be told to be interrupted before a given chunk or to fail once."""

    def __init__(self, every=1.0, interrupt_at=None, fail_once=()):
        self.calls, self.every, self.interrupt_at, self.fail_once = [], every, interrupt_at, set(fail_once)

    def __call__(self, name, config, workdir, target):
        key = (name, int(config.seed))
        if key in self.fail_once:
            self.fail_once.discard(key)
            raise RuntimeError("energy network exploded\nsecond line")
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        self.calls.append((name, int(config.seed), target))
        B = int(config.batch_size)
        path = Path(workdir) / "metrics.jsonl"
        done = 0
        if path.is_file():
            done = max(json.loads(l)["step"] for l in path.read_text().splitlines())
        total = math.ceil(target * 1000 / B)
        with open(path, "a") as f:
            for step in range(done + 1, total + 1):
                if int(step * B / (self.every * 1000)) > int((step - 1) * B / (self.every * 1000)):
                    f.write(json.dumps({"step": step, "Eval/fid_digits": _fid(int(config.seed), step * B / 1000)}) + "\n")
                if step % 50 == 0:
                    f.write(json.dumps({"step": step, "Loss/G": 1.0}) + "\n")
        (Path(workdir) / "model").mkdir(exist_ok=True)
        return {"model": str(Path(workdir) / "model"), "metrics": str(path), "offset_kimg": 0.0, "batch": B}


def test_chunked_plateau_loop_seeds_resume_and_failures(cm, tmp_path):
    runs = [("cagc_kd", 0.7, 0), ("cagc_kd", 0.7, 1), ("itgc", 0.7, 0)]
    kw = dict(caps={m: 20.0 for m in cm.METHODS}, chunk=2.0, eval_every=1.0, eval_num_gen=100, patience=3,
              tol=0.02, progress=False, log=lambda s: None)
    students = {0.7: STUDENTS}
    fake = FakeTrainer(interrupt_at=3, fail_once=[("itgc", 0)])
    with pytest.raises(KeyboardInterrupt):
        cm.train_all(runs, "/t", students, tmp_path, runner=fake, **kw)
    st = json.loads((tmp_path / "runs/cagc_kd@0.7/seed0/state.json").read_text())
    assert len(st["chunks"]) == 3 and not st["done"]                 # interrupted before chunk 4

    res = cm.train_all(runs, "/t", students, tmp_path, runner=fake, **kw)
    s0, s1 = res[("cagc_kd", 0.7, 0)], res[("cagc_kd", 0.7, 1)]
    # resumed at chunk 4 (target 8 kimg), not from scratch
    assert [t for n, s, t in fake.calls if (n, s) == ("cagc_kd", 0)] == [2.0, 4.0, 6.0, 8.0, 10.0]
    # seed 0 improves until 6 kimg: at 8 kimg the best of evaluations 6-8 is 9 % below the best of 1-5
    # (go on); at 10 kimg the best of 8-10 equals the best of 1-7 (plateau)
    assert s0["done"] and s0["stop"] == "plateau" and s0["kimg"] == pytest.approx(10.0)
    assert s1["done"] and s1["stop"] == "plateau" and s1["kimg"] == pytest.approx(12.0)   # later knee
    assert [k for k, _ in s0["curve"]] == pytest.approx([float(k) for k in range(1, 11)], abs=0.01)   # one per kimg (63 steps of 16 = 1.008)
    assert s0["curve"][5][1] == pytest.approx(_fid(0, 6.0))
    assert s1["settings"]["seed"] == 1 and s1["curve"][0][1] == pytest.approx(_fid(1, 1.008))
    assert res[("itgc", 0.7, 0)] == {"error": "RuntimeError: energy network exploded"}
    assert "error" in json.loads((tmp_path / "runs/itgc@0.7/seed0/state.json").read_text())

    n = len(fake.calls)
    res = cm.train_all(runs, "/t", students, tmp_path, runner=fake, **kw)
    assert {(n_, s) for n_, s, _ in fake.calls[n:]} == {("itgc", 0)}   # finished runs skipped, failed retried
    assert res[("itgc", 0.7, 0)]["stop"] == "plateau" and "error" not in res[("itgc", 0.7, 0)]
    assert res[("cagc_kd", 0.7, 0)] == s0
    with pytest.raises(ValueError, match="use a new OUT"):                 # another schedule: refused
        cm.train_all(runs, "/t", students, tmp_path, runner=fake, **{**kw, "patience": 5})


def test_raising_the_cap_continues_runs_stopped_at_it(cm, tmp_path):
    """--kimg_cap raised on the same OUT: cap stops go on from their last chunk, plateau stops
    stay, a lower cap is refused; a chained method keeps its first cap's fixed-stage length."""
    runs = [("cagc_kd", 0.7, 0), ("cagc_kd", 0.7, 1)]
    kw = dict(chunk=2.0, eval_every=1.0, eval_num_gen=100, patience=3, tol=0.02, progress=False,
              log=lambda s: None)
    fake = FakeTrainer()
    res = cm.train_all(runs, "/t", {0.7: STUDENTS}, tmp_path, runner=fake, caps={m: 9.0 for m in cm.METHODS}, **kw)
    assert res[("cagc_kd", 0.7, 0)]["stop"] == "plateau"        # knee at 6 kimg: plateau at 9
    assert res[("cagc_kd", 0.7, 1)]["stop"] == "cap"            # knee at 8 kimg: capped at 9
    assert [t for n, s, t in fake.calls if s == 1] == [2.0, 4.0, 6.0, 8.0, 9.0]
    n = len(fake.calls)
    res = cm.train_all(runs, "/t", {0.7: STUDENTS}, tmp_path, runner=fake, caps={m: 20.0 for m in cm.METHODS}, **kw)
    assert [(s, t) for _, s, t in fake.calls[n:]] == [(1, 10.0), (1, 12.0)]   # seed 1 goes on to its plateau
    s1 = res[("cagc_kd", 0.7, 1)]
    assert s1["stop"] == "plateau" and s1["kimg"] == pytest.approx(12.0) and s1["settings"]["cap_kimg"] == 20.0
    assert s1["settings"]["split_cap_kimg"] == 9.0
    assert [k for k, _ in s1["curve"]] == pytest.approx([float(k) for k in range(1, 13)], abs=0.02)
    with pytest.raises(ValueError, match="lower cap"):
        cm.train_all(runs, "/t", {0.7: STUDENTS}, tmp_path, runner=fake, caps={m: 15.0 for m in cm.METHODS}, **kw)
    # DGL-GAN's stage 1 is 2/5 of the cap the run started with, also after the cap is raised
    prev = {"settings": {"cap_kimg": 40.0}, "stop": "cap"}
    assert cm.split_cap(prev, 80.0) == 40.0 and cm.extends(prev, 80.0) and not cm.extends(prev, 40.0)
    c = cm.method_config("dgl_gan", "/t", STUDENTS, cap=cm.split_cap(prev, 80.0))
    assert c.method.stage1_kimg == pytest.approx(16.0)
    assert cm.chunk_targets(cm.pre_kimg("dgl_gan", c), 80.0, 8.0)[:3] == cm.chunk_targets(
        cm.pre_kimg("dgl_gan", c), 40.0, 8.0)


def _png_size(path):
    from PIL import Image
    with Image.open(path) as im:
        return im.size, np.asarray(im.convert("RGB"))


def test_report_and_curves_written_from_run_states(cm, tmp_path):
    def row(name, fid, macs):
        return dict(name=name, model=f"/m/{name}", params=10, macs=macs, compression_rate=1 - macs / 100,
                    images_per_second=50.0, metrics={"fid_digits": fid, "digits_coverage": 0.9})
    report_rows = [row("teacher", 17.0, 100), row("pruned@0.7", 900.0, 10), row("cagc_kd@0.7/s0", 40.0, 10),
                   row("cagc_kd@0.7/s1", 50.0, 10)]
    st = lambda seed, curve, stop: {"curve": curve, "kimg": curve[-1][0], "stop": stop, "train_seconds": 100.0,
                                    "model": f"/m/cagc_kd@0.7/s{seed}"}
    results = {("cagc_kd", 0.7, 0): st(0, [[2, 90.0], [4, 60.0], [6, 41.0]], "plateau"),
               ("cagc_kd", 0.7, 1): st(1, [[2, 110.0], [4, 70.0]], "cap"),
               ("itgc", 0.7, 0): {"error": "RuntimeError: boom | bang"}}
    rows = cm.aggregate(report_rows, results, {"pruned@0.7": "/s"})
    by = {r["label"]: r for r in rows}
    c = by["CAGC KD"]
    assert (c["fid_mean"], c["fid_min"], c["fid_max"]) == (45.0, 40.0, 50.0) and c["seeds"] == [0, 1]
    assert by["ITGC"]["errors"] == {0: "RuntimeError: boom | bang"} and by["ITGC"]["fid_mean"] is None
    assert cm._mean_band(c["curves"]) == ([2, 4, 6], [100.0, 65.0, 41.0], [90.0, 60.0, 41.0], [110.0, 70.0, 41.0])
    info = dict(num_gen=500, seeds=[0, 1], ratios=[0.7], chunk_kimg=2.0, caps={"cagc_kd": 20}, caps_text="cagc_kd 20",
                eval_every_kimg=2.0, eval_num_gen=100, patience=3, plateau_tol=0.02)
    cm.write_outputs(tmp_path, rows, info)
    md = (tmp_path / "report.md").read_text().splitlines()
    assert ("| CAGC KD | 0.7 | 45.00 [40.00, 50.00] | s0: 40.00, s1: 50.00 | 0.900 | 10 | 90.0 % | "
            "6.0 (plateau), 4.0 (cap) | 55.50 | 200 |  |") in md
    assert "| ITGC | 0.7 |  |  |  |  |  |  |  |  | s0: RuntimeError: boom / bang |" in md
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["rows"][2]["per_seed"]["0"]["fid"] == 40.0 and data["patience"] == 3
    for name in ("curves.png", "quality_vs_macs.png"):
        (w, h), px = _png_size(tmp_path / name)
        assert w > 500 and h > 400 and px.std() > 5      # a drawn figure, not a blank canvas


def test_bad_arguments(cm, capsys, tmp_path):
    assert cm.main([str(tmp_path), "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert cm.main([str(tmp_path), "--kimg_cap", "0"]) == 2
    assert cm.main([str(tmp_path), "--ratios", "0.7,1.5"]) == 2
    assert cm.main([str(tmp_path), "--caps", "itgc=-1"]) == 2
    assert cm.main([str(tmp_path), "--seeds", "a"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert cm.main([str(tmp_path), "--teacher", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert cm.main([str(tmp_path / "other"), "--methods", "cagc_kd"]) == 2      # a folder of other files
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_end_to_end_tiny_budget(cm, tmp_path):
    """Real pruning, two chunks of real training with the eval hook, report (a few minutes on 2 cores)."""
    out = tmp_path / "cmp"
    args = [str(out), "--kimg_cap", "0.064", "--chunk_kimg", "0.032", "--eval_every_kimg", "0.032",
            "--eval_num_gen", "64", "--num_gen", "64", "--methods", "cagc_kd,dgl_gan", "--seeds", "0,1",
            "--ratios", "0.7", "--n_sample", "16", "--no_progress"]
    assert cm.main(args) == 0
    data = json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in data["rows"]}
    for n in ("CAGC KD", "DGL-GAN"):
        r = rows[n]
        assert r["errors"] == {} and r["seeds"] == [0, 1]
        assert r["macs"] == rows["pruned@0.7 (untrained)"]["macs"] < rows["teacher"]["macs"]
        for p in r["per_seed"].values():
            assert p["kimg"] == pytest.approx(0.064, abs=0.02) and p["stop"] == "cap"
    st = json.loads((out / "runs/cagc_kd@0.7/seed1/state.json").read_text())
    assert len(st["chunks"]) == 2 and len(st["curve"]) == 2            # eval hook logged after each chunk
    assert (out / "curves.png").is_file() and (out / "report" / "grid.png").is_file()
    assert cm.main(args) == 0                                           # everything finished: skipped
