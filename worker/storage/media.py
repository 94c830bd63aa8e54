"""Results that are not one image: video clips (MP4) with their posters, and the four
full-size images some upstreams (trueai's ``imageUrls``) give beside a grid.

Videos go through the same guard as images (:mod:`.ssrf` on every hop, the size cap of
``MJFLOW_MAX_IMAGE_BYTES``, the wall-clock deadline, SHA-256 while streaming, a
deterministic key, single-part upload) but are checked as MP4 instead of by Pillow: the
file must be ISO-BMFF, starting with an ``ftyp`` box of a known brand, its top-level boxes
must tile the file exactly, and one of them must be ``moov``. Keys end in ``.mp4``;
a clip's poster (``videoUrls[].thumbnail`` on trueai) is stored as an image beside it.
"""
from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import requests

from worker.errors import ImageRejected, SourceExpired
from worker.storage.addresses import IPNetwork
from worker.storage.download import (
    SPOOL_MAX_BYTES,
    DownloadedImage,
    _check_declared_length,
    _check_status,
    _stream_body,
    download_image,
)
from worker.storage.errors import DownloadUnavailable, SourceGone
from worker.storage.naming import image_key
from worker.storage.sink import Sink
from worker.storage.ssrf import guarded_get, redact_url
from worker.storage.store import (
    StorageSettings,
    StoredImage,
    StoreRequest,
    download_limits,
    object_metadata,
    put_image,
)

MP4_TYPE = "video/mp4"
#: ``ftyp`` major brands of MP4/QuickTime files (ISO/IEC 14496-12, -14, 3GPP, Apple)
MP4_BRANDS = frozenset({b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42",
                        b"avc1", b"M4V ", b"M4A ", b"dash", b"qt  ", b"3gp4", b"3gp5",
                        b"mmp4", b"MSNV", b"f4v "})
Clip = tuple[str, str | None]           # (video URL, poster URL or None)


def sniff_mp4(head: bytes) -> str | None:
    """``"MP4"`` when the first bytes are an ``ftyp`` box of a known brand, else None."""
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in MP4_BRANDS:
        return "MP4"
    return None


def check_mp4(fileobj: IO[bytes], size: int) -> str:
    """Walk the top-level ISO-BMFF boxes; return the major brand. Raises ImageRejected."""
    fileobj.seek(0)
    pos, types, brand = 0, [], ""
    while pos < size:
        fileobj.seek(pos)
        header = fileobj.read(8)
        if len(header) < 8:
            raise ImageRejected(f"not an MP4: a box header is cut at byte {pos}")
        length, kind = struct.unpack(">I4s", header)
        if length == 1:
            large = fileobj.read(8)
            if len(large) < 8:
                raise ImageRejected(f"not an MP4: a box size is cut at byte {pos}")
            length = struct.unpack(">Q", large)[0]
        elif length == 0:
            length = size - pos
        if length < 8 or pos + length > size:
            raise ImageRejected(f"not an MP4: box {kind!r} at byte {pos} has a bad size "
                                f"({length}, file {size} bytes)")
        if not types:
            if kind != b"ftyp":
                raise ImageRejected("not an MP4: it does not start with an ftyp box")
            brand = fileobj.read(4).decode("latin-1")
        types.append(kind)
        pos += length
    if b"moov" not in types:
        raise ImageRejected("not an MP4: it has no moov box (no movie header)")
    fileobj.seek(0)
    return brand


@dataclass
class DownloadedVideo:
    file: IO[bytes]
    sha256: str
    bytes: int
    brand: str

    def close(self) -> None:
        self.file.close()


def download_video(session: requests.Session, url: str, *, max_bytes: int, timeout_s: float,
                   allowed_hosts: Iterable[str] = (), allow_private: bool = False,
                   headers: Mapping[str, str] | None = None,
                   allowed_networks: Iterable[IPNetwork] = ()) -> DownloadedVideo:
    """Fetch ``url`` into a temporary file and check it is an MP4 (see the module doc)."""
    deadline = time.monotonic() + timeout_s
    request_headers = {"Accept": "video/mp4,video/*", "Accept-Encoding": "identity",
                       **(headers or {})}
    try:
        response = guarded_get(session, url, allowed_hosts=allowed_hosts,
                               allow_private=allow_private, allowed_networks=allowed_networks,
                               timeout_s=(min(timeout_s, 10.0), timeout_s),
                               headers=request_headers)
    except requests.RequestException as exc:
        raise DownloadUnavailable(f"video host unreachable for {redact_url(url)}: {exc}") from exc
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)
    try:
        with response:
            _check_status(response)
            _check_declared_length(response, max_bytes)
            digest, size = _stream_body(response, spool, max_bytes=max_bytes, deadline=deadline,
                                        timeout_s=timeout_s, sniffer=sniff_mp4, what="video")
        brand = check_mp4(spool, size)
    except BaseException:
        spool.close()
        raise
    return DownloadedVideo(spool, digest, size, brand)


@dataclass(frozen=True)
class StoredVideo(StoredImage):
    """A stored clip; ``poster`` is the key of its poster image ("" when none)."""

    poster: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "poster": self.poster}


@dataclass
class VideoRequest:
    """The clips of a finished video step; ``refresh`` fetches their URLs again."""

    base: StoreRequest
    clips: list[Clip]
    refresh: Callable[[], list[Clip]] = field(default=lambda: [])


def store_video_step(sink: Sink, session: requests.Session, req: VideoRequest, *,
                     settings: StorageSettings) -> list[StoredImage]:
    """Store each clip as ``...[-cN].mp4`` and its poster as ``...[-cN]-poster.<ext>``."""
    base = req.base
    limits = download_limits(base, settings)
    if not req.clips:
        raise SourceGone(f"task {base.task_id} finished without a video URL")
    stored: list[StoredImage] = []
    clips = list(req.clips)
    for n in range(len(clips)):
        suffix = "" if len(clips) == 1 else f"-c{n + 1}"
        part = "" if len(clips) == 1 else f"clip{n + 1}"
        video = _fetch_clip(session, clips, n, req.refresh, limits)
        try:
            key = image_key(settings.key_template, job_id=base.job_id,
                            step_index=base.step_index, label=base.label, ext="mp4",
                            suffix=suffix)
            poster = ""
            if clips[n][1]:
                try:
                    poster_image = download_image(session, clips[n][1], **limits,
                                                  max_pixels=settings.max_image_pixels)
                except SourceExpired:
                    poster_image = None          # the clip matters; its poster is a bonus
                if poster_image is not None:
                    with poster_image:
                        poster = _put_image(sink, settings, base, poster_image,
                                            f"{suffix}-poster",
                                            f"poster{n + 1}" if part else "poster", stored)
            sink.put(key, video.file, content_type=MP4_TYPE,
                     metadata=object_metadata(base, part=part, sha256_hex=video.sha256),
                     sha256_hex=video.sha256)
            stored.insert(len(stored) - (1 if poster else 0),
                          StoredVideo(key, video.sha256, video.bytes, 0, 0, MP4_TYPE, part,
                                      location=sink.where(key), poster=poster))
        finally:
            video.close()
    return stored


def _fetch_clip(session: requests.Session, clips: list[Clip], n: int,
                refresh: Callable[[], list[Clip]], limits: dict[str, Any]) -> DownloadedVideo:
    try:
        return download_video(session, clips[n][0], **limits)
    except SourceExpired as first:
        fresh = refresh()
        if len(fresh) <= n:
            raise SourceGone(f"video URL expired and refresh did not help ({first})") from first
        clips[n] = fresh[n]
        try:
            return download_video(session, clips[n][0], **limits)
        except SourceExpired as second:
            raise SourceGone(f"video URL expired and refresh did not help ({second})") \
                from second


def store_full_size(sink: Sink, session: requests.Session, req: StoreRequest, urls: list[str],
                    *, settings: StorageSettings) -> list[StoredImage]:
    """The four full-size images of a grid (``imageUrls``), stored as its quarters
    ``-q1``..``-q4`` instead of cutting the grid."""
    limits = download_limits(req, settings)
    stored: list[StoredImage] = []
    for n, url in enumerate(urls, start=1):
        try:
            image = download_image(session, url, **limits, max_pixels=settings.max_image_pixels)
        except SourceExpired as exc:
            raise SourceGone(f"full-size image {n} expired: {exc}") from exc
        with image:
            _put_image(sink, settings, req, image, f"-q{n}", f"q{n}", stored)
    return stored


def _put_image(sink: Sink, settings: StorageSettings, req: StoreRequest, image: DownloadedImage,
               suffix: str, part: str, out: list[StoredImage]) -> str:
    key = image_key(settings.key_template, job_id=req.job_id, step_index=req.step_index,
                    label=req.label, ext=image.ext, suffix=suffix)
    out.append(put_image(sink, req, key, image.file, image.content_type, image.sha256,
                         image.bytes, image.width, image.height, part))
    return key
