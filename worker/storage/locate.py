"""Where a stored object is and how to reach it, from its image record alone.

Every image record keeps the location it was written to (:meth:`Sink.where`): ``sink``
(``s3`` or ``file``), the object's real ``key`` (S3: in its bucket, prefix included),
``bucket`` and ``endpoint`` (S3), ``path`` (files) and ``uri``. :class:`Objects` builds an
image's URL from that record, not from the current ``MJFLOW_STORAGE_URL``, so switching
storage does not turn earlier images into wrong links; and it says whether the object is
still there (``available`` and, when not, ``unavailableReason``: "stored in s3://… which no
longer has it"), checked cheaply: a HEAD (or a stat for files) only when asked, with a
short timeout, several at once, the answers cached for :data:`CHECK_TTL_S`.

Records made before locations were kept (a ``key`` relative to the sink, nothing else)
are read as objects of the current sink.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from worker.storage.s3sink import make_s3_client
from worker.storage.sink import Sink

LOCATION_FIELDS = ("sink", "key", "bucket", "path", "uri", "endpoint")
CHECK_TTL_S = 60.0
CHECK_CACHE_MAX = 20_000
CHECK_THREADS = 8
PROBE_TIMEOUT_S = 3.0
GONE_CODES = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def located(record: dict[str, Any]) -> bool:
    return record.get("sink") in ("s3", "file") and bool(record.get("uri"))


class Objects:
    """Image records → what the API and the dashboard show of them (see the module doc)."""

    def __init__(self, sink: Sink, *, presign_ttl_s: int, check_ttl_s: float = CHECK_TTL_S) -> None:
        self.sink = sink
        self.presign_ttl_s = presign_ttl_s
        self.check_ttl_s = check_ttl_s
        self._clients: dict[str | None, Any] = {}
        self._checked: dict[str, tuple[float, bool, str | None]] = {}
        self._lock = threading.Lock()

    # -- records -------------------------------------------------------------------------
    def record(self, image: dict[str, Any]) -> dict[str, Any]:
        """The record with its location (an old record: in the current sink)."""
        if located(image):
            return dict(image)
        return dict(image) | self.sink.where(image["key"])

    def show(self, images: Iterable[dict[str, Any]], *, url: bool = True,
             check: bool = False) -> list[dict[str, Any]]:
        """The records as views show them: located, with ``url`` (and the thumbnail's),
        and with ``available``/``unavailableReason`` when ``check``."""
        out = [self.record(img) for img in images]
        if url:
            for rec in out:
                rec["url"] = self.url(rec)
                if rec.get("thumbnail"):
                    rec["thumbnail"] = dict(rec["thumbnail"]) | {"url": self.url(rec["thumbnail"])}
        if check:
            for rec, (ok, reason) in zip(out, self.check(out)):
                rec["available"] = ok
                rec["unavailableReason"] = reason
        return out

    # -- reaching them ---------------------------------------------------------------------
    def url(self, rec: dict[str, Any]) -> str | None:
        """A URL to read the object: presigned for S3 (``MJFLOW_PRESIGN_TTL_S``), ``file://``
        for files."""
        if rec.get("sink") == "file":
            return Path(rec["path"]).as_uri() if rec.get("path") else None
        if rec.get("sink") != "s3":
            return None
        try:
            return self._client(rec.get("endpoint")).generate_presigned_url(
                "get_object", Params={"Bucket": rec["bucket"], "Key": rec["key"]},
                ExpiresIn=int(self.presign_ttl_s))
        except (BotoCoreError, ClientError, KeyError, ValueError):
            return None

    def origin(self, rec: dict[str, Any]) -> str | None:
        """``scheme://host[:port]`` of the object's URL (for a page's image policy), or None
        for files (served by the app itself)."""
        if rec.get("sink") != "s3":
            return None
        url = self.url(rec)
        if not url:
            return None
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def check(self, records: list[dict[str, Any]]) -> list[tuple[bool, str | None]]:
        """(available, reason when not) of each record; S3 objects are HEADed a few at a
        time, each answer kept :data:`CHECK_TTL_S` seconds."""
        now = time.monotonic()
        out: list[tuple[bool, str | None] | None] = []
        todo: list[int] = []
        for i, rec in enumerate(records):
            if rec.get("sink") == "file":
                out.append(_file_state(rec))
                continue
            with self._lock:
                hit = self._checked.get(rec.get("uri") or "")
            if hit and hit[0] > now:
                out.append((hit[1], hit[2]))
            else:
                out.append(None)
                todo.append(i)
        if todo:
            if len(todo) == 1:
                answers = [self._head(records[todo[0]])]
            else:
                with ThreadPoolExecutor(min(CHECK_THREADS, len(todo))) as pool:
                    answers = list(pool.map(self._head, (records[i] for i in todo)))
            with self._lock:
                if len(self._checked) + len(todo) > CHECK_CACHE_MAX:
                    self._checked.clear()
                for i, answer in zip(todo, answers):
                    self._checked[records[i].get("uri") or ""] = (now + self.check_ttl_s, *answer)
                    out[i] = answer
        return [o if o is not None else (False, "not checked") for o in out]

    def _head(self, rec: dict[str, Any]) -> tuple[bool, str | None]:
        where = rec.get("uri") or "?"
        if rec.get("sink") != "s3" or not rec.get("bucket"):
            return False, f"no location recorded for {rec.get('key')!r}"
        try:
            self._client(rec.get("endpoint")).head_object(Bucket=rec["bucket"], Key=rec["key"])
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in GONE_CODES:
                return False, f"stored in {where} which no longer has it"
            return False, f"stored in {where}, which refused to say if it still has it ({code})"
        except BotoCoreError as exc:
            return False, f"stored in {where}, which cannot be reached now ({type(exc).__name__})"
        return True, None

    def _client(self, endpoint: str | None) -> Any:
        """An S3 client for ``endpoint`` with short timeouts and no retries (presigning is
        local; a HEAD must not hold a page)."""
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                client = make_s3_client(max_attempts=1, connect_timeout_s=PROBE_TIMEOUT_S,
                                        read_timeout_s=PROBE_TIMEOUT_S, endpoint_url=endpoint)
                self._clients[endpoint] = client
            return client


def _file_state(rec: dict[str, Any]) -> tuple[bool, str | None]:
    path = rec.get("path")
    if path and Path(path).is_file():
        return True, None
    return False, f"stored in {path or rec.get('uri')} which no longer has it"
