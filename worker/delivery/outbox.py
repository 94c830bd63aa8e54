"""Durable outgoing webhooks: a Redis outbox with a retry schedule, a log and replay.

Every event for a consumer becomes one *delivery* (a Redis hash) that lives until its
job is purged. Deliveries are scheduled in a sorted set scored by the next attempt time;
a periodic task calls :func:`deliver_due`, which claims due deliveries atomically and
sends them. Nothing waits inside Celery (no countdowns/ETAs: the schedule spans ~3 days,
far beyond the Redis visibility timeout).

Keys (all from :class:`worker.keys.Keys`):

    delivery(id)          hash  id, job_id, url, body (exact JSON sent), msg_id (webhook-id),
                                type, state, attempts, replays, created_at, next_at,
                                last_status, last_error, last_attempt_at, delivered_at,
                                finished_at, claim, claimed_until, secret (per-endpoint, opt.)
    delivery_log(id)      list  one JSON entry per attempt: at, attempt, status, latency_ms,
                                error, result (capped at LOG_MAX_ENTRIES)
    job_deliveries(job)   list  delivery ids of the job, in creation order
    deliveries_due()      zset  pending delivery id -> next attempt time (unix s); while an
                                attempt is in flight, the score is its lease expiry
    deliveries_failed()   zset  delivery id -> time it gave up (replay removes it)
    endpoints_disabled()  set   consumer URLs that answered 410 Gone
    counter("webhook_attempts")  hash  attempts by result class (2xx, 5xx, timeout, ...)

Claiming: one Lua script takes the due ids (score <= now), moves each one's score to a
lease expiry (now + timeout + margin), bumps its attempt counter and stamps a claim
token, all atomically; so two workers never send the same attempt at once, and a worker
that dies mid-attempt only delays the delivery until the lease runs out. The result is
written by a second script that applies it only if the claim token still matches (a
replay or an expired lease makes the late result a log entry only).

States: ``pending`` (scheduled or in flight) -> ``delivered`` | ``failed`` (schedule
exhausted, no secret, refused by the SSRF guard) | ``disabled`` (endpoint answered 410,
or was already disabled). :func:`replay` puts any delivery back to ``pending``.

Schedule: :data:`RETRY_SCHEDULE_S` is the Standard Webhooks example; entry *n* is the
delay before attempt *n+1* (entry 0 = immediately at enqueue), so there are
``len(schedule)`` attempts in all, each retry delay jittered by ±``JITTER_FRACTION``.
Secrets are never logged nor returned by :func:`delivery_log`.

Queueing an event lives in :mod:`worker.delivery.queue`; the read/repair side
(:func:`replay`, :func:`delivery_log`, the gauges, purge) in
:mod:`worker.delivery.history`; the Lua in
:mod:`worker.delivery.scripts`; one HTTP attempt and its classification (which answers
are retried: every non-2xx except 410) in :mod:`worker.delivery.sender`. The Redis client
must be created with ``decode_responses=True`` (as :mod:`worker.redis_conn` does).
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import requests
from standardwebhooks.webhooks import Webhook

from worker.delivery import scripts
from worker.delivery.events import iso_utc
from worker.delivery.queue import DISABLED_REASON, State
from worker.delivery.sender import CONNECT_TIMEOUT_S, SendResult, Verdict, post, signed_headers
from worker.errors import PermanentError, RetryableError, UnsafeURL
from worker.keys import Keys
from worker.settings import Settings
from worker.storage.ssrf import Resolver, check_url, parse_networks

log = logging.getLogger("mjflow.delivery")

#: Delay before each attempt, in seconds: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
#: 10 h, 14 h, 20 h, 24 h (~75 h 35 min in all). Ten attempts, then ``failed``.
RETRY_SCHEDULE_S: tuple[float, ...] = (
    0,
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)
#: Each retry delay is multiplied by a uniform factor in [1 - f, 1 + f].
JITTER_FRACTION = 0.15
#: Extra seconds a claim lease lasts beyond the request timeouts.
LEASE_MARGIN_S = 30.0
#: Attempts kept per delivery log (replays append; the oldest are dropped).
LOG_MAX_ENTRIES = 200
DEFAULT_LIMIT = 50
DEFAULT_CONCURRENCY = 8

NO_SECRET_REASON = (
    "no webhook secret: set MJFLOW_WEBHOOK_SECRET (whsec_...) or give the endpoint a secret,"
    " then replay"
)
BAD_SECRET_REASON = "invalid webhook secret (expected whsec_<base64>), fix it and replay"


# --- claiming and attempting ------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    state: State
    next_at: float | None
    status: int | None
    latency_ms: int | None
    error: str | None
    result_class: str
    disable_endpoint: bool = False


def _lease_s(settings: Settings) -> float:
    return settings.delivery_timeout_s + CONNECT_TIMEOUT_S + LEASE_MARGIN_S


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _retry_delay_s(
    attempt_no: int,
    schedule_s: Sequence[float],
    jitter_fraction: float,
    retry_after_s: float | None,
) -> float | None:
    """Delay before attempt ``attempt_no + 1``, or None when the schedule is exhausted."""
    if attempt_no >= len(schedule_s):
        return None
    delay_s = float(schedule_s[attempt_no])
    if jitter_fraction:
        delay_s *= 1 + random.uniform(-jitter_fraction, jitter_fraction)
    if retry_after_s is not None:
        delay_s = max(delay_s, min(retry_after_s, float(max(schedule_s))))
    return max(delay_s, 0.0)


def _failure(
    attempt_no: int,
    now_s: float,
    status: int | None,
    latency_ms: int | None,
    error: str,
    result_class: str,
    schedule_s: Sequence[float],
    jitter_fraction: float,
    retry_after_s: float | None = None,
) -> _Outcome:
    delay_s = _retry_delay_s(attempt_no, schedule_s, jitter_fraction, retry_after_s)
    if delay_s is None:
        error = f"gave up after {attempt_no} attempts; last: {error}"
        return _Outcome(State.FAILED, None, status, latency_ms, error, result_class)
    return _Outcome(State.PENDING, now_s + delay_s, status, latency_ms, error, result_class)


def _send(
    fields: Mapping[str, str],
    attempt_no: int,
    *,
    settings: Settings,
    session: requests.Session,
    now_s: float,
    schedule_s: Sequence[float],
    jitter_fraction: float,
    resolver: Resolver | None = None,
) -> _Outcome:
    """Check, sign and POST one claimed delivery; never raises for consumer-side trouble."""
    url = fields["url"]
    secret = fields.get("secret") or settings.webhook_secret
    if not secret:
        return _Outcome(State.FAILED, None, None, None, NO_SECRET_REASON, "no_secret")
    try:
        signer = Webhook(secret)
    except Exception:  # noqa: BLE001 - the library raises several types; the secret stays out
        return _Outcome(State.FAILED, None, None, None, BAD_SECRET_REASON, "bad_secret")
    try:
        checked = check_url(
            url,
            allow_private=settings.allow_private_urls,
            allowed_networks=parse_networks(settings.allowed_private_networks),
            resolver=resolver,
        )
    except UnsafeURL as exc:
        return _Outcome(
            State.FAILED, None, None, None, f"refused by the SSRF guard: {exc}", "refused"
        )
    except PermanentError as exc:
        return _Outcome(State.FAILED, None, None, None, f"bad callback URL: {exc}", "refused")
    except RetryableError as exc:  # DNS trouble: often transient, try again per schedule
        return _failure(
            attempt_no, now_s, None, None, str(exc)[:300], "error", schedule_s, jitter_fraction
        )
    body = fields["body"]
    headers = signed_headers(signer, fields["msg_id"], body)
    res: SendResult = post(
        session, url, body, headers, timeout_s=settings.delivery_timeout_s, checked=checked
    )
    if res.verdict is Verdict.REFUSED:
        return _Outcome(
            State.FAILED,
            None,
            None,
            res.latency_ms,
            f"refused by the SSRF guard: {res.error}",
            "refused",
        )
    if res.verdict is Verdict.DELIVERED:
        return _Outcome(State.DELIVERED, None, res.status, res.latency_ms, None, res.result_class)
    if res.verdict is Verdict.DISABLE:
        return _Outcome(
            State.DISABLED,
            None,
            res.status,
            res.latency_ms,
            res.error,
            res.result_class,
            disable_endpoint=True,
        )
    return _failure(
        attempt_no,
        now_s,
        res.status,
        res.latency_ms,
        res.error or "failed",
        res.result_class,
        schedule_s,
        jitter_fraction,
        res.retry_after_s,
    )


def _attempt_claimed(
    r: redis.Redis,
    keys: Keys,
    delivery_id: str,
    attempt_no: int,
    token: str,
    *,
    settings: Settings,
    session: requests.Session,
    now_s: float,
    schedule_s: Sequence[float],
    jitter_fraction: float,
    resolver: Resolver | None = None,
) -> State | None:
    fields: dict[str, str] = r.hgetall(keys.delivery(delivery_id))  # type: ignore[assignment]
    if not fields or "url" not in fields:
        r.zrem(keys.deliveries_due(), delivery_id)
        return None
    url = fields["url"]
    if r.sismember(keys.endpoints_disabled(), url):
        outcome = _Outcome(State.DISABLED, None, None, None, DISABLED_REASON, "disabled")
    else:
        outcome = _send(
            fields,
            attempt_no,
            settings=settings,
            session=session,
            now_s=now_s,
            schedule_s=schedule_s,
            jitter_fraction=jitter_fraction,
            resolver=resolver,
        )
    entry = {
        "at": iso_utc(now_s),
        "attempt": attempt_no,
        "status": outcome.status,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
        "result": outcome.state.value if outcome.state is not State.PENDING else "retry",
    }
    if outcome.next_at is not None:
        entry["next_at"] = iso_utc(outcome.next_at)
    applied = r.eval(
        scripts.FINISH,
        5,
        keys.delivery(delivery_id),
        keys.delivery_log(delivery_id),
        keys.deliveries_due(),
        keys.deliveries_failed(),
        keys.endpoints_disabled(),
        token,
        json.dumps(entry),
        outcome.state.value,
        repr(outcome.next_at) if outcome.next_at is not None else "",
        repr(now_s),
        "" if outcome.status is None else str(outcome.status),
        outcome.error or "",
        delivery_id,
        url,
        str(LOG_MAX_ENTRIES),
        "1" if outcome.disable_endpoint else "0",
    )
    r.hincrby(keys.counter("webhook_attempts"), outcome.result_class, 1)
    # Only the host and the result class: URLs and error texts may carry consumer tokens.
    log.log(
        logging.DEBUG if outcome.result_class == "2xx" else logging.INFO,
        "webhook %s (%s) attempt %d to %s: %s [%s] %s ms",
        delivery_id,
        fields.get("type"),
        attempt_no,
        _host(url),
        entry["result"],
        outcome.result_class,
        outcome.latency_ms,
    )
    if not applied:
        log.warning(
            "webhook %s: claim lost during attempt %d; result only logged", delivery_id, attempt_no
        )
    return outcome.state


def _new_session() -> requests.Session:
    return requests.Session()


def _claim_due(
    r: redis.Redis, keys: Keys, *, now_s: float, limit: int, lease_s: float, token: str
) -> list[tuple[str, int]]:
    flat = r.eval(
        scripts.CLAIM_DUE,
        1,
        keys.deliveries_due(),
        repr(now_s),
        str(limit),
        repr(now_s + lease_s),
        token,
        keys.delivery(""),
    )
    return [(str(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]


def deliver_due(
    r: redis.Redis,
    keys: Keys,
    *,
    settings: Settings,
    now: float | None = None,
    limit: int = DEFAULT_LIMIT,
    session: requests.Session | None = None,
    schedule_s: Sequence[float] = RETRY_SCHEDULE_S,
    jitter_fraction: float = JITTER_FRACTION,
    concurrency: int = DEFAULT_CONCURRENCY,
    resolver: Resolver | None = None,
) -> int:
    """Attempt up to ``limit`` due deliveries, ``concurrency`` at a time; return how many.

    Claims ``concurrency`` at a time so each lease only has to cover one request. Safe to
    call from several workers at once. ``now`` (unix s) defaults to the clock; the
    ``webhook-timestamp`` header always uses the real clock.
    """
    own = session is None
    sess = session or _new_session()
    done = 0
    pool = ThreadPoolExecutor(max_workers=concurrency) if concurrency > 1 else None
    try:
        while done < limit:
            now_s = time.time() if now is None else now
            token = uuid.uuid4().hex
            claimed = _claim_due(
                r,
                keys,
                now_s=now_s,
                limit=min(max(concurrency, 1), limit - done),
                lease_s=_lease_s(settings),
                token=token,
            )
            if not claimed:
                break

            def run(item: tuple[str, int], now_s: float = now_s, token: str = token) -> None:
                try:
                    _attempt_claimed(
                        r,
                        keys,
                        item[0],
                        item[1],
                        token,
                        settings=settings,
                        session=sess,
                        now_s=now_s,
                        schedule_s=schedule_s,
                        jitter_fraction=jitter_fraction,
                        resolver=resolver,
                    )
                except Exception:
                    log.exception("webhook %s: attempt crashed", item[0])

            if pool is None:
                for item in claimed:
                    run(item)
            else:
                list(pool.map(run, claimed))
            done += len(claimed)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        if own:
            sess.close()
    return done


def attempt(
    r: redis.Redis,
    keys: Keys,
    delivery_id: str,
    *,
    settings: Settings,
    now: float | None = None,
    session: requests.Session | None = None,
    schedule_s: Sequence[float] = RETRY_SCHEDULE_S,
    jitter_fraction: float = JITTER_FRACTION,
    resolver: Resolver | None = None,
) -> State | None:
    """Claim and attempt one pending delivery now, whatever its due time.

    Returns the state after the attempt, or None when the delivery is not pending or is
    being attempted by someone else (nothing is sent then).
    """
    now_s = time.time() if now is None else now
    token = uuid.uuid4().hex
    lease_until = now_s + _lease_s(settings)
    attempt_no = r.eval(
        scripts.CLAIM_ONE,
        2,
        keys.delivery(delivery_id),
        keys.deliveries_due(),
        repr(now_s),
        repr(lease_until),
        token,
        delivery_id,
    )
    if not attempt_no:
        return None
    sess = session or _new_session()
    try:
        return _attempt_claimed(
            r,
            keys,
            delivery_id,
            int(attempt_no),
            token,
            settings=settings,
            session=sess,
            now_s=now_s,
            schedule_s=schedule_s,
            jitter_fraction=jitter_fraction,
            resolver=resolver,
        )
    finally:
        if session is None:
            sess.close()


__all__ = ["JITTER_FRACTION", "RETRY_SCHEDULE_S", "attempt", "deliver_due"]
