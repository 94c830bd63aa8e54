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
from worker.storage.naming import image_key, manifest_key
from worker.storage.sink import Sink

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
    """One stored object; ``part`` is ``""`` for the image itself, ``q1``..``q4`` for quarters."""

    key: str
    sha256: str
    bytes: int
    width: int
    height: int
    content_type: str
    part: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "contentType": self.content_type,
            "part": self.part,
        }


def store_step_images(
    sink: Sink, session: requests.Session, req: StoreRequest, *, settings: StorageSettings
) -> list[StoredImage]:
    """Download the step's image and store it (and its grid quarters); see the module doc."""
    image = _download_with_refresh(session, req, settings)
    with image:
        key = image_key(
            settings.key_template,
            job_id=req.job_id,
            step_index=req.step_index,
            label=req.label,
            ext=image.ext,
        )
        sink.put(
            key,
            image.file,
            content_type=image.content_type,
            metadata=object_metadata(req, part="", sha256_hex=image.sha256),
            sha256_hex=image.sha256,
        )
        stored = [
            StoredImage(
                key, image.sha256, image.bytes, image.width, image.height, image.content_type
            )
        ]
        if req.split_grid:
            stored.extend(_store_quarters(sink, req, settings, image))
    return stored


def write_manifest(sink: Sink, job_id: str, manifest: Mapping[str, Any]) -> str:
    """Write the job's manifest (JSON) at ``{job_id}/manifest.json``; return its key."""
    key = manifest_key(job_id)
    sink.put_json(key, dict(manifest))
    return key


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


def _download_with_refresh(
    session: requests.Session, req: StoreRequest, settings: StorageSettings
) -> DownloadedImage:
    allowed = settings.allowed_image_hosts if req.allowed_hosts is None else req.allowed_hosts
    allowed = tuple(allowed)

    def fetch(url: str) -> DownloadedImage:
        return download_image(
            session,
            url,
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.download_timeout_s,
            allowed_hosts=allowed,
            allow_private=settings.allow_private_urls,
            allowed_networks=parse_networks(settings.allowed_private_networks),
            headers=req.headers,
            max_pixels=settings.max_image_pixels,
        )

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
            size_bytes = _size(part.file)
            sink.put(
                key,
                part.file,
                content_type="image/png",
                metadata=object_metadata(req, part=name, sha256_hex=part.sha256),
                sha256_hex=part.sha256,
            )
            stored.append(
                StoredImage(
                    key, part.sha256, size_bytes, part.width, part.height, "image/png", name
                )
            )
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
