"""The :class:`Sink` protocol every store of bytes follows, and :func:`put_json` for any sink.

Every sink is idempotent: putting a key again with the same SHA-256 is a no-op, and a
key names exactly one object. Keys given to a sink are relative to it (see :mod:`.naming`); :meth:`Sink.where` gives
the object's real location.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from typing import IO, Any, Protocol, runtime_checkable


@runtime_checkable
class Sink(Protocol):
    """A key → object store. ``fileobj`` arguments are seekable and read from their start."""

    def put(
        self,
        key: str,
        fileobj: IO[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str],
        sha256_hex: str,
    ) -> None: ...

    def put_json(self, key: str, obj: Any) -> None: ...

    def head(self, key: str) -> dict[str, Any] | None:
        """``{"size", "contentType", "metadata", "sha256"}``, or ``None`` if absent."""

    def get_bytes(self, key: str) -> bytes: ...

    def url(self, key: str, ttl_s: int) -> str:
        """A URL to read the object (presigned for S3, ``file://`` for files)."""

    def list(self, prefix: str = "") -> list[str]: ...

    def location(self, key: str) -> str:
        """Where the object is, for people and logs: ``s3://bucket/full/key`` or a path."""

    def where(self, key: str) -> dict[str, Any]:
        """Where the object is, as image records keep it: ``sink`` (``s3``/``file``), its
        real ``key`` (S3: in its bucket, prefix included), ``bucket`` and ``endpoint``
        (S3), ``path`` (files) and ``uri`` (``s3://bucket/key`` or ``file:///path``)."""

    def describe(self) -> str: ...


def put_json(sink: Any, key: str, obj: Any) -> None:
    """Store ``obj`` as pretty JSON under ``key`` through ``sink.put`` (any sink)."""
    data = json.dumps(obj, ensure_ascii=False, indent=2, default=str).encode("utf-8")
    sink.put(key, io.BytesIO(data), content_type="application/json", metadata={},
             sha256_hex=hashlib.sha256(data).hexdigest())
