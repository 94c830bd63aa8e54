"""Download one image: bounded in size and time, hashed while streaming, checked by Pillow.

The body is streamed in 64 KiB chunks into a ``SpooledTemporaryFile`` that moves to disk
past 1 MiB, so memory stays flat whatever the image size; SHA-256 is computed on the way.
Checks, cheapest first:

1. the SSRF guard on the URL and on every redirect hop (:mod:`worker.storage.ssrf`);
2. the HTTP status: 403/404/410 → :class:`SourceExpired` (refresh the URL, then retry);
   408/429/5xx → :class:`DownloadUnavailable` (retry later); other codes → :class:`ImageRejected`;
3. ``Content-Length`` above ``max_bytes`` → refused before reading the body;
4. the first bytes must be PNG, JPEG, WebP or GIF magic: an HTML error page is refused
   after its first chunk, not after ``max_bytes``;
5. the running byte count: the stream is dropped as soon as it passes ``max_bytes``;
6. a wall-clock deadline of ``timeout_s`` for the whole body (a watchdog shuts the socket,
   so a server trickling one byte at a time cannot hold a worker);
7. Pillow reads the header (format, width, height): more than ``max_pixels`` pixels is
   refused (:mod:`worker.storage.pixels`, decompression bombs); then ``verify()`` walks
   the file (for PNG: every chunk's CRC). Pixels are never decoded here.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO

import requests
from PIL import Image, UnidentifiedImageError

from worker.errors import ImageRejected, SourceExpired
from worker.storage.errors import DownloadUnavailable
from worker.storage.pixels import DEFAULT_MAX_PIXELS, open_bounded
from worker.storage.ssrf import IPNetwork, Resolver, guarded_get, redact_url

CHUNK_BYTES = 64 * 1024
SPOOL_MAX_BYTES = 1024 * 1024
#: Connect timeout per hop; the read timeout per socket operation is ``timeout_s``.
CONNECT_TIMEOUT_CAP_S = 10.0
EXPIRED_STATUSES = frozenset({403, 404, 410})
RETRYABLE_STATUSES = frozenset({408, 425, 429})

#: Pillow format name -> (content type, file extension).
FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
_PILLOW_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)


@dataclass
class DownloadedImage:
    """A verified image in a seekable temporary file (positioned at 0). Close it when done."""

    file: IO[bytes]
    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    content_type: str
    ext: str

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> DownloadedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def download_image(
    session: requests.Session,
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allowed_hosts: Iterable[str] = (),
    allow_private: bool = False,
    headers: Mapping[str, str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_networks: Iterable[IPNetwork] = (),
    resolver: Resolver | None = None,
) -> DownloadedImage:
    """Fetch ``url`` into a temporary file and verify it is an image (see module docstring)."""
    deadline = time.monotonic() + timeout_s
    request_headers = {"Accept": "image/*", "Accept-Encoding": "identity", **(headers or {})}
    try:
        response = guarded_get(
            session,
            url,
            allowed_hosts=allowed_hosts,
            allow_private=allow_private,
            allowed_networks=allowed_networks,
            resolver=resolver,
            timeout_s=(min(timeout_s, CONNECT_TIMEOUT_CAP_S), timeout_s),
            headers=request_headers,
        )
    except requests.RequestException as exc:
        raise DownloadUnavailable(f"image host unreachable for {redact_url(url)}: {exc}") from exc
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)
    try:
        with response:
            _check_status(response)
            _check_declared_length(response, max_bytes)
            digest, size = _stream_body(
                response, spool, max_bytes=max_bytes, deadline=deadline, timeout_s=timeout_s
            )
        image_format, width, height = _inspect(spool, max_pixels)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    content_type, ext = FORMATS[image_format]
    return DownloadedImage(
        file=spool,
        sha256=digest,
        bytes=size,
        format=image_format,
        width=width,
        height=height,
        content_type=content_type,
        ext=ext,
    )


def format_bytes(n: int) -> str:
    """``67108864`` → ``"64 MB"``, ``65536`` → ``"64 KB"`` (binary units, as people say them)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def sniff(head: bytes) -> str | None:
    """The image format the first bytes announce, or ``None``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _check_status(response: requests.Response) -> None:
    code = response.status_code
    where = redact_url(response.url or "")
    if 200 <= code < 300:
        return
    if code in EXPIRED_STATUSES:
        raise SourceExpired(f"image URL answered HTTP {code} (expired or removed): {where}")
    if code in RETRYABLE_STATUSES or code >= 500:
        raise DownloadUnavailable(f"image host answered HTTP {code}: {where}")
    raise ImageRejected(f"image host answered HTTP {code}: {where}")


def _check_declared_length(response: requests.Response, max_bytes: int) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageRejected(
            f"image larger than {format_bytes(max_bytes)} limit "
            f"(Content-Length {format_bytes(int(declared))})"
        )


def _stream_body(
    response: requests.Response,
    spool: IO[bytes],
    *,
    max_bytes: int,
    deadline: float,
    timeout_s: float,
    sniffer: Callable[[bytes], str | None] = sniff,
    what: str = "image",
) -> tuple[str, int]:
    """Copy the body into ``spool``; return (sha256 hex, byte count). ``sniffer`` names
    the format the first bytes announce (images by default; videos use their own)."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    expired = threading.Event()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (response, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            if expired.is_set() or time.monotonic() > deadline:
                raise DownloadUnavailable(f"image download took longer than {timeout_s:g} s")
            size += len(chunk)
            if size > max_bytes:
                raise ImageRejected(f"image larger than {format_bytes(max_bytes)} limit")
            if len(head) < 16:
                head += chunk[: 16 - len(head)]
                if len(head) >= 12 and sniffer(head) is None:
                    raise ImageRejected(_not_an_image(head, response, what))
            digest.update(chunk)
            spool.write(chunk)
    except requests.RequestException as exc:
        if expired.is_set():
            raise DownloadUnavailable(f"image download took longer than {timeout_s:g} s") from exc
        raise DownloadUnavailable(f"image download interrupted: {exc}") from exc
    finally:
        watchdog.cancel()
    if expired.is_set():
        raise DownloadUnavailable(f"image download took longer than {timeout_s:g} s")
    if size == 0:
        raise ImageRejected(f"not an {what}: the body is empty" if what == "image"
                            else f"not a {what}: the body is empty")
    if sniffer(head) is None:
        raise ImageRejected(_not_an_image(head, response, what))
    return digest.hexdigest(), size


def _cut(response: requests.Response, expired: threading.Event) -> None:
    """Watchdog: the deadline passed; shut the socket so a blocked read returns now."""
    expired.set()
    try:
        response.raw.shutdown()
    except (AttributeError, ValueError, RuntimeError, OSError):
        pass  # already released or closed: the loop sees ``expired`` at its next chunk


def _not_an_image(head: bytes, response: requests.Response, what: str = "image") -> str:
    content_type = response.headers.get("Content-Type", "none")
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        kind = "an HTML page"
    elif text.startswith((b"{", b"[")):
        kind = "JSON"
    elif text.startswith(b"<"):
        kind = "XML/HTML"
    else:
        kind = f"unknown data starting {head[:8]!r}"
    article = "an" if what[0] in "aeiou" else "a"
    return f"not {article} {what}: {kind} (Content-Type {content_type})"


def _inspect(spool: IO[bytes], max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) read by Pillow, after ``verify()`` walked the whole file."""
    spool.seek(0)
    try:
        with open_bounded(spool, max_pixels) as image:
            image_format = image.format or ""
            width, height = image.size
            image.verify()
    except _PILLOW_ERRORS as exc:
        raise ImageRejected(f"not an image: Pillow cannot read it ({exc})") from exc
    if image_format not in FORMATS:
        raise ImageRejected(f"not an image: unsupported format {image_format or 'unknown'}")
    return image_format, width, height
