"""The local :class:`FileSink`: objects as files under a root, with a JSON sidecar each."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from worker.storage.sink import put_json

SIDECAR_SUFFIX = ".meta.json"
COPY_CHUNK_BYTES = 1024 * 1024
FILE_MODE = 0o644


class FileSink:
    """Objects as files under ``root``; metadata in a ``<key>.meta.json`` sidecar.

    Writes are atomic (a temporary file in the same directory, fsynced, then
    ``os.replace``): a reader sees the old object or the new one, never half of one. The
    data file is written before its sidecar, so a sidecar always describes its data.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def put(
        self,
        key: str,
        fileobj: IO[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str],
        sha256_hex: str,
    ) -> None:
        path = self._path(key)
        existing = self.head(key)
        if existing is not None and existing.get("sha256") == sha256_hex:
            return
        fileobj.seek(0)
        size_bytes = _atomic_write(
            path, lambda out: shutil.copyfileobj(fileobj, out, COPY_CHUNK_BYTES)
        )
        sidecar = {
            "contentType": content_type,
            "sha256": sha256_hex,
            "size": size_bytes,
            "metadata": {str(k).lower(): str(v) for k, v in metadata.items()},
        }
        body = json.dumps(sidecar, ensure_ascii=False, indent=2).encode("utf-8")
        _atomic_write(_sidecar(path), lambda out: out.write(body))

    def put_json(self, key: str, obj: Any) -> None:
        put_json(self, key, obj)

    def head(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            sidecar = json.loads(_sidecar(path).read_text("utf-8"))
        except (OSError, ValueError):
            sidecar = {}  # data written, sidecar not (yet): the next put rewrites both
        return {
            "size": path.stat().st_size,
            "contentType": sidecar.get("contentType", "application/octet-stream"),
            "metadata": dict(sidecar.get("metadata", {})),
            "sha256": sidecar.get("sha256"),
        }

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def url(self, key: str, ttl_s: int) -> str:
        """A ``file://`` URL (``ttl_s`` does not apply to files)."""
        return self._path(key).as_uri()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if (
                not path.is_file()
                or path.name.startswith(".")
                or path.name.endswith(SIDECAR_SUFFIX)
            ):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def location(self, key: str) -> str:
        return str(self._path(key))

    def where(self, key: str) -> dict[str, Any]:
        path = self._path(key)
        return {"sink": "file", "key": key, "bucket": None, "path": str(path),
                "uri": path.as_uri()}

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or "\\" in key or key.endswith(SIDECAR_SUFFIX):
            raise ValueError(f"invalid key {key!r}")
        if any(part in ("..", ".", "") for part in key.split("/")):
            raise ValueError(f"invalid key {key!r}: empty, '.' or '..' segment")
        path = self.root / key
        if self.root not in path.resolve().parents:
            raise ValueError(f"key {key!r} leaves the sink's root")
        return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _atomic_write(path: Path, write: Any) -> int:
    """Write through ``write(fileobj)`` to a temporary file, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
            size_bytes = out.tell()
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return size_bytes
