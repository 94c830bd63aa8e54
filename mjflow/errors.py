"""The errors the SDK raises, mapped once from the API's error bodies.

Every error the ``/v1`` API sends has the body ``{"error", "message", "details"?}``
(``docs/api.md``). :func:`error_from_response` turns an answer into one class of this tree::

    MjflowError
    ├── MjflowAPIError            the API answered with an error (.status, .code, .message, .body)
    │   ├── InvalidSpec           400/422 invalid_request (.details: [{path, message}], .paths)
    │   ├── AuthError             401/403: no or wrong API key
    │   ├── NotFound              404: no such job or batch
    │   ├── Conflict              409: an Idempotency-Key reused with another body
    │   ├── PayloadTooLarge       413
    │   ├── UnsupportedMediaType  415
    │   ├── RateLimited           429 (.retry_after seconds, if the API said)
    │   ├── Unavailable           502/503/504: the job store or a proxy is down; retry later
    │   └── ServerError           any other 5xx
    ├── TransportError            no answer at all (connection refused, timeout)
    ├── WaitTimeout               Client.wait() ran out of time (.job: the job as last seen)
    ├── EventVerificationError    a webhook's signature, timestamp or body is not valid
    └── InvalidSecret             the signing secret given to verify_event is malformed
"""
from __future__ import annotations

import email.utils
import math
import time
from typing import Any

import requests

MAX_MESSAGE_CHARS = 300


class MjflowError(Exception):
    """Root of every error the SDK raises."""


class MjflowAPIError(MjflowError):
    """The API answered with an error status."""

    def __init__(self, status: int, code: str, message: str, *,
                 details: list[dict[str, Any]] | None = None, body: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.body = body
        self.retry_after = retry_after


class InvalidSpec(MjflowAPIError):
    """The request (400) or one of its fields (422) is invalid; ``details`` names them."""

    @property
    def paths(self) -> list[str]:
        return [str(d.get("path")) for d in self.details]


class AuthError(MjflowAPIError):
    """No API key, or not one of ``MJFLOW_API_KEYS``."""


class NotFound(MjflowAPIError):
    """No such job or batch (or purged after retention)."""


class Conflict(MjflowAPIError):
    """The Idempotency-Key was used before with another body."""


class PayloadTooLarge(MjflowAPIError):
    """The body is over the server's limit."""


class UnsupportedMediaType(MjflowAPIError):
    """The body's Content-Type is not one the route takes."""


class RateLimited(MjflowAPIError):
    """Too many requests; ``retry_after`` says when to come back, if known."""


class Unavailable(MjflowAPIError):
    """The service cannot answer now (Redis down, a proxy's 502/504): retry later."""


class ServerError(MjflowAPIError):
    """Any other 5xx."""


class TransportError(MjflowError):
    """No HTTP answer: connection refused or reset, DNS failure, timeout."""


class WaitTimeout(MjflowError):
    """``Client.wait`` gave up; ``job`` is the job as it was last seen."""

    def __init__(self, job: Any, timeout: float) -> None:
        super().__init__(f"job {getattr(job, 'id', job)} not finished after {timeout:g} s "
                         f"(status {getattr(job, 'status', '?')})")
        self.job = job


class EventVerificationError(MjflowError):
    """A webhook event failed verification: missing headers, bad signature, stale or
    future timestamp, or a body that is not an mjflow event."""


class InvalidSecret(MjflowError, ValueError):
    """The secret is not a Standard Webhooks secret (``whsec_`` + base64)."""


_BY_STATUS: dict[int, type[MjflowAPIError]] = {
    400: InvalidSpec, 401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 415: UnsupportedMediaType, 422: InvalidSpec, 429: RateLimited,
    502: Unavailable, 503: Unavailable, 504: Unavailable,
}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) as seconds from now; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def error_from_response(resp: requests.Response) -> MjflowAPIError:
    """The typed error for an error answer (any status >= 400)."""
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or "error")
        message = str(body.get("message") or resp.reason or "")
        details = body.get("details") if isinstance(body.get("details"), list) else None
    else:
        code = (resp.reason or "error").lower().replace(" ", "_")
        message = (resp.text or "").strip()[:MAX_MESSAGE_CHARS] or resp.reason or ""
        details = None
    status = resp.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else MjflowAPIError)
    return cls(status, code, message[:MAX_MESSAGE_CHARS], details=details, body=body,
               retry_after=parse_retry_after(resp.headers.get("Retry-After")))
