"""``mjflow.Client``: the ``/v1`` API over requests, with typed results and errors.

Retries happen only where repeating a request cannot do anything twice:

- ``GET`` requests;
- ``POST /v1/jobs`` **with** an ``Idempotency-Key`` (the server answers the first job);
- ``POST /v1/batches`` (a batch is idempotent by its name/items and their keys) and
  ``POST /v1/jobs/{id}/cancel`` (cancelling twice is cancelling once).

``POST /v1/jobs`` without a key and ``retry`` are sent once. A retry follows a connection
error or timeout, or a 429/502/503/504 answer; it waits ``Retry-After`` if the server sent
one (capped at ``max_retry_after``), else a jittered exponential backoff (full jitter,
``backoff * 2**attempt`` capped at ``max_backoff``), at most ``retries`` times.
"""
from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Self
from urllib.parse import quote

import requests

from mjflow.errors import (
    MjflowAPIError,
    TransportError,
    WaitTimeout,
    error_from_response,
)
from mjflow.models import Batch, Job

__all__ = ["Client", "new_idempotency_key"]

USER_AGENT = "mjflow-python/0.1"
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def new_idempotency_key() -> str:
    """A fresh random Idempotency-Key (keep it with your record to resend safely)."""
    return f"mjflow-{uuid.uuid4().hex}"


class Client:
    """A client for one mjflow service.

    ``Client("https://mjflow.internal", api_key="...")``; ``timeout`` is the per-request
    timeout in seconds (a number or a ``(connect, read)`` pair).
    """

    def __init__(self, base_url: str, api_key: str | None = None, *,
                 timeout: float | tuple[float, float] = 30.0, retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 8.0,
                 max_retry_after: float = 60.0,
                 session: requests.Session | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __repr__(self) -> str:           # never show the key
        return f"Client({self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ----------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any] | str, *, idempotency_key: str | None = None) -> Job:
        """Create a job from a spec (or a bare prompt). With ``idempotency_key`` the call is
        retried on failure and the same key always answers the same job."""
        body = {"prompt": spec} if isinstance(spec, str) else spec
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.from_dict(self._request("POST", "/v1/jobs", json=body, headers=headers,
                                           safe=idempotency_key is not None))

    def get(self, job_id: str) -> Job:
        """The job, with fresh presigned image URLs and its delivery log."""
        return Job.from_dict(self._request("GET", f"/v1/jobs/{_seg(job_id)}"))

    def wait(self, job_id: str, timeout: float = 1800.0, *, poll: float = 1.0) -> Job:
        """Poll until the job is finished; ``WaitTimeout`` (with ``.job``) if it is not
        within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.finished:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(job, timeout)
            time.sleep(min(poll, left))

    def iter_jobs(self, *, batch: str | None = None, status: str | None = None,
                  created_from: float | str | None = None,
                  created_to: float | str | None = None, page_size: int = 100
                  ) -> Iterator[Job]:
        """Every job matching the filters, newest first, following the API's cursor."""
        params: dict[str, Any] = {"batch": batch, "status": status,
                                  "created_from": created_from, "created_to": created_to,
                                  "limit": page_size}
        params = {k: v for k, v in params.items() if v is not None}
        cursor: str | None = None
        while True:
            page = self._request("GET", "/v1/jobs",
                                 params=params | ({"cursor": cursor} if cursor else {}))
            for item in page.get("items") or ():
                yield Job.from_dict(item)
            cursor = page.get("next")
            if not cursor:
                return

    def cancel(self, job_id: str) -> Job:
        """Cancel the steps that have not started; answers the job."""
        return Job.from_dict(self._request("POST", f"/v1/jobs/{_seg(job_id)}/cancel",
                                           safe=True))

    def retry(self, job_id: str) -> Job:
        """Run the failed steps of a finished job again (``job.raw["retried"]``: how many)."""
        return Job.from_dict(self._request("POST", f"/v1/jobs/{_seg(job_id)}/retry"))

    # -- batches -----------------------------------------------------------------------
    def create_batch(self, items: Iterable[dict[str, Any] | str], *, name: str | None = None,
                     batch_id: str | None = None, then: list[Any] | None = None) -> Batch:
        """Create or resume a batch (specs or prompts); the same name is the same batch."""
        body: dict[str, Any] = {"items": list(items)}
        for k, v in (("name", name), ("batchId", batch_id), ("then", then)):
            if v is not None:
                body[k] = v
        return Batch.from_dict(self._request("POST", "/v1/batches", json=body, safe=True))

    def get_batch(self, batch_id: str) -> Batch:
        return Batch.from_dict(self._request("GET", f"/v1/batches/{_seg(batch_id)}"))

    # -- plumbing ----------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json: Any = None,
                 params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 safe: bool | None = None) -> dict[str, Any]:
        safe = method == "GET" if safe is None else safe
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                resp = self.session.request(method, url, json=json, params=params,
                                            headers=self._auth | (headers or {}),
                                            timeout=self.timeout, allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if safe and attempt < self.retries:
                    self._sleep(attempt, None)
                    attempt += 1
                    continue
                raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
            except requests.RequestException as exc:
                raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
            if resp.status_code < 400:
                return self._json(resp, method, url)
            error = error_from_response(resp)
            if safe and resp.status_code in RETRY_STATUSES and attempt < self.retries:
                self._sleep(attempt, error)
                attempt += 1
                continue
            raise error

    @staticmethod
    def _json(resp: requests.Response, method: str, url: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            raise MjflowAPIError(resp.status_code, "bad_response",
                                 f"{method} {url} did not answer JSON") from None
        if not isinstance(data, dict):
            raise MjflowAPIError(resp.status_code, "bad_response",
                                 f"{method} {url} answered {type(data).__name__}, not an object")
        return data

    def _sleep(self, attempt: int, error: MjflowAPIError | None) -> None:
        if error is not None and error.retry_after is not None:
            delay = min(error.retry_after, self.max_retry_after)
        else:
            delay = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))
        time.sleep(delay)


def _seg(value: str) -> str:
    if not value:
        raise ValueError("an id is required")
    return quote(str(value), safe="")
