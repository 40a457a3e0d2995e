"""A local Cloud Storage emulator for tests: gcp-storage-emulator (pure Python, in memory) with the
two parts of the JSON API it leaves out and TensorStore's GCS driver relies on (OCDBT's manifest
is updated by conditional writes):

* object media downloads carry ``x-goog-generation`` / ``x-goog-metageneration`` headers (the
  real service sends them; without them TensorStore fails with "Malformed StorageGeneration");
* the preconditions ``ifGenerationMatch`` (uploads, downloads; ``0`` = must not exist: 412) and
  ``ifGenerationNotMatch`` (downloads: 304 when unchanged) are honoured.

Nothing else is changed; the patch applies to this process only.
"""

from __future__ import annotations

import socket
from http import HTTPStatus


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _current_generation(storage, bucket, name) -> str | None:
    try:
        return str(storage.get_file_obj(bucket, name).get("generation"))
    except Exception:  # noqa: BLE001 - the emulator raises its NotFound
        return None


def _patch() -> None:
    from gcp_storage_emulator.handlers import objects

    if getattr(objects, "_gancomp_jax_patched", False):
        return
    download, media_upload = objects.download, objects._media_upload

    def download_with_generation(request, response, storage, *args, **kwargs):
        bucket, name = request.params["bucket_name"], request.params["object_id"]
        gen = _current_generation(storage, bucket, name)
        match = request.query.get("ifGenerationMatch")
        not_match = request.query.get("ifGenerationNotMatch")
        if gen is not None and match and match[0] != gen:
            response.status = HTTPStatus.PRECONDITION_FAILED
            return None
        if gen is not None and not_match and not_match[0] == gen:
            response.status = HTTPStatus.NOT_MODIFIED
            response["x-goog-generation"] = gen
            return None
        if gen is not None:
            response["x-goog-generation"] = gen
            response["x-goog-metageneration"] = "1"
        return download(request, response, storage, *args, **kwargs)

    def media_upload_with_precondition(request, response, storage):
        match = request.query.get("ifGenerationMatch")
        if match:
            gen = _current_generation(storage, request.params["bucket_name"], request.query["name"][0])
            if (match[0] == "0" and gen is not None) or (match[0] != "0" and match[0] != gen):
                response.status = HTTPStatus.PRECONDITION_FAILED
                return None
        return media_upload(request, response, storage)

    objects.download = download_with_generation
    objects._media_upload = media_upload_with_precondition
    objects._gancomp_jax_patched = True


def start(bucket: str):
    """Starts an in-memory emulator holding ``bucket`` on a free port: ``(server, url)``."""
    from gcp_storage_emulator.server import create_server

    _patch()
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    return server, f"http://127.0.0.1:{port}"
