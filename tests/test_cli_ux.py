"""Issue 23 (first contact): usage errors exit 2 with the config's own message, missing models
say "does not exist", the report labels its MAC ratio, a linked checkpoint folder is refused."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_main_usage_errors_exit_2_with_the_configs_own_message():
    """Before: no arguments exited 1 (absl usage text); `nickel_dime.py:digit` printed
    'Error whilst parsing config file:' without the config's message. Now: exit 2, one line."""
    code = ("import sys\n"
            "from gancomp_jax.main import entry\n"
            "for argv in ([], ['--config', 'experiments/nickel_dime.py:digit', '--workdir', 'x']):\n"
            "    sys.argv = ['gancomp_jax.main', *argv]\n"
            "    try:\n"
            "        entry()\n"
            "    except SystemExit as e:\n"
            "        print('EXIT', e.code)\n")
    # one interpreter for both cases (absl parses flags once per process: reset between them)
    r = subprocess.run([sys.executable, "-c", code.replace("        entry()\n", "        from absl import flags\n"
                                                           "        flags.FLAGS.unparse_flags()\n"
                                                           "        entry()\n")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.stdout.split() == ["EXIT", "2", "EXIT", "2"], (r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--config is required" in errors[0]
    assert "unknown nickel_dime variant 'digit'" in errors[1] and "Error whilst parsing" not in errors[1]


def test_compare_methods_missing_teacher_says_does_not_exist(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("compare_methods_tool", REPO / "tools" / "compare_methods.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(tmp_path / "out"), "--teacher", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err, err
    # its output folder (and the quickstart's) is new, empty or an earlier run of ours
    user = tmp_path / "user"
    user.mkdir()
    (user / "compare.md").write_text("mine")
    assert tool.main([str(user), "--methods", "nickel_dime"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compare.md" in err and (user / "compare.md").read_text() == "mine", err
    from gancomp_jax.jobs import quickstart
    from gancomp_jax.utils.atomic_dir import OutputRefused
    with pytest.raises(OutputRefused, match="compare.md"):
        quickstart.run(_experiment("quickstart"), str(user))
    assert sorted(p.name for p in user.iterdir()) == ["compare.md"]


def test_report_labels_the_mac_ratio_and_shows_the_measured_speedup():
    """Issue 23.19: the 'speed-up' column was the MAC ratio (9.54x) while throughput was ~4.7x."""
    from gancomp_jax.jobs.report import markdown_table

    rows = [dict(name="teacher", role="teacher", params=10, macs=100, compression_rate=0.0, mac_ratio=1.0,
                 measured_speedup=1.0, images_per_second=10.0, metrics={}),
            dict(name="s", role="student", params=1, macs=10, compression_rate=0.9, mac_ratio=10.0,
                 measured_speedup=4.7, images_per_second=47.0, metrics={})]
    head, _, teacher, student = markdown_table(rows).splitlines()
    cols = [c.strip() for c in head.strip("|").split("|")]
    cells = [c.strip() for c in student.strip("|").split("|")]
    assert "speed-up" not in cols and cells[cols.index("MAC ratio")] == "10.00×"
    assert cells[cols.index("measured speed-up")] == "4.70×"


def test_linked_checkpoint_folder_is_refused_not_followed(tmp_path):
    """Issue 23 (interrupts): `checkpoints/0` as a symbolic link crashed Orbax's clean-up."""
    from gancomp_jax.train.checkpointing import select_intact

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "state").mkdir(parents=True)
    (elsewhere / "state" / "data.bin").write_bytes(b"1234")
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "0").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=r"checkpoints/0 is a symbolic link"):
        select_intact(ckpts)
    assert (ckpts / "0").is_symlink() and (elsewhere / "state" / "data.bin").read_bytes() == b"1234"
    assert not (tmp_path / "run" / "checkpoints_rejected").exists()


def _experiment(name: str):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", REPO / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()
