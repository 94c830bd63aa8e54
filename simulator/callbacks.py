"""Callback (notifyHook) delivery, as midjourney-proxy does it.

A plain ``POST`` of the full task JSON with ``Content-Type: application/json``,
no signature, no retries; a non-2xx answer or a transport error only counts as
failed (reference §4). Posts run on a small thread pool, so they may arrive out
of order. The *decisions* (drop, duplicate, delay, reorder) are taken by the
simulator; this module only waits for each post's due time and sends it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

CALLBACK_POOL_WORKERS = 8
CALLBACK_TIMEOUT_S = 10.0


@dataclass(order=True)
class _Pending:
    due_s: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    meta: dict[str, Any] = field(compare=False)


ResultHook = Callable[[dict[str, Any], bool, int | None, str | None], None]


class CallbackDispatcher:
    """Delays, then posts callbacks from a thread pool; reports each result to ``on_result``.

    ``on_result(meta, ok, http_status, error)`` is called from a pool thread.
    """

    def __init__(
        self,
        on_result: ResultHook,
        workers: int = CALLBACK_POOL_WORKERS,
        timeout_s: float = CALLBACK_TIMEOUT_S,
    ) -> None:
        self._on_result = on_result
        self._timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mjsim-callback")
        self._local = threading.local()
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mjsim-callback-timer", daemon=True)
        self._thread.start()

    def submit(
        self, url: str, payload: dict[str, Any], delay_ms: int, meta: dict[str, Any]
    ) -> None:
        """Queue one POST of ``payload`` to ``url`` after ``delay_ms``."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        item = _Pending(time.monotonic() + delay_ms / 1000, next(self._seq), url, body, meta)
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, item)
            self._cond.notify()

    def clear(self) -> None:
        """Forget callbacks that are not yet due."""
        with self._cond:
            self._heap.clear()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                    not self._heap or self._heap[0].due_s > time.monotonic()
                ):
                    timeout = self._heap[0].due_s - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                item = heapq.heappop(self._heap)
            try:
                self._pool.submit(self._post, item)
            except RuntimeError:  # pool shut down
                return

    def _post(self, item: _Pending) -> None:
        try:
            session = getattr(self._local, "session", None)
            if session is None:
                session = self._local.session = requests.Session()
            resp = session.post(
                item.url,
                data=item.body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout_s,
            )
            ok = 200 <= resp.status_code < 300
            self._on_result(item.meta, ok, resp.status_code, None)
        except requests.RequestException as exc:
            self._on_result(item.meta, False, None, type(exc).__name__)
