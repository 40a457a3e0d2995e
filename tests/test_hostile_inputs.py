"""Hostile and odd inputs to the feature-network converter, tools/fid.py and the DiME statistics
loader (issue 23): bounded time and memory, one `error:` line, exit 2, nothing written.

Every hostile file is built here, small (sparse files and repeated deflate blocks stand in for
the large ones). The cases of one surface run in ONE subprocess (``_DRIVER``: it calls the
tool's ``main(argv)`` once per case, capturing its stdout and stderr), so that the default
suite pays one interpreter and one JAX import per surface; that subprocess's peak RSS (all
cases together) must stay under 1.5 GB and each case under 30 s. One case per surface also
runs as a plain command line (real process stderr, exit code). Checks per case: exit code 2,
exactly one stderr line starting ``error:`` that names the problem, no stdout, no code run
(marker), nothing in or beside the output. Run with ``-s`` to see times and memory.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_hostile_files import _MEASURE, PEAK_RSS_LIMIT_KB, TIME_LIMIT_S, dumps, tensor, torch_zip, write_zip, zip_storage

REPO = Path(__file__).resolve().parents[1]

# Calls a tool's main(argv) for each case of a JSON plan; writes code, stdout, stderr, seconds per case.
_DRIVER = r"""
import contextlib, importlib.util, io, json, sys, time
plan = json.load(open(sys.argv[1]))
spec = importlib.util.spec_from_file_location("tool_under_test", plan["tool"])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
results = []
for case in plan["cases"]:
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = tool.main(case["argv"])
        except SystemExit as e:
            code = e.code
        except BaseException as e:  # a traceback would be a failure: record it
            code = "raised " + type(e).__name__ + ": " + str(e)[:300]
    results.append(dict(name=case["name"], code=code, stdout=out.getvalue(), stderr=err.getvalue(),
                        seconds=time.monotonic() - start))
json.dump(results, open(sys.argv[2], "w"))
"""


def _measured(command: list[str], logs: Path, timeout: float) -> tuple[int, str, str, float, int]:
    """Runs ``command`` under ``_MEASURE``; (exit code, stdout, stderr, seconds, peak RSS KB)."""
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    with open(logs / "stdout", "wb") as stdout, open(logs / "stderr", "wb") as stderr:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _MEASURE, str(logs / "rss"), *command], cwd=REPO, env=env,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        watchdog = threading.Timer(timeout, os.killpg, (proc.pid, 9))
        watchdog.start()
        try:
            code = proc.wait()
        finally:
            watchdog.cancel()
        seconds = time.monotonic() - start
    rss = logs / "rss"
    return (code, (logs / "stdout").read_text(), (logs / "stderr").read_text(), seconds,
            int(rss.read_text()) if rss.exists() else -1)


def run_cases(tool: str, cases: list[dict], tmp: Path) -> dict[str, dict]:
    """Runs every case in one subprocess; asserts its peak RSS and that it printed nothing itself."""
    tmp.mkdir(parents=True, exist_ok=True)
    plan = tmp / "plan.json"
    plan.write_text(json.dumps({"tool": str(REPO / "tools" / tool), "cases": cases}))
    result = tmp / "results.json"
    timeout = 60 + TIME_LIMIT_S * len(cases)
    code, stdout, stderr, seconds, peak_kb = _measured([sys.executable, "-c", _DRIVER, str(plan), str(result)],
                                                       tmp / "logs", timeout)
    print(f"\n{tool}: {len(cases)} cases in one process, {seconds:.1f} s, peak RSS {peak_kb / 1024:.0f} MiB")
    assert code == 0 and result.exists(), f"driver failed ({code}): {stderr[-2000:]}"
    assert not stdout.strip() and not stderr.strip(), (stdout[-1000:], stderr[-1000:])
    assert 0 < peak_kb < PEAK_RSS_LIMIT_KB, f"peak RSS {peak_kb} KB"
    return {r["name"]: r for r in json.loads(result.read_text())}


def check_refused(r: dict, fragments: tuple[str, ...]) -> None:
    print(f"  {r['name']}: exit {r['code']}, {r['seconds']:.2f} s: {r['stderr'].strip()[:160]}")
    assert r["seconds"] < TIME_LIMIT_S, r
    assert r["code"] == 2, r
    lines = r["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r["stderr"]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in r["stderr"] and "DecompressionBomb" not in r["stderr"]
    assert not r["stdout"].strip(), r["stdout"]


def check_cli(command: list[str], tmp: Path, fragment: str) -> None:
    code, stdout, stderr, seconds, peak_kb = _measured(command, tmp / "cli_logs", 60.0)
    print(f"\n  command line: exit {code}, {seconds:.1f} s, peak RSS {peak_kb / 1024:.0f} MiB: {stderr.strip()[:160]}")
    assert seconds < TIME_LIMIT_S and 0 < peak_kb < PEAK_RSS_LIMIT_KB
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], stderr
    assert not stdout.strip()


def deflated_zeros(total: int, chunk: int = 1 << 24) -> tuple[bytes, int]:
    """Raw-deflate data of ``total`` zero bytes (a multiple of ``chunk``) built from one repeated block."""
    zeros = bytes(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    steady = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(total // chunk):
        crc = zlib.crc32(zeros, crc)
    return first + steady * (total // chunk - 1) + compressor.flush(), crc


def npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def npz_claiming(path: Path, name: str, dtype: str, shape: tuple[int, ...], extra: dict | None = None) -> Path:
    """An .npz whose member ``name`` has a header claiming ``shape`` but (almost) no data."""
    members = [(f"{name}.npy", npy_header(dtype, shape) + bytes(64))]
    for key, value in (extra or {}).items():
        members.append((f"{key}.npy", npy_header(value.dtype.str, value.shape) + value.tobytes()))
    return write_zip(path, members)


def npz_deflate_bomb(path: Path, name: str, dtype: str, shape: tuple[int, ...], total: int) -> Path:
    """An .npz whose member ``name`` inflates to ``total`` bytes (header claiming ``shape``)."""
    header = npy_header(dtype, shape)
    data, _ = deflated_zeros(total)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH) + data
    crc = zlib.crc32(bytes(total), zlib.crc32(header)) if total <= 1 << 24 else 0
    return write_zip(path, [(f"{name}.npy", deflated, 8, crc, len(header) + total)])


def png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` (its data is a few rows only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress((b"\0" + bytes(3 * min(width, 4096))) * 4, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- A. convert_feature_net.py
RN50 = (3, 4, 6, 3)


def resnet_keys(layers=RN50, clip: bool = False) -> dict[str, np.ndarray]:
    """Every tensor name of a (CLIP) ResNet-50 with 1-element stand-ins (the architecture is read off the
    names and a few shapes before any other shape is looked at)."""
    tiny = np.zeros(1, np.float32)
    state: dict[str, np.ndarray] = {}
    stem = ["conv1", "conv2", "conv3"] if clip else ["conv1"]
    for i, conv in enumerate(stem, 1):
        state[f"{conv}.weight"] = tiny
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            state[f"bn{i}.{leaf}"] = tiny
    for stage, blocks in enumerate(layers, 1):
        for b in range(blocks):
            for conv in ("conv1", "conv2", "conv3"):
                state[f"layer{stage}.{b}.{conv}.weight"] = tiny
            if b == 0:
                state[f"layer{stage}.{b}.downsample.0.weight"] = tiny
    if clip:
        state["conv3.weight"] = np.zeros((64, 32, 3, 3), np.float16)
        state["attnpool.positional_embedding"] = np.zeros((50, 2048), np.float16)
        state["attnpool.c_proj.weight"] = np.zeros((1024, 1), np.float16)
    else:
        state["conv1.weight"] = np.zeros((64, 3, 7, 7), np.float16)
    return state


def safetensors_file(path: Path, state: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    save_file(state, str(path))
    return path


def hf_dir(path: Path, config: object, raw: str | None = None) -> Path:
    """A Hugging Face model directory: ``config.json`` and a stand-in ``model.safetensors`` (so that a
    reader that does not check the config first goes on to build the network it declares)."""
    path.mkdir()
    (path / "config.json").write_text(raw if raw is not None else json.dumps(config))
    safetensors_file(path / "model.safetensors", {"stand_in": np.zeros(1, np.float32)})
    return path


VIT = dict(model_type="vit", hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
           patch_size=16, image_size=224, hidden_act="gelu", layer_norm_eps=1e-12)
DINOV2 = dict(model_type="dinov2", hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
              patch_size=14, image_size=518, hidden_act="gelu", layer_norm_eps=1e-6, layerscale_value=1.0)


def convert_cases(src: Path) -> list[tuple[str, str, Path, list[str], tuple[str, ...]]]:
    """(name, kind, SRC, extra args, fragments of the error line)."""
    cases = []

    def add(name, kind, path, args=(), fragments=()):
        cases.append((name, kind, path, list(args), tuple(fragments)))

    extra = resnet_keys()
    extra["layer1.300000.conv1.weight"] = np.zeros(1, np.float32)
    add("dino_extra_block", "dino_rn50", safetensors_file(src / "extra.safetensors", extra),
        fragments=("layer1.300000.conv1.weight",))
    missing = {k: v for k, v in resnet_keys().items() if not k.startswith("layer1.2.")}
    add("dino_missing_block", "dino_rn50", safetensors_file(src / "missing.safetensors", missing),
        fragments=("layer1.2.conv1.weight",))
    clip_missing = {k: v for k, v in resnet_keys(clip=True).items() if not k.startswith("layer2.3.")}
    add("clip_missing_block", "clip_rn50", safetensors_file(src / "clip_missing.safetensors", clip_missing),
        fragments=("layer2.3.conv1.weight",))
    clip_extra = resnet_keys(clip=True)
    clip_extra["layer4.3.conv1.weight"] = np.zeros(1, np.float32)
    add("clip_extra_block", "clip_rn50", safetensors_file(src / "clip_extra.safetensors", clip_extra),
        fragments=("layer4.3.conv1.weight",))
    scalar = resnet_keys()
    scalar["conv1.weight"] = np.zeros((), np.float32)
    add("dino_conv1_0d", "dino_rn50", safetensors_file(src / "scalar.safetensors", scalar),
        fragments=("conv1.weight", "shape ()"))
    width0 = resnet_keys()
    width0["conv1.weight"] = np.zeros((0, 3, 7, 7), np.float32)
    add("dino_width_0", "dino_rn50", safetensors_file(src / "width0.safetensors", width0), fragments=("width 0",))
    pos = resnet_keys(clip=True)
    pos["attnpool.positional_embedding"] = np.zeros((1000 * 1000 + 1, 1), np.uint8)  # image size 32000
    add("clip_pos_32000", "clip_rn50", safetensors_file(src / "pos.safetensors", pos),
        fragments=("positional_embedding", "1000001"))
    fifo = src / "fifo.pth"
    os.mkfifo(fifo)
    add("fifo_src", "dino_rn50", fifo, fragments=("FIFO", str(fifo)))
    add("vit_layers_100000", "dino_vit", hf_dir(src / "layers", {**VIT, "num_hidden_layers": 100000}),
        fragments=("num_hidden_layers", "100000"))
    add("vit_patch_0", "dino_vit", hf_dir(src / "patch0", {**VIT, "patch_size": 0}), fragments=("patch_size",))
    add("vit_heads_0", "dino_vit", hf_dir(src / "heads0", {**VIT, "num_attention_heads": 0}),
        fragments=("num_attention_heads",))
    add("vit_hidden_act_evil", "dino_vit", hf_dir(src / "act", {**VIT, "hidden_act": "evil"}),
        fragments=("hidden_act", "'evil'"))
    add("clip_vit_width_string", "clip_vit",
        hf_dir(src / "clipw", {"model_type": "clip_vision_model", "hidden_size": "wide"}), fragments=("config.json",))
    add("config_list", "dino_vit", hf_dir(src / "list", None, raw="[1, 2, 3]"), fragments=("JSON list",))
    add("config_nested", "dino_vit", hf_dir(src / "nested", None, raw="[" * 100_000 + "]" * 100_000),
        fragments=("nests",))
    big = hf_dir(src / "big", None, raw="")
    with open(big / "config.json", "wb") as f:  # a sparse 400 MB file: refused from its size
        f.truncate(400 << 20)
    add("config_400MB", "dino_vit", big, fragments=("419,430,400 bytes",))
    fifo_dir = src / "fifo_config"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "config.json")
    add("config_fifo", "dino_vit", fifo_dir, fragments=("FIFO", "config.json"))
    add("dinov2_layerscale_0", "dinov2", hf_dir(src / "ls0", {**DINOV2, "layerscale_value": 0}),
        fragments=("layerscale_value",))
    add("dinov2_layerscale_1e-30", "dinov2", hf_dir(src / "ls30", {**DINOV2, "layerscale_value": 1e-30}),
        fragments=("layerscale_value",))
    vit_ok = hf_dir(src / "vit_ok", VIT)  # a valid config without weights: image_size is checked first
    add("arg_image_size_0", "dino_vit", vit_ok, ["--arg", "image_size=0"], fragments=("image_size 0",))
    add("arg_image_size_16000", "dino_vit", vit_ok, ["--arg", "image_size=16000"], fragments=("image_size 16000",))
    add("arg_image_size_string", "dino_vit", vit_ok, ["--arg", "image_size=big"], fragments=("image_size 'big'",))
    add("dinov2_arg_image_size_20000", "dinov2", hf_dir(src / "v2_ok", DINOV2), ["--arg", "image_size=20000"],
        fragments=("image_size 20000",))
    return cases


def test_convert_feature_net_hostile_inputs(tmp_path: Path) -> None:
    src, work = tmp_path / "src", tmp_path / "work"
    src.mkdir()
    work.mkdir()
    cases = convert_cases(src)
    for _, _, path, _, _ in cases:
        assert not path.is_file() or path.stat().st_blocks * 512 < 2_000_000  # small on disk
    before = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    plan = [dict(name=name, argv=[kind, str(path), str(work / name), *args])
            for name, kind, path, args, _ in cases]
    results = run_cases("convert_feature_net.py", plan, tmp_path)
    for name, _, _, _, fragments in cases:
        check_refused(results[name], fragments)
    assert list(work.iterdir()) == []  # no output, no temporary folder beside it
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*")) == before
    # the same through a real command line (process stderr): a FIFO as SRC, never opened
    name, kind, path, _, _ = next(c for c in cases if c[0] == "fifo_src")
    check_cli([sys.executable, str(REPO / "tools" / "convert_feature_net.py"), kind, str(path), str(work / "out")],
              tmp_path, "FIFO")
    assert list(work.iterdir()) == []


def test_converted_directory_is_checked_on_load(tmp_path: Path) -> None:
    """A converted DINO ResNet whose BatchNorm statistics were replaced by 1-element arrays (which
    broadcast silently) or whose config claims 300,000 blocks is refused when loaded."""
    from gancomp_jax.nets import resnet
    from gancomp_jax.nets.weights import save_converted

    config = dict(layers=[1, 1, 1, 1], width=8)
    variables = jax_tree_zeros(resnet.abstract_variables(config))
    good = save_converted(tmp_path / "good", "dino_rn50", variables, config)
    assert resnet.load_dino_rn50(good, architecture="custom").config == config
    with pytest.raises(ValueError, match=r"layers.*expected \[3, 4, 6, 3\]"):
        resnet.load_dino_rn50(good)  # not the published ResNet-50
    variables["batch_stats"]["bn1"]["mean"] = np.zeros(1, np.float32)
    bad = save_converted(tmp_path / "bad", "dino_rn50", variables, config)
    with pytest.raises(ValueError, match=r"bn1.*mean.*shape \(1,\), expected \(8,\)"):
        resnet.load_dino_rn50(bad, architecture="custom")
    meta = json.loads((good / "feature_net.json").read_text())
    meta["config"]["layers"] = [300_000, 4, 6, 3]
    (good / "feature_net.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="300000"):
        resnet.load_dino_rn50(good, architecture="custom")


def jax_tree_zeros(abstract):
    import jax

    return jax.tree.map(lambda a: np.zeros(a.shape, np.float32), abstract)


def test_convert_feature_net_ctrl_c_leaves_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    """Ctrl-C while reading and while saving: one line, exit 130, nothing in or beside OUT."""
    import importlib.util

    from gancomp_jax import nets
    from gancomp_jax.nets import weights

    spec = importlib.util.spec_from_file_location("convert_feature_net", REPO / "tools" / "convert_feature_net.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from gancomp_jax.nets import resnet

    config = dict(layers=[1, 1, 1, 1], width=8)
    src = weights.save_converted(tmp_path / "src", "dino_rn50", jax_tree_zeros(resnet.abstract_variables(config)),
                                 config)
    work = tmp_path / "work"
    work.mkdir()
    argv = ["dino_rn50", str(src), str(work / "out"), "--arg", "architecture=custom"]

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nets, "load", interrupt)
    assert tool.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: interrupted"), err
    monkeypatch.undo()
    monkeypatch.setattr(weights, "_checkpointer", interrupt)
    assert tool.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: interrupted"), err
    assert list(work.iterdir()) == []
    monkeypatch.undo()
    assert tool.main(argv) == 0  # and the same command works
    assert sorted(p.name for p in work.iterdir()) == ["out"]


# --------------------------------------------------------------------------- B. tools/fid.py
def fid_cases(tmp: Path) -> list[tuple[str, list[str], tuple[str, ...]]]:
    inception = tmp / "pt_inception.pth"  # never read: inputs are checked before the network loads
    inception.write_bytes(b"")
    ok = tmp / "ok.npz"
    np.savez(ok, mu=np.zeros(2048, np.float32), sigma=np.eye(2048, dtype=np.float32))
    cases = []

    def add(name, paths, fragments, extra=()):
        cases.append((name, [*map(str, paths), "--inception", str(inception), "--no-progress", *extra], fragments))

    def folder(name, *files):
        d = tmp / name
        d.mkdir()
        for make in files:
            make(d)
        return d

    fifo = folder("fifo", lambda d: png(d / "a.png", 8, 8), lambda d: os.mkfifo(d / "f.png"))
    add("fifo_png_in_folder", [fifo, ok], ("FIFO", "f.png"))
    add("png_bomb_50000", [folder("bomb", lambda d: png(d / "a.png", 50000, 50000),
                                  lambda d: png(d / "b.png", 8, 8)), ok], ("50000x50000", "--max-pixels"))
    big = folder("big", lambda d: png(d / "a.png", 10000, 10000), lambda d: png(d / "b.png", 8, 8))
    add("png_10000", [big, ok], ("10000x10000", "--max-pixels"))
    add("batch_size_1e8", [ok, ok], ("--batch-size 100000000",), ["--batch-size", "100000000"])
    nan = tmp / "nan.npz"
    np.savez_compressed(nan, mu=np.zeros(2048, np.float32), sigma=np.full((2048, 2048), np.nan, np.float32))
    add("stats_nan_sigma", [nan, ok], ("'sigma'", "NaN"))
    add("stats_header_200000", [npz_claiming(tmp / "claim.npz", "sigma", "<f4", (200000, 200000),
                                             {"mu": np.zeros(2048, np.float32)}), ok], ("'sigma'", "(200000, 200000)"))
    add("stats_deflated_1GiB", [npz_deflate_bomb(tmp / "bomb.npz", "sigma", "<f8", (2048, 2048), 1 << 30), ok],
        ("'sigma'", "1,073,741,"))
    add("stats_mu_3", [npz_claiming(tmp / "small.npz", "mu", "<f8", (3,)), ok], ("'mu'", "(3,)"))
    add("stats_object_dtype", [npz_claiming(tmp / "obj.npz", "mu", "|O", (2048,)), ok], ("Python objects",))
    np.savez(tmp / "nosig.npz", mu=np.zeros(2048, np.float32))
    add("stats_missing_sigma", [tmp / "nosig.npz", ok], ("'sigma'", "missing"))
    stats_fifo = tmp / "fifo.npz"
    os.mkfifo(stats_fifo)
    add("stats_fifo", [stats_fifo, ok], ("FIFO",))
    add("not_a_zip", [npz_text(tmp / "text.npz"), ok], ("not an .npz",))
    return cases


def npz_text(path: Path) -> Path:
    path.write_text("not a zip")
    return path


def test_fid_hostile_inputs(tmp_path: Path) -> None:
    cases = fid_cases(tmp_path)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    results = run_cases("fid.py", [dict(name=n, argv=a) for n, a, _ in cases], tmp_path / "run")
    for name, _, fragments in cases:
        check_refused(results[name], fragments)
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "run" not in p.parts)
    assert after == before
    name, argv, _ = next(c for c in cases if c[0] == "png_bomb_50000")
    check_cli([sys.executable, str(REPO / "tools" / "fid.py"), *argv], tmp_path, "50000x50000")


class _MeanColour:
    """A stand-in detector (mean colour, padded to 2048): exercises fid.py's reading and batching."""

    name, cache_key, params = "mean_colour", "v1", None

    @staticmethod
    def fn(params, x):
        import jax.numpy as jnp

        m = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return jnp.concatenate([m, jnp.zeros((x.shape[0], 2045))], axis=1)


def test_fid_mixed_sizes_and_bounded_batches(tmp_path: Path, monkeypatch) -> None:
    """Folders of mixed sizes work (each image on its own); large images are split into chunks of at
    most MAX_BATCH_BYTES; the statistics equal those of the images one by one."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location("tools_fid", REPO / "tools" / "fid.py")
    fid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fid)
    rng = np.random.default_rng(0)
    images = []
    for i, size in enumerate([(8, 8), (8, 8), (12, 6), (8, 8), (5, 9), (64, 64), (64, 64), (64, 64)]):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
        images.append(img)
    monkeypatch.setattr(fid, "MAX_BATCH_BYTES", 2 * 64 * 64 * 3)  # two 64 px images at once
    mu, sigma = fid.folder_statistics(str(tmp_path), _MeanColour(), batch_size=4, progress=False)
    feats = np.stack([np.concatenate([im.reshape(-1, 3).mean(0), np.zeros(2045)]) for im in images])
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-4, atol=1e-3)
    assert fid.main([str(tmp_path), str(tmp_path), "--inception", str(tmp_path / "img0.png"),
                     "--max-pixels", "100"]) == 2  # 64x64 > 100 pixels: refused from the header


# --------------------------------------------------------------------------- C. DiME statistics
def dime_cases(tmp: Path) -> list[tuple[str, Path, dict, tuple[str, ...]]]:
    """(name, file, expected dims, fragments)."""
    dims = {"dino": 2048, "clip": 1024}
    ok = {f"global_{e}_{m}": np.zeros(d, np.float32) for e, d in dims.items() for m in ("first", "second")}
    cases = []
    cases.append(("header_200000x200000", npz_claiming(tmp / "claim.npz", "global_dino_second", "<f4",
                                                      (200000, 200000), {"global_dino_first": ok["global_dino_first"]}),
                  dims, ("global_dino_second", "(200000, 200000)", "2048")))
    cases.append(("deflated_1GiB", npz_deflate_bomb(tmp / "bomb.npz", "global_clip_first", "<f4", (1 << 28,), 1 << 30),
                  dims, ("global_clip_first", "268435456")))
    nan = dict(ok, global_clip_second=np.full(1024, np.nan, np.float32))
    np.savez(tmp / "nan.npz", **nan)
    cases.append(("nan_moments", tmp / "nan.npz", dims, ("global_clip_second", "NaN")))
    np.savez(tmp / "dims.npz", **dict(ok, global_dino_first=np.zeros(512, np.float32)))
    cases.append(("wrong_dimension", tmp / "dims.npz", dims, ("global_dino_first", "(512,)", "2048")))
    cases.append(("unknown_dims_bound", npz_claiming(tmp / "claim2.npz", "global_x_first", "<f4", (1 << 30,)),
                  {"x": None}, ("global_x_first", "65536")))
    fifo = tmp / "fifo.npz"
    os.mkfifo(fifo)
    cases.append(("fifo", fifo, dims, ("FIFO",)))
    numel = 200000 * 200000  # a released-layout .pt whose tensor claims 200000 x 200000 float32
    data_pkl = dumps({"global_dino_first": tensor(zip_storage("0", numel), (200000, 200000), (200000, 1))}, 2)
    cases.append(("pt_200000x200000", torch_zip(tmp / "claim.pt", data_pkl, {"0": bytes(16)}), dims,
                  ("claim.pt", "40000000000")))
    return cases


def test_dime_statistics_loader_hostile_files(tmp_path: Path) -> None:
    """In process (cheap): each file is refused by load_stats before its data is read. Memory is the
    peak of Python/numpy allocations during the calls (tracemalloc), not the process's RSS high-water
    mark, which other tests in the same pytest process have already raised."""
    import tracemalloc

    from gancomp_jax.losses.dime_stats import load_stats

    cases = dime_cases(tmp_path)
    tracemalloc.start()
    try:
        _check_dime_cases(cases, load_stats)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 2**20, f"peak allocation {peak / 2**20:.0f} MiB"


def _check_dime_cases(cases, load_stats) -> None:
    for name, path, dims, fragments in cases:
        start = time.monotonic()
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            load_stats(path, dims)
        seconds = time.monotonic() - start
        print(f"  {name}: {seconds:.2f} s: {info.value}")
        assert seconds < TIME_LIMIT_S
        for fragment in fragments:
            assert fragment in str(info.value), (fragment, str(info.value))


def test_dime_global_stats_refused_before_the_run_directory(tmp_path: Path) -> None:
    """Through the training command line: NaN moments (right dimension) end with one error line and
    no run directory."""
    stats = tmp_path / "global.npz"
    np.savez(stats, global_tdisc_first=np.zeros(128, np.float32), global_tdisc_second=np.full(128, np.inf, np.float32))
    teacher = REPO / "gancomp_jax" / "assets" / "digits_teacher"
    workdir = tmp_path / "run"
    check_cli([sys.executable, "-m", "gancomp_jax.main", "--config", "experiments/nickel_dime.py:digits",
               "--workdir", str(workdir), f"--config.method.teacher={teacher}", f"--config.method.student={teacher}",
               f"--config.method.dime.global_stats={stats}"], tmp_path, "global_tdisc_second")
    assert not workdir.exists()


def test_dime_stats_resume_with_other_weights_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("tools_dime_stats", REPO / "tools" / "dime_stats.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    calls, interrupt_at = [], [2]

    def fake_embedders(kinds, weights, preprocess):
        def embed(images):
            calls.append(len(images))
            if len(calls) == interrupt_at[0]:
                raise KeyboardInterrupt  # stop after the first checkpointed batch
            return np.asarray(images).reshape(len(images), -1)[:, :4]
        return {tool.family(k): embed for k in kinds}

    monkeypatch.setattr(tool, "resolve_embedders", fake_embedders)
    w1, w2 = tmp_path / "a.pth", tmp_path / "b.pth"
    w1.write_bytes(b"one")
    w2.write_bytes(b"one")
    out = tmp_path / "stats.npz"
    argv = ["--embedders", "dino_rn50", "--source", "data:digits", "--n", "32", "--batch", "8",
            "--checkpoint_every", "1", str(out)]
    with pytest.raises(KeyboardInterrupt):
        tool.main([*argv, "--weights", f"dino_rn50={w1}"])
    assert Path(str(out) + ".partial.npz").exists()
    assert tool.main([*argv, "--weights", f"dino_rn50={w2}"]) == 2  # another file (same bytes)
    err = capsys.readouterr().err
    assert "weights: was" in err and str(w1) in err and str(w2) in err, err
    w1.write_bytes(b"two")  # the same path with other contents: refused too (sha256)
    assert tool.main([*argv, "--weights", f"dino_rn50={w1}"]) == 2
    assert "weights: was" in capsys.readouterr().err
    w1.write_bytes(b"one")
    interrupt_at[0] = None
    assert tool.main([*argv, "--weights", f"dino_rn50={w1}"]) == 0  # the original weights resume
    assert out.exists() and not Path(str(out) + ".partial.npz").exists()


# --------------------------------------------------------------------------- D. sampling settings
@pytest.mark.parametrize("psi", [float("nan"), float("inf"), "x"])
def test_truncation_psi_must_be_finite(psi) -> None:
    from gancomp_jax.utils.ranges import check_truncation_psi

    with pytest.raises(ValueError, match="truncation_psi must be a"):
        check_truncation_psi(psi)
    assert check_truncation_psi(0.7) == 0.7


def test_metric_sample_counts_and_psi_checked() -> None:
    from gancomp_jax.metrics.registry import MetricOptions
    from gancomp_jax.metrics.runner import GeneratorSpec

    with pytest.raises(ValueError, match="truncation_psi must be a finite number"):
        GeneratorSpec(None, None, truncation_psi=float("nan"))
    spec = GeneratorSpec(None, None, truncation_psi=0.5)
    with pytest.raises(ValueError, match="num_gen must be at least 2"):
        MetricOptions(G=spec, num_gen=1)
    with pytest.raises(ValueError, match="max_real must be at least 2"):
        MetricOptions(G=spec, max_real=1)
    assert MetricOptions(G=spec, num_gen=2).num_gen == 2 and MetricOptions(G=spec).num_gen is None
