"""tools/device_check.py: the correctness part reproduces the committed CPU references, the
comparison catches wrong numbers, the CLI refuses bad inputs, and (slow) the whole --tiny run."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gancomp_jax.accel import device_check as dc

REPO = dc.REFERENCE.parents[2]


def test_forward_reproduces_reference(tmp_path):
    ref, meta = dc.load_reference()
    assert meta["backend"] == "cpu" and meta["matmul_precision"] == "highest"
    got = dc.correctness_outputs(tmp_path, parts=("fwd",))
    rows = dc.compare(got, ref, parts=("fwd",))
    assert {r["name"] for r in rows} == {k for k in ref if k.split("/")[0] in ("init", "fwd")}
    bad = [r for r in rows if not r["passed"]]
    assert not bad, bad


def test_compare_flags_wrong_values():
    ref, _ = dc.load_reference()
    got = {k: v.copy() for k, v in ref.items()}
    assert all(r["passed"] for r in dc.compare(got, ref))
    # an error the size of a bfloat16 rounding in the image, a loss off by 1 %, one gradient leaf
    # sign-flipped, an initialiser change: each is caught, nothing else is
    got["fwd/G_img"] = got["fwd/G_img"] * (1 + 4e-3)
    got["teacher/loss/Dmain/D/loss"] = got["teacher/loss/Dmain/D/loss"] * 1.01
    proj = got["nickel/grad_proj/Gmain/G_S"].copy()
    proj[3] = -proj[3] if abs(proj[3]) > 1e-2 * got["nickel/grad_norm/Gmain/G_S"][3] else proj[3] + \
        0.1 * got["nickel/grad_norm/Gmain/G_S"][3]
    got["nickel/grad_proj/Gmain/G_S"] = proj
    got["init/D"] = got["init/D"] * 1.001
    del got["nickel/loss/Dreg/D/reg_loss"]
    failed = {r["name"] for r in dc.compare(got, ref) if not r["passed"]}
    assert failed == {"fwd/G_img", "teacher/loss/Dmain/D/loss", "nickel/grad_proj/Gmain/G_S", "init/D",
                      "nickel/loss/Dreg/D/reg_loss"}


def test_cli_refuses_bad_inputs(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert dc.main(["--tiny", "--out", str(foreign)]) == 2
    assert "not an output of gancomp_jax" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    assert dc.main(["--tiny", "--out", str(tmp_path / "o"), "--parts", "fwd,gpu"]) == 2
    assert dc.main(["--tiny", "--out", str(tmp_path / "o"), "--nvlabs", str(tmp_path)]) == 2
    assert "not an NVlabs stylegan2-ada-pytorch checkout" in capsys.readouterr().err
    assert dc.main(["--tiny", "--out", str(tmp_path / "o"), "--reference", str(tmp_path / "none.npz")]) == 2
    assert not (tmp_path / "o").exists()


def test_cli_forward_only_writes_report(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # an empty folder (as $OUT on a lent machine) is accepted
    assert dc.main(["--tiny", "--out", str(out), "--parts", "fwd", "--correctness_only"]) == 0
    result = json.loads((out / "device_check.json").read_text())
    assert result["correctness_passed"] and result["benchmarks"] == []
    md = (out / "device_check.md").read_text()
    assert "| fwd/G_img |" in md and "correctness: PASSED" in md
    assert json.loads((out / ".gancomp_jax_output.json").read_text())["tool"] == "device_check"
    # a second run into its own previous output is allowed
    assert dc.main(["--tiny", "--out", str(out), "--parts", "fwd", "--correctness_only"]) == 0


def test_peak_table():
    assert dc.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == pytest.approx(989.4)
    assert dc.peak_tflops("TPU v5 lite", "bfloat16") == pytest.approx(197.0)
    assert dc.peak_tflops("cpu", "float32") is None


def test_tiny_cli_one_step_of_each_method_and_one_figure(tmp_path):
    """The real command line with --tiny, cut to what fits the default suite: G / D forward,
    one plain training step (Gmain, Dmain) of StyleGAN2 and of NICKEL & DiME against the
    committed references, and one benchmark figure."""
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "device_check.py"), "--tiny", "--out", str(out),
                        "--phases", "Gmain,Dmain", "--figures", "G b4 fp32"],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((out / "device_check.json").read_text())
    assert result["correctness_passed"] and result["correctness_phases"] == ["Gmain", "Dmain"]
    ref, _ = dc.load_reference()
    want = {k for k in ref if k.split("/")[0] in ("init", "fwd") or k.split("/")[2] in ("Gmain", "Dmain")}
    names = {row["name"] for row in result["correctness"]}
    assert names == want and any(n.startswith("nickel/grad_proj/Gmain/") for n in names)
    assert any(n.startswith("teacher/loss/Dmain/") for n in names)
    [fig] = result["benchmarks"]
    assert fig["label"] == "G b4 fp32" and fig["img_per_s"] > 0 and fig["compile_s"] > 0
    assert "| tiny16 G inference | 4 | float32 |" in (out / "device_check.md").read_text()


def test_cli_refuses_unknown_phase_or_figure(tmp_path, capsys):
    assert dc.main(["--tiny", "--out", str(tmp_path / "o"), "--phases", "Gmain,Gfoo"]) == 2
    assert "--phases" in capsys.readouterr().err
    assert dc.main(["--tiny", "--out", str(tmp_path / "o"), "--figures", "G b32 fp32"]) == 2
    assert "unknown figure(s) 'G b32 fp32'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_tiny_mode_end_to_end(tmp_path):
    """The command a device session runs, with tiny configs on this CPU (several minutes)."""
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "device_check.py"), "--tiny", "--out", str(out)],
                       capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((out / "device_check.json").read_text())
    assert result["correctness_passed"]
    assert len(result["correctness"]) == len(dc.load_reference()[0])
    figures = {b["label"]: b for b in result["benchmarks"]}
    assert len(figures) == 16 and not [b for b in figures.values() if "error" in b or "skipped" in b]
    for b in figures.values():
        assert b["img_per_s"] > 0 and b["compile_s"] > 0 and np.isfinite(b["flops_xla"])
    nd = figures["NICKEL & DiME b8 bf16"]
    assert set(nd["phases"]) == {"Gmain", "Greg", "Dmain", "Dreg", "ema"} and "random weights" in nd["note"]
    assert "| tiny16 G inference | 8 | bfloat16 |" in (out / "device_check.md").read_text()
