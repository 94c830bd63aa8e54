"""Store a finished step's images: the one function the job engine calls on SUCCESS.

:func:`store_step_images` downloads the image (SSRF guard, size and time bounds, Pillow
check), puts it under its deterministic key, optionally splits a grid into four more
images, and returns what it stored. It is idempotent: a second call for the same step
yields the same keys and leaves the same objects (each put is a no-op when the object
with that SHA-256 is already there), so the engine may retry it freely after any
:class:`~worker.errors.RetryableError`.

An expired image URL (403/404/410) is refreshed once through ``StoreRequest.refresh_url``
and downloaded again; if that fails too the step fails with :class:`SourceGone`
(permanent), whose message says so.

Object metadata (``x-amz-meta-*`` on S3, the sidecar for files): ``job-id``, ``task-id``,
``step``, ``label``, ``part``, ``sha256`` and ``prompt`` (cut to
:data:`PROMPT_METADATA_MAX_BYTES` of UTF-8, with ``prompt-truncated: true``; the manifest
keeps it whole).

Each image gets a JPEG thumbnail next to it (:func:`worker.storage.naming.thumbnail_key`,
:mod:`.thumbs`), and its record says where both were written (:meth:`Sink.where`): the
sink kind, the real key, the bucket (S3) or path (files), and a URI.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import requests

from worker.errors import SourceExpired
from worker.storage.addresses import parse_networks
from worker.storage.download import DownloadedImage, download_image
from worker.storage.errors import SourceGone
from worker.storage.grid import split_grid
from worker.storage.naming import image_key, manifest_key, thumbnail_key
from worker.storage.sink import Sink
from worker.storage.thumbs import CONTENT_TYPE as THUMB_TYPE
from worker.storage.thumbs import make_thumbnail

#: S3 allows 2 KB of user metadata; a prompt this long encodes to at most 1.5 KB.
PROMPT_METADATA_MAX_BYTES = 512


class StorageSettings(Protocol):
    """The settings fields storage reads (``worker.settings.Settings`` has them all)."""

    key_template: str
    max_image_bytes: int
    download_timeout_s: float
    allowed_image_hosts: list[str]
    allowed_private_networks: list[str]
    allow_private_urls: bool
    max_image_pixels: int


@dataclass
class StoreRequest:
    """What the engine knows about a finished step.

    ``refresh_url`` fetches the task again and returns its current image URL (or ``None``).
    ``allowed_hosts``: ``None`` means ``settings.allowed_image_hosts``; a sequence replaces
    it (e.g. those hosts plus the provider's own host for ``/mj/image/{id}``).
    """

    job_id: str
    step_index: int
    label: str
    task_id: str
    prompt: str
    image_url: str | None
    split_grid: bool = False
    refresh_url: Callable[[], str | None] = lambda: None
    headers: dict[str, str] = field(default_factory=dict)
    allowed_hosts: Iterable[str] | None = None


@dataclass(frozen=True)
class StoredImage:
    """One stored object; ``part`` is ``""`` for the image itself, ``q1``..``q4`` for quarters.

    ``key`` is the key given to the sink (relative to its prefix); ``location`` is where
    the object really is (:meth:`Sink.where`: the record's ``key`` is the real key),
    ``thumbnail`` the location and size of its thumbnail (or None).
    """

    key: str
    sha256: str
    bytes: int
    width: int
    height: int
    content_type: str
    part: str = ""
    location: Mapping[str, Any] = field(default_factory=dict)
    thumbnail: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The image record kept on the step (and shown by the API): the object's real
        location first (``key`` is its real key), then what it is."""
        return {
            "key": self.key,
            **self.location,          # the real key, bucket or path, uri
            "sha256": self.sha256,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "contentType": self.content_type,
            "part": self.part,
            "thumbnail": dict(self.thumbnail) if self.thumbnail else None,
        }


def store_step_images(
    sink: Sink, session: requests.Session, req: StoreRequest, *, settings: StorageSettings
) -> list[StoredImage]:
    """Download the step's image and store it (and its grid quarters), each with its
    thumbnail; see the module doc."""
    image = _download_with_refresh(session, req, settings)
    with image:
        key = image_key(
            settings.key_template,
            job_id=req.job_id,
            step_index=req.step_index,
            label=req.label,
            ext=image.ext,
        )
        stored = [put_image(sink, req, key, image.file, image.content_type, image.sha256,
                       image.bytes, image.width, image.height, "")]
        if req.split_grid:
            stored.extend(_store_quarters(sink, req, settings, image))
    return stored


def put_image(sink: Sink, req: StoreRequest, key: str, fileobj: IO[bytes], content_type: str,
         sha256_hex: str, size_bytes: int, width: int, height: int, part: str) -> StoredImage:
    """Put one image and its thumbnail; the image's record."""
    sink.put(key, fileobj, content_type=content_type,
             metadata=object_metadata(req, part=part, sha256_hex=sha256_hex),
             sha256_hex=sha256_hex)
    thumb = make_thumbnail(fileobj)
    thumbnail = None
    if thumb is not None:
        tkey = thumbnail_key(key)
        sink.put(tkey, io.BytesIO(thumb.data), content_type=THUMB_TYPE,
                 metadata={"job-id": req.job_id, "part": part, "thumbnail-of": key},
                 sha256_hex=thumb.sha256)
        thumbnail = {**sink.where(tkey), "width": thumb.width, "height": thumb.height,
                     "bytes": len(thumb.data), "contentType": THUMB_TYPE, "sha256": thumb.sha256}
    return StoredImage(key, sha256_hex, size_bytes, width, height, content_type, part,
                       sink.where(key), thumbnail)


def write_manifest(sink: Sink, job_id: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Write the job's manifest (JSON) at ``{job_id}/manifest.json``; return where it is
    (:meth:`Sink.where`: its real ``key`` and ``uri``)."""
    key = manifest_key(job_id)
    sink.put_json(key, dict(manifest))
    return sink.where(key) | {"sinkKey": key}


def object_metadata(req: StoreRequest, *, part: str, sha256_hex: str) -> dict[str, str]:
    """The metadata stored with each image (the sink makes it ASCII-safe if it must)."""
    prompt = _truncate_utf8(req.prompt or "", PROMPT_METADATA_MAX_BYTES)
    metadata = {
        "job-id": req.job_id,
        "task-id": req.task_id or "",
        "step": str(req.step_index),
        "label": req.label,
        "part": part,
        "sha256": sha256_hex,
        "prompt": prompt,
    }
    if prompt != (req.prompt or ""):
        metadata["prompt-truncated"] = "true"
    return metadata


def download_limits(req: StoreRequest, settings: StorageSettings) -> dict[str, Any]:
    """What every download of a step's media is held to: size, time, the SSRF guard's
    hosts and networks, the request's headers (images add ``max_pixels``)."""
    allowed = settings.allowed_image_hosts if req.allowed_hosts is None else req.allowed_hosts
    return dict(max_bytes=settings.max_image_bytes, timeout_s=settings.download_timeout_s,
                allowed_hosts=tuple(allowed), allow_private=settings.allow_private_urls,
                allowed_networks=parse_networks(settings.allowed_private_networks),
                headers=req.headers)


def _download_with_refresh(
    session: requests.Session, req: StoreRequest, settings: StorageSettings
) -> DownloadedImage:
    limits = download_limits(req, settings)

    def fetch(url: str) -> DownloadedImage:
        return download_image(session, url, **limits, max_pixels=settings.max_image_pixels)

    url = req.image_url
    refreshed = False
    if not url:
        url, refreshed = req.refresh_url(), True
        if not url:
            raise SourceGone(
                f"task {req.task_id} finished without an image URL, even after a refresh"
            )
    try:
        return fetch(url)
    except SourceExpired as first:
        if refreshed:
            raise SourceGone(f"image URL expired and refresh did not help ({first})") from first
        fresh = req.refresh_url()
        if not fresh:
            raise SourceGone(
                f"image URL expired and refresh did not help (no new URL): {first}"
            ) from first
        try:
            return fetch(fresh)
        except SourceExpired as second:
            raise SourceGone(f"image URL expired and refresh did not help ({second})") from second


def _store_quarters(
    sink: Sink, req: StoreRequest, settings: StorageSettings, image: DownloadedImage
) -> list[StoredImage]:
    stored: list[StoredImage] = []
    parts = split_grid(image.file, max_pixels=settings.max_image_pixels)
    try:
        for part in parts:
            name = part.suffix.lstrip("-")
            key = image_key(
                settings.key_template,
                job_id=req.job_id,
                step_index=req.step_index,
                label=req.label,
                ext="png",
                suffix=part.suffix,
            )
            stored.append(put_image(sink, req, key, part.file, "image/png", part.sha256,
                               _size(part.file), part.width, part.height, name))
    finally:
        for part in parts:
            part.file.close()
    return stored


def _size(fileobj: IO[bytes]) -> int:
    fileobj.seek(0, io.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(0)
    return size


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")
