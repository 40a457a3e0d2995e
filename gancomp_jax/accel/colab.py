"""Helpers of ``notebooks/colab_tpu.ipynb``: runtime summary, checked downloads, path checks.

Every check fails with one :class:`NotebookInputError` naming the problem (file, URL, value);
nothing is left half-written (downloads go to ``<dest>.partial`` and are renamed only after
the checksum matched).

Official sources (sha256 where the publisher states it: OpenAI puts the full sha256 of CLIP's
files in the URL, pytorch-fid the first 8 hex digits of the Inception file's in its name;
NVIDIA and Meta publish none for these files, so only their size is reported):
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

DOWNLOADS: dict[str, dict[str, str]] = {
    "teacher": {"url": "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
                       "transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl",
                "file": "ffhq-res256-mirror-paper256-noaug.pkl", "sha256": ""},
    "clip_rn50": {"url": "https://openaipublic.azureedge.net/clip/models/"
                         "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
                  "file": "RN50.pt", "sha256": "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"},
    "dino_rn50": {"url": "https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth",
                  "file": "dino_resnet50_pretrain.pth", "sha256": ""},
    "inception_fid": {"url": "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                             "pt_inception-2015-12-05-6726825d.pth",
                      "file": "pt_inception-2015-12-05-6726825d.pth", "sha256": "6726825d"},
}
__doc__ += "\n".join(f"\n- ``{k}``: {v['url']}" + (f" (sha256 {v['sha256']}…)" if v["sha256"] else "")
                     for k, v in DOWNLOADS.items())


class NotebookInputError(ValueError):
    """A bad notebook input (the message is the one line shown to the user)."""


def runtime_summary() -> dict[str, Any]:
    """Backend, device kind and count, memory per device (where reported), and advice on CPU."""
    import jax

    devs = jax.devices()
    mem = None
    try:
        stats = devs[0].memory_stats() or {}
        mem = stats.get("bytes_limit")
    except Exception:  # noqa: BLE001
        pass
    out = {"backend": jax.default_backend(), "device_kind": devs[0].device_kind, "device_count": len(devs),
           "memory_gib": (mem / 2 ** 30) if mem else None, "jax": jax.__version__}
    if out["backend"] == "cpu":
        out["advice"] = ("this runtime has no accelerator: Runtime → Change runtime type → TPU v5e-1 (free tier) "
                         "or a GPU; SMOKE=True runs on a CPU")
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def _check_digest(path: Path, want: str, what: str) -> str:
    got = sha256_file(path)
    if want and not got.startswith(want.lower()):
        raise NotebookInputError(f"{what}: {path} has sha256 {got[:16]}…, the publisher's is {want[:16]}…; "
                                 f"the file is damaged or not the published one (delete it and download again)")
    return got


def download(name_or_url: str, dest_dir: str | os.PathLike, sha256: str | None = None, timeout: float = 60.0
             ) -> Path:
    """The file of ``DOWNLOADS[name]`` (or a URL) in ``dest_dir``: reused when present and its
    checksum matches, else downloaded to ``.partial`` and renamed after the check."""
    spec = DOWNLOADS.get(name_or_url, {"url": name_or_url, "file": name_or_url.rstrip("/").rsplit("/", 1)[-1],
                                       "sha256": sha256 or ""})
    want = spec["sha256"] if sha256 is None else sha256
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / spec["file"]
    if dest.is_file():
        _check_digest(dest, want, name_or_url)
        return dest
    part = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(spec["url"], timeout=timeout) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise NotebookInputError(f"download of {name_or_url} from {spec['url']} failed: {e}; check the network "
                                 f"or put the file at {dest} yourself") from None
    try:
        _check_digest(part, want, name_or_url)
    except NotebookInputError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def check_output_path(path: str) -> str:
    """A checkpoint / output location: a local or Drive folder, or ``gs://bucket/...`` (checked
    reachable and writable now, not after an hour of training)."""
    if path.startswith("gs://"):
        from gancomp_jax.io import cloud_storage

        try:  # the trainer's own probe: both clients, short timeouts, nothing left behind
            cloud_storage.probe(path)
        except ValueError as e:
            raise NotebookInputError(str(e)) from None
        return path
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def check_dataset_zip(path: str) -> int:
    """The number of images in an NVlabs ``dataset_tool`` zip; an error when it has none."""
    p = Path(path)
    if not p.is_file():
        raise NotebookInputError(f"DATA={path}: no such file")
    try:
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))]
    except zipfile.BadZipFile:
        raise NotebookInputError(f"DATA={path}: not a zip file") from None
    if not names:
        raise NotebookInputError(f"DATA={path}: the zip holds no images (.png/.jpg/.webp); make it with NVlabs' "
                                 f"dataset_tool.py or give a folder / TFDS name")
    return len(names)


def check_smoke(smoke: bool, **weight_paths: str) -> None:
    """SMOKE runs only on the shipped digits teacher and stand-ins: real weight paths are an error."""
    given = {k: v for k, v in weight_paths.items() if v}
    if smoke and given:
        raise NotebookInputError(f"SMOKE=True runs offline on the shipped digits teacher, but weight paths are set: "
                                 f"{', '.join(f'{k}={v}' for k, v in given.items())}; clear them or set SMOKE=False")


def run_job(repo: str | os.PathLike, experiment: str, workdir: str, *overrides: str, quiet: bool = False) -> None:
    """``python -m gancomp_jax.main --config REPO/experiments/<experiment> --workdir W --config.k=v ...``
    with its output streamed into the notebook; a failure raises with the job's last lines."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(Path(repo) / "experiments" / experiment),
           "--workdir", str(workdir), *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(repo)) as p:
        for line in p.stdout:
            tail = (tail + [line.rstrip()])[-20:]
            if not quiet:
                print(line, end="", flush=True)
        rc = p.wait()
    if rc != 0:
        raise NotebookInputError(f"{experiment} failed (exit {rc}):\n" + "\n".join(tail))


def run_tool(repo: str | os.PathLike, tool: str, *args: str) -> str:
    """``python REPO/tools/<tool> ARGS`` → its output (printed); a failure raises with it."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(Path(repo) / "tools" / tool), *args], capture_output=True, text=True,
                       cwd=str(repo))
    print(r.stdout, end="")
    if r.returncode != 0:
        raise NotebookInputError(f"tools/{tool} failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout
