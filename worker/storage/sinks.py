"""Turns ``MJFLOW_STORAGE_URL`` into a sink.

``s3://bucket/prefix``      → :class:`~worker.storage.s3sink.S3Sink`
``file:///abs/path``        → :class:`~worker.storage.files.FileSink` rooted at ``/abs/path``
``file://./relative/path``  → :class:`~worker.storage.files.FileSink` rooted at ``./relative/path`` (from the cwd)
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from worker.storage.files import FileSink
from worker.storage.s3sink import S3Sink
from worker.storage.sink import Sink


def sink_from_url(storage_url: str, *, s3_client: Any = None) -> Sink:
    """The sink for ``MJFLOW_STORAGE_URL`` (see the module docstring for the forms)."""
    parts = urlsplit(storage_url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"storage URL {storage_url!r} has no bucket: use s3://bucket/prefix")
        return S3Sink(parts.netloc, unquote(parts.path).strip("/"), client=s3_client)
    if parts.scheme == "file":
        if parts.netloc in ("", "localhost"):
            root = unquote(parts.path)
        else:  # file://./data, file://data/images: relative to the working directory
            root = parts.netloc + unquote(parts.path)
        if not root:
            raise ValueError(f"storage URL {storage_url!r} has no path")
        return FileSink(root)
    raise ValueError(f"storage URL {storage_url!r} must be s3://bucket/prefix or file:///path")
