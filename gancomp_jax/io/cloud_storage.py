"""Google Cloud Storage locations (``gs://bucket/prefix``) for training runs: the few object
operations the trainer needs, and a reachability probe that runs before any work starts.

Two clients reach a bucket: Orbax writes checkpoint arrays through TensorStore's own GCS driver
(C++, credentials from Application Default Credentials), and everything else here goes through
``gcsfs`` (fsspec; also what ``etils.epath`` and therefore Orbax's directory handling use). Both
must work, so :func:`probe` writes, reads and deletes one small object with each.

Cloud Storage has no folders and no rename: an object write (one PUT) is atomic, a "move" is a
copy plus a delete. Everything that must be all-or-nothing is therefore written as several
objects followed by one *commit object* written last, which readers trust:
Orbax's ``commit_success.txt`` for a checkpoint, our ``checksums.json`` seal after it, and
``model.json`` for an exported model folder (see :mod:`gancomp_jax.train.remote_run`).

Emulators (tests, offline): ``STORAGE_EMULATOR_HOST=http://host:port`` points gcsfs at one;
:func:`configure_clients` then also points TensorStore there (``TENSORSTORE_GCS_HTTP_URL``, HTTP/1)
unless those are set. TensorStore still needs a credential: set ``GOOGLE_AUTH_TOKEN_FOR_TESTING``
(any string) with an emulator; gcsfs (ours and epath's) is anonymous there. gcsfs' experimental bucket-type lookup (a gRPC call that waits
60 s when it cannot authenticate) is switched off unless ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT`` is
set: plain object reads and writes are all this package needs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import urllib.parse
import uuid
from typing import Any

GS = "gs://"
PROBE_TIMEOUT_S = 30.0


class StorageUnreachable(ValueError):
    """A ``gs://`` location that cannot be listed, written or read now (one-line message)."""


def is_gcs(path: Any) -> bool:
    return str(path).startswith(GS)


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def split(url: str) -> tuple[str, str]:
    """``('bucket', 'prefix/inside')`` of ``gs://bucket/prefix/inside``; ValueError without a bucket."""
    rest = str(url)[len(GS):].strip("/")
    bucket, _, prefix = rest.partition("/")
    if not bucket or not prefix:
        raise ValueError(f"{url}: give a bucket and a folder inside it, e.g. gs://my-bucket/runs/ffhq")
    return bucket, prefix


def configure_clients() -> None:
    """Environment defaults for the clients (see the module docstring); idempotent."""
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", host if "://" in host else f"http://{host}")
        os.environ.setdefault("TENSORSTORE_GCS_HTTP_VERSION", "1")
        import fsspec.config

        # epath (and so Orbax) opens gcsfs with fsspec's defaults: anonymous at an emulator
        # (else every new client looks for the GCE metadata server first, seconds each time)
        fsspec.config.conf.setdefault("gs", {}).setdefault("token", "anon")


_FS: dict = {}


def filesystem():
    """The gcsfs file system (one per endpoint) without a listing cache: objects written by
    TensorStore must show at once. With an emulator the credentials are anonymous."""
    configure_clients()
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host not in _FS:
        import fsspec

        kwargs = {"token": "anon"} if host else {}
        _FS[host] = fsspec.filesystem("gs", use_listings_cache=False, skip_instance_cache=True, **kwargs)
    return _FS[host]


def list_files(url: str, fs=None) -> dict[str, int]:
    """``{path relative to url: size in bytes}`` of every object under ``url/``."""
    fs = fs or filesystem()
    base = url[len(GS):].rstrip("/") + "/"
    found = fs.find(url.rstrip("/") + "/", detail=True)
    return {k[len(base):]: int(v.get("size") or 0) for k, v in found.items()
            if k.startswith(base) and v.get("type") != "directory" and not k.endswith("/")}


def list_dirs(url: str, fs=None) -> list[str]:
    """Names of the immediate "folders" (common prefixes) under ``url/``."""
    fs = fs or filesystem()
    try:
        entries = fs.ls(url.rstrip("/") + "/", detail=True)
    except FileNotFoundError:
        return []
    return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")


def exists(url: str, fs=None) -> bool:
    return (fs or filesystem()).exists(url)


def read_bytes(url: str, fs=None, limit: int | None = None) -> bytes:
    fs = fs or filesystem()
    with fs.open(url, "rb") as f:
        return f.read(-1 if limit is None else limit)


def write_bytes(url: str, data: bytes, fs=None) -> None:
    """One object, written in one request (atomic: readers see the old object or the new one)."""
    (fs or filesystem()).pipe_file(url, data)


def sha256(url: str, fs=None) -> str:
    h = hashlib.sha256()
    with (fs or filesystem()).open(url, "rb", block_size=8 << 20) as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_prefix(url: str, fs=None) -> None:
    """Deletes every object under ``url/`` (nothing if there is none)."""
    fs = fs or filesystem()
    files = list_files(url, fs)
    if files:
        fs.rm([join(url, rel) for rel in files])


def move_prefix(src: str, dst: str, fs=None) -> None:
    """Copies every object under ``src/`` to ``dst/``, then deletes the originals (not atomic:
    interrupted, the remaining originals are moved by the next call)."""
    fs = fs or filesystem()
    files = list_files(src, fs)
    for rel in files:
        fs.copy(join(src, rel), join(dst, rel))
    if files:
        fs.rm([join(src, rel) for rel in files])


def _tensorstore_roundtrip(bucket: str, key: str, payload: bytes) -> None:
    import tensorstore as ts

    kv = ts.KvStore.open({"driver": "gcs", "bucket": bucket}).result()
    kv.write(key, payload).result()
    got = kv.read(key).result()
    if got.value != payload:
        raise OSError("the object read back differs from the one written")
    kv.write(key, None).result()  # one key (some emulators ignore the bounds of a range delete)


def endpoint() -> tuple[str, int]:
    """``(host, port)`` the clients talk to: the emulator's, or Cloud Storage's."""
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host:
        return "storage.googleapis.com", 443
    u = urllib.parse.urlsplit(host if "://" in host else f"http://{host}")
    return u.hostname or "localhost", u.port or (443 if u.scheme == "https" else 80)


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raises :class:`StorageUnreachable` unless both clients can write, read and delete an
    object under ``url`` within ``timeout`` seconds (no credentials, no such bucket, no network,
    no permission). Leaves nothing behind when it succeeds; writes nothing when it cannot.
    A connection to the endpoint is tried first (at most 5 s): without a network the clients
    would retry for minutes."""
    bucket, prefix = split(url)
    configure_clients()
    host, port = endpoint()
    try:
        socket.create_connection((host, port), timeout=min(5.0, timeout)).close()
    except OSError as e:
        raise StorageUnreachable(f"{url} is not reachable: cannot connect to {host}:{port} ({e}); check the "
                                 f"network; nothing was written") from None
    name = f".gancomp_jax_probe-{uuid.uuid4().hex[:12]}"
    result: dict[str, BaseException | None] = {}

    def run():
        try:
            fs = filesystem()
            obj = join(url, name)
            fs.pipe_file(obj, b"ok")
            if fs.cat_file(obj) != b"ok":
                raise OSError("the object read back differs from the one written")
            fs.rm_file(obj)
            _tensorstore_roundtrip(bucket, f"{prefix.rstrip('/')}/{name}-ts", b"ok")
            result["error"] = None
        except BaseException as e:  # noqa: BLE001 - reported below as one line
            result["error"] = e

    t = threading.Thread(target=run, name="gcs-probe", daemon=True)
    t.start()
    t.join(timeout)
    hint = ("check the bucket name, the network, and that this runtime is authenticated "
            "(Colab: google.colab.auth.authenticate_user(); elsewhere: gcloud auth application-default login)")
    if "error" not in result:
        raise StorageUnreachable(f"{url} is not reachable: no answer from Cloud Storage within {timeout:.0f} s; "
                                 f"{hint}; nothing was written")
    e = result["error"]
    if e is not None:
        detail = " ".join(f"{type(e).__name__}: {e}".split())[:240]
        raise StorageUnreachable(f"{url} is not reachable or not writable ({detail}); {hint}; nothing was written")
