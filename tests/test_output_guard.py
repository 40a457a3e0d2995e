"""Issue 23 (outputs): no tool of ours replaces anything that is not ours, interrupted saves leave
nothing behind, stale temporaries are cleaned, every MODEL form we write is read back.

Every data-loss case snapshots the user's files (bytes) and checks them all afterwards. The
tools run in-process (``main(argv)``) to keep the suite fast; they fail before reading any input.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.models import get_preset
from gancomp_jax.utils import atomic_dir
from gancomp_jax.utils.atomic_dir import MARKER, OutputRefused

REPO = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(root: Path) -> dict:
    """Every file and link under ``root``: bytes for files, targets for links."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p)] = p.read_bytes()
    return out


def one_error(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def tiny_networks(seed: int = 0) -> dict:
    g = checkpoints.init_network("generator", get_preset("tiny16").generator, jax.random.key(seed))
    return {"G_ema": g}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "model"
    checkpoints.save_model(path, tiny_networks(), {"source": "test"})
    return path


@pytest.fixture
def user_tree(tmp_path) -> Path:
    """A folder of the user's files, with a weight file and a sub-folder."""
    home = tmp_path / "user"
    (home / "sub").mkdir(parents=True)
    (home / "notes.txt").write_text("precious")
    (home / "weights.pth").write_bytes(b"\x80\x02not really a pickle")
    (home / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return home


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- the guard itself


def test_guard_refuses_everything_that_is_not_ours(tmp_path, user_tree, monkeypatch):
    src = user_tree / "weights.pth"
    link = tmp_path / "link"
    link.symlink_to(user_tree, target_is_directory=True)
    (tmp_path / "shell" / "here").mkdir(parents=True)
    (tmp_path / "shell" / "here" / "todo.txt").write_text("todo")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path / "shell" / "here")
    cases = {
        "user folder": (user_tree / "sub", (), "not ours"),
        "folder holding SRC": (user_tree, (src,), "contains the source"),
        "SRC itself": (src, (src,), "is or contains the source"),
        "cwd": (Path("."), (), "current folder"),
        "parent of cwd": (tmp_path / "shell", (), "current folder"),
        "symlink": (link, (), "symbolic link"),
    }
    for name, (out, sources, msg) in cases.items():
        with pytest.raises(OutputRefused, match=msg):
            atomic_dir.check_output_dir(out, sources, overwrite=True)
        tmp = atomic_dir.temp_dir_beside(tmp_path / "new")
        with pytest.raises(OutputRefused):
            atomic_dir.move_into_place(tmp, out, sources)
        tmp.rmdir()
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_guard_replaces_our_outputs(tmp_path, model_dir):
    marked = tmp_path / "report"
    atomic_dir.write_marker(marked, "report")
    (marked / "report.md").write_text("old")
    atomic_dir.check_output_dir(marked, (), overwrite=True)
    with atomic_dir.writing_dir(marked) as tmp:
        atomic_dir.write_marker(tmp, "report")
        (tmp / "report.md").write_text("new")
    assert (marked / "report.md").read_text() == "new"
    # a model directory of ours is replaced by save_model(overwrite=True) ...
    out = tmp_path / "m"
    checkpoints.save_model(out, tiny_networks(0))
    checkpoints.save_model(out, tiny_networks(1), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "variables"]
    # ... but not once it holds a file of the user's
    (out / "mine.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="mine.txt"):
        checkpoints.save_model(out, tiny_networks(2), overwrite=True)
    assert (out / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "report"]  # no temporaries left


def test_save_converted_overwrite_never_deletes_user_folders(tmp_path, user_tree):
    """Issue 23.1 at its root: save_converted(overwrite=True) (convert_feature_net --overwrite)
    deleted whatever OUT was. Before: the folder replaced, user files gone."""
    from gancomp_jax.nets.weights import load_converted, save_converted

    variables = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    before = snapshot(tmp_path)
    for out, src in ((user_tree / "sub", ""), (user_tree, str(user_tree / "weights.pth"))):
        with pytest.raises(OutputRefused):
            save_converted(out, "vgg16", variables, {}, source=src, overwrite=True)
    assert snapshot(tmp_path) == before
    out = tmp_path / "converted"  # an earlier output of ours is replaced
    save_converted(out, "vgg16", variables, {})
    save_converted(out, "vgg16", {"params": {"w": np.ones((2, 3), np.float32)}}, {}, overwrite=True)
    np.testing.assert_array_equal(load_converted(out, "vgg16", "t")[0]["params"]["w"], np.ones((2, 3)))


def test_stale_temporaries_are_removed_with_one_line(tmp_path, capsys):
    """Issue 23.2: a SIGKILL during the save left .NAME.partial-*, --overwrite through a link .NAME.old-*."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    partial = tmp_path / f".out.partial-{dead_pid()}-abc123"
    (partial / "variables").mkdir(parents=True)
    old = tmp_path / ".out.old-1a2b3c4d"  # the older name form, holding a link to a user folder
    old.symlink_to(outside, target_is_directory=True)
    live = tmp_path / f".out.partial-{os.getpid()}-def456"  # a save of a running process: kept
    live.mkdir()
    other = tmp_path / ".other.partial-1a2b3c4d"  # beside another output: kept
    other.mkdir()
    checkpoints.save_model(tmp_path / "out", tiny_networks())
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "removed 2 stale temporaries" in err, err
    assert not partial.exists() and not old.is_symlink() and (outside / "keep.txt").read_text() == "keep"
    assert live.is_dir() and other.is_dir()


def test_ctrl_c_while_saving_leaves_nothing(tmp_path, model_dir, monkeypatch):
    """Issue 23 (interrupts): SIGINT while the model is written -> KeyboardInterrupt with one message
    afterwards, no .NAME.partial-* left, an existing output unchanged."""
    out = tmp_path / "model"
    checkpoints.save_model(out, tiny_networks(0))
    before = snapshot(tmp_path)
    real = checkpoints._local_checkpointer

    def interrupting():
        ckptr = real()
        save = ckptr.save

        def save_and_interrupt(*a, **k):
            os.kill(os.getpid(), signal.SIGINT)  # arrives while Orbax writes
            return save(*a, **k)
        ckptr.save = save_and_interrupt
        return ckptr
    monkeypatch.setattr(checkpoints, "_local_checkpointer", interrupting)
    with pytest.raises(KeyboardInterrupt, match="not written, nothing was changed"):
        checkpoints.save_model(out, tiny_networks(1), overwrite=True)
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --------------------------------------------------------------------------- every tool


def test_convert_feature_net_overwrite_never_deletes_user_folders(tmp_path, user_tree, monkeypatch, capsys):
    """Issue 23.1: `convert_feature_net.py KIND SRC OUT --overwrite` deleted OUT whatever it was.
    Before: exit 0 and the folder gone; now exit 2 before SRC is read, every file intact."""
    tool = load_tool("convert_feature_net")
    src = user_tree / "weights.pth"
    before = snapshot(tmp_path)
    for out, msg in ((user_tree / "sub", "not ours"), (user_tree, "contains the source"),
                     (src, "is or contains the source"), (Path("."), "current folder")):
        if str(out) == ".":
            monkeypatch.chdir(user_tree / "sub")
        code = tool.main(["vgg16", str(src), str(out), "--overwrite"])
        one_error(code, capsys.readouterr().err, msg)
    link = tmp_path / "out_link"
    link.symlink_to(user_tree / "sub", target_is_directory=True)
    before[str(link)] = ("link", str(user_tree / "sub"))
    one_error(tool.main(["vgg16", str(src), str(link), "--overwrite"]), capsys.readouterr().err, "symbolic link")
    assert snapshot(tmp_path) == before


def test_svs_tool_never_replaces_the_run_folder_or_source(tmp_path, model_dir, capsys):
    """Issue 23: `tools/svs.py X/model X --overwrite` wiped the run folder X (before: exit 0)."""
    run = tmp_path / "run"
    run.mkdir()
    os.system(f"cp -r {model_dir} {run / 'model'}")
    (run / "log.txt").write_text("training log")
    before = snapshot(tmp_path)
    tool = load_tool("svs")
    for dst, msg in ((run, "contains the source"), (run / "model", "is or contains the source")):
        one_error(tool.main([str(run / "model"), str(dst), "--overwrite"]), capsys.readouterr().err, msg)
    assert snapshot(tmp_path) == before


def test_init_model_and_prune_never_replace_user_folders_or_the_teacher(tmp_path, user_tree, model_dir):
    """Issue 23: init_model --config.overwrite=True wiped a user folder; prune with
    --config.teacher=X/model --workdir X --config.overwrite=True replaced the teacher."""
    from gancomp_jax.jobs import init_model, prune
    from gancomp_jax.main import run_job

    cfg = _experiment("init_model")
    cfg.preset, cfg.overwrite = "tiny16", True
    before = snapshot(tmp_path)
    with pytest.raises(OutputRefused, match="not ours"):
        init_model.run(cfg, str(user_tree))
    work = tmp_path / "work"  # an earlier prune workdir of ours, whose model is now the teacher
    atomic_dir.write_marker(work, "prune")
    os.system(f"cp -r {model_dir} {work / 'model'}")
    before = snapshot(tmp_path)
    cfg = prune.default_config()
    cfg.teacher, cfg.ratio, cfg.criterion, cfg.overwrite = str(work / "model"), 0.5, "first", True
    with pytest.raises(OutputRefused, match="is or contains the source"):
        run_job(cfg, str(work))
    (user_tree / "report.md").write_text("my report")
    before = snapshot(tmp_path)
    cfg.teacher = str(model_dir)
    with pytest.raises(OutputRefused, match="report.md"):
        run_job(cfg, str(user_tree))
    assert snapshot(tmp_path) == before


def test_training_refuses_a_folder_of_user_files(tmp_path, user_tree):
    """A training run writes config.json, model/, samples/ ... into its workdir: a folder of other
    files is refused before anything runs (before: config.json and model/ written among them)."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_train import tiny_config

    from gancomp_jax.train.trainer import train

    (user_tree / "config.json").write_text('{"mine": 1}')
    before = snapshot(tmp_path)
    with pytest.raises(OutputRefused, match="config.json"):
        train(tiny_config(total_steps=1), user_tree)
    assert snapshot(tmp_path) == before


def test_report_and_generate_refuse_foreign_workdirs(tmp_path, user_tree, model_dir):
    """Issue 23: report (and prune) silently replaced report.md / grid.png / report.json."""
    from gancomp_jax.jobs.report import make_report
    from gancomp_jax.main import run_job

    (user_tree / "grid.png").write_bytes(b"my picture")
    (user_tree / "report.json").write_text("{}")
    before = snapshot(tmp_path)
    with pytest.raises(OutputRefused, match="grid.png"):
        make_report(str(model_dir), [str(model_dir)], user_tree, metrics="")
    cfg = _experiment("generate")
    cfg.checkpoint = str(model_dir)
    with pytest.raises(OutputRefused, match="grid.png"):
        run_job(cfg, str(user_tree))
    cfg = _experiment("evaluate")
    cfg.model, cfg.metrics = str(model_dir), "fid_digits"
    with pytest.raises(OutputRefused, match="not outputs of gancomp_jax"):
        run_job(cfg, str(user_tree))
    assert snapshot(tmp_path) == before


def test_generate_rerun_with_fewer_seeds_removes_its_old_pngs(tmp_path, model_dir, capsys):
    """Issue 23.17: re-running generate with fewer seeds left old PNGs beside the new grid."""
    from gancomp_jax.main import run_job

    cfg = _experiment("generate")
    cfg.checkpoint, cfg.seeds, cfg.noise_mode = str(model_dir), "0-3", "const"
    run_job(cfg, str(tmp_path / "out"))
    cfg.seeds = "1"
    capsys.readouterr()
    run_job(cfg, str(tmp_path / "out"))
    assert "removed 3 seedNNNN.png of an earlier run" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "grid.png", "seed0001.png"]
    assert json.loads((tmp_path / "out" / MARKER).read_text())["tool"] == "generate"


def test_export_pt_source_inside_out_and_killed_run(tmp_path, model_dir, capsys):
    """Issue 23: `export_pt.py X/rosinality.pt X --overwrite` replaced the source; a killed export
    left an OUT_DIR the same command then refused."""
    tool = load_tool("export_pt")
    out = tmp_path / "exp"
    assert tool.main([str(model_dir), str(out), "--format", "safetensors"]) == 0
    assert (out / MARKER).is_file() and (out / "G_ema.nvlabs.safetensors").is_file()
    (out / "extra.pt").write_bytes(b"user's")
    before = snapshot(tmp_path)
    one_error(tool.main([str(out / "G_ema.nvlabs.safetensors"), str(out), "--overwrite"]),
              capsys.readouterr().err, "contains the source")
    assert snapshot(tmp_path) == before
    # killed midway = a temporary beside OUT_DIR, no OUT_DIR: the same command works and cleans up
    out2 = tmp_path / "exp2"
    (tmp_path / f".exp2.partial-{dead_pid()}-0a0b0c").mkdir()
    assert tool.main([str(model_dir), str(out2), "--format", "safetensors"]) == 0
    assert "removed 1 stale temporary" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    # an earlier export of ours is replaced with --overwrite
    assert tool.main([str(model_dir), str(out2), "--format", "safetensors", "--overwrite"]) == 0


def test_dime_stats_and_fid_save_stats_never_replace_files_or_follow_links(tmp_path, capsys):
    """Issue 23: dime_stats overwrote an existing output; fid.py --save-stats replaced a user's
    stats_out.npz (numpy appends .npz after the exists check) and wrote through a dangling link."""
    dime, fid = load_tool("dime_stats"), load_tool("fid")
    (tmp_path / "stats.npz").write_bytes(b"user stats")
    (tmp_path / "stats_out.npz").write_bytes(b"other user stats")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "dangling.npz").symlink_to(outside / "escaped.npz")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "inception.pth").write_bytes(b"x")
    before = snapshot(tmp_path)
    args = ["--embedders", "clip_rn50", "--source", "data:digits", "--n", "4"]
    one_error(dime.main([str(tmp_path / "stats.npz"), *args]), capsys.readouterr().err, "already exists")
    one_error(dime.main([str(tmp_path / "dangling.npz"), *args]), capsys.readouterr().err, "symbolic link")
    for out, msg in (("stats_out", "already exists"), ("dangling", "symbolic link"),
                     ("dangling.npz", "symbolic link")):
        code = fid.main(["--save-stats", str(tmp_path / "imgs"), str(tmp_path / out),
                         "--inception", str(tmp_path / "inception.pth")])
        one_error(code, capsys.readouterr().err, msg)
    assert snapshot(tmp_path) == before and not (outside / "escaped.npz").exists()


# --------------------------------------------------------------------------- one MODEL resolver


def test_every_output_of_ours_is_a_model(tmp_path, model_dir):
    """Issue 23.16/17: DGL-GAN run dirs, prune workdirs and our .nvlabs.safetensors export are MODELs."""
    from gancomp_jax.export import export_model

    want = checkpoints.load_model(model_dir)["G_ema"]
    dgl = tmp_path / "dgl" / "stage2"
    dgl.mkdir(parents=True)
    os.system(f"cp -r {model_dir} {dgl / 'model'}")
    export_model(model_dir, tmp_path / "exp", formats=("safetensors",))
    for path in (tmp_path / "dgl", dgl, tmp_path / "exp", tmp_path / "exp" / "G_ema.nvlabs.safetensors"):
        got = checkpoints.load_any(path)["G_ema"]
        assert got.config == want.config, path
        for a, b in zip(jax.tree.leaves(got.variables), jax.tree.leaves(want.variables)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoints.load_any(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a gancomp_jax model checkpoint"):
        checkpoints.load_any(tmp_path / "empty")


def _experiment(name: str):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", REPO / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()
