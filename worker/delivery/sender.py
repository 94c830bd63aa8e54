"""One signed HTTP POST of an event to a consumer, and what its answer means.

This module knows HTTP and the Standard Webhooks signature and nothing about Redis:
``outbox`` decides *when* to send and records the result; here we sign, send and classify.

Signing (Standard Webhooks, symmetric ``v1``): the signed content is
``{webhook-id}.{webhook-timestamp}.{body}``, HMAC-SHA256 with the ``whsec_`` secret, via
the ``standardwebhooks`` library. ``webhook-id`` is the delivery's message id (stable
across retries and replays, the consumer's idempotency key); ``webhook-timestamp`` is
the attempt time (so a retry hours later still passes the consumer's ±5 min tolerance).
The exact body bytes that were signed are the bytes sent.

Verdicts (the spec: "2xx = success, anything else = failure"):

    2xx                     delivered
    410 Gone                disable the endpoint (no further deliveries until a forced replay)
    429, 5xx                retry per schedule (Retry-After honoured, capped)
    3xx                     retry per schedule: redirects are never followed (SSRF), and a
                            consumer that moved must update its callbackUrl; counting it as a
                            failed attempt, like the spec says, lets a temporary redirect heal
    other 4xx (400/401/...) retry per schedule too: an auth or routing mistake on the
                            consumer side is often fixed within the ~3 days the schedule spans
    timeout / conn. error   retry per schedule
    refused by the guard    refused (the pinned connection would go to a host other than
                            the one checked); the delivery fails. The POST connects to the
                            address the SSRF guard checked (``checked``), never re-resolved
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import requests
from standardwebhooks.webhooks import Webhook

from worker.errors import UnsafeURL
from worker.storage.pinning import CheckedURL
from worker.storage.ssrf import send_checked

USER_AGENT = "mjflow-webhooks/0.1"
CONNECT_TIMEOUT_S = 5.0
MAX_RETRY_AFTER_S = 24 * 3600.0
ERROR_MAX_CHARS = 300


class Verdict(str, Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DISABLE = "disable"
    REFUSED = "refused"


@dataclass(frozen=True)
class SendResult:
    """What one POST produced. ``status`` is None when no HTTP answer arrived."""

    verdict: Verdict
    status: int | None
    latency_ms: int
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def result_class(self) -> str:
        """A low-cardinality label for metrics: 2xx/3xx/4xx/5xx/timeout/error."""
        if self.status is None:
            return "timeout" if self.error and self.error.startswith("timeout") else "error"
        return f"{self.status // 100}xx"


def signed_headers(
    signer: Webhook, msg_id: str, body: str, *, timestamp_s: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (plus content type and agent)."""
    when = datetime.fromtimestamp(time.time() if timestamp_s is None else timestamp_s, UTC)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signer.sign(msg_id, when, body),
    }


def classify(status: int) -> Verdict:
    """The verdict for an HTTP status (see the module table)."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.DISABLE
    return Verdict.RETRY


def parse_retry_after_s(value: str | None, *, now_s: float | None = None) -> float | None:
    """``Retry-After`` (delta seconds or HTTP date) in seconds, capped; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        delay_s = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay_s = when.timestamp() - (time.time() if now_s is None else now_s)
    if not math.isfinite(delay_s):
        return None
    return min(max(delay_s, 0.0), MAX_RETRY_AFTER_S)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]


def post(
    session: requests.Session,
    url: str,
    body: str,
    headers: dict[str, str],
    *,
    timeout_s: float,
    checked: CheckedURL | None = None,
) -> SendResult:
    """POST ``body`` once, without following redirects, and classify the answer.

    Only the status line and headers are awaited (``stream=True``); the response body is
    never read, so a consumer that trickles a huge answer cannot hold the worker.
    With ``checked`` (what :func:`worker.storage.ssrf.check_url` approved) the connection
    goes to the checked address, keeping the name for Host and TLS.
    """
    started = time.monotonic()
    options = {
        "data": body.encode("utf-8"),
        "headers": headers,
        "timeout": (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s),
        "allow_redirects": False,
        "stream": True,
    }
    try:
        if checked is None:
            resp = session.post(url, **options)
        else:
            resp = send_checked(session, checked, "POST", url, **options)
    except UnsafeURL as exc:
        latency_ms = int((time.monotonic() - started) * 1000)
        return SendResult(Verdict.REFUSED, None, latency_ms, str(exc)[:ERROR_MAX_CHARS])
    except requests.Timeout as exc:
        latency_ms = int((time.monotonic() - started) * 1000)
        error = f"timeout after {timeout_s:g} s ({_short(exc)})"[:ERROR_MAX_CHARS]
        return SendResult(Verdict.RETRY, None, latency_ms, error)
    except requests.RequestException as exc:
        latency_ms = int((time.monotonic() - started) * 1000)
        return SendResult(Verdict.RETRY, None, latency_ms, _short(exc))
    latency_ms = int((time.monotonic() - started) * 1000)
    try:
        status = resp.status_code
        verdict = classify(status)
        error: str | None = None
        retry_after_s: float | None = None
        if verdict is not Verdict.DELIVERED:
            error = f"HTTP {status} {resp.reason or ''}".strip()
            if 300 <= status < 400:
                location = resp.headers.get("location")
                error += (
                    f" (redirect to {location!r} not followed)"
                    if location
                    else " (redirect not followed)"
                )
            elif status == 410:
                error += " (endpoint disabled)"
            retry_after_s = parse_retry_after_s(resp.headers.get("retry-after"))
        return SendResult(verdict, status, latency_ms, error, retry_after_s)
    finally:
        resp.close()
