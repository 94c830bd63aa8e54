"""Outgoing webhooks against a real receiver on loopback and a real Redis.

The receiver is a threaded HTTP server that verifies every request with
``standardwebhooks`` and answers from a per-path script (500 N times then 200, 410,
301, slow...). Retry delays are injected (``schedule_s``) so the whole file runs in
seconds; jitter is off unless a test is about it.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import requests
from standardwebhooks.webhooks import Webhook

from worker.delivery import (
    RETRY_SCHEDULE_S,
    State,
    attempt,
    build_event,
    deliver_due,
    delivery_log,
    enqueue,
    failed_count,
    get_delivery,
    notify_job,
    pending_count,
    purge_job_deliveries,
    replay,
)
from worker.delivery.outbox import _claim_due
from worker.keys import Keys
from worker.settings import Settings, load_settings

FAST_S = (0, 0.05, 0.05, 0.05)  # four attempts, 50 ms apart


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET = new_secret()


# --- the receiver ---------------------------------------------------------------------

Behaviour = int | dict[str, Any]  # a status, or {"status", "sleep_s", "headers"}


class Receiver:
    """Records every POST (verified or not) and answers from a script per path."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.scripts: dict[str, list[Behaviour]] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                receiver.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def script(self, path: str, *behaviours: Behaviour, secret: str | None = None) -> str:
        """Answer ``behaviours`` in order on ``path``; the last one repeats."""
        self.scripts[path] = list(behaviours)
        if secret:
            self.secrets[path] = secret
        return self.url(path)

    def _next(self, path: str) -> dict[str, Any]:
        with self.lock:
            script = self.scripts.get(path) or [200]
            b = script.pop(0) if len(script) > 1 else script[0]
        return {"status": b} if isinstance(b, int) else b

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in h.headers.items()}
        try:
            payload = Webhook(self.secrets.get(h.path, SECRET)).verify(body, headers)
            verified, error = True, None
        except Exception as exc:  # noqa: BLE001
            payload, verified, error = None, False, repr(exc)
        with self.lock:
            self.requests.append(
                {
                    "path": h.path,
                    "headers": headers,
                    "body": body,
                    "payload": payload,
                    "verified": verified,
                    "error": error,
                    "at": time.time(),
                }
            )
        b = self._next(h.path)
        if b.get("sleep_s"):
            time.sleep(b["sleep_s"])
        try:
            h.send_response(b["status"])
            for name, value in (b.get("headers") or {}).items():
                h.send_header(name, value)
            h.send_header("content-length", "2")
            h.end_headers()
            h.wfile.write(b"ok")
        except OSError:  # the client gave up (timeout test)
            pass

    def on(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [req for req in self.requests if req["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rcv = Receiver()
    yield rcv
    rcv.close()


@pytest.fixture
def r(rds: redis.Redis) -> redis.Redis:
    """The real Redis (conftest ``rds``: this test's prefix is wiped afterwards)."""
    return rds


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False  # no proxy for the loopback receiver
    yield s
    s.close()


def delivery_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_secret": SECRET,
        "allow_private_urls": True,
        "delivery_timeout_s": 0.5,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings() -> Settings:
    return delivery_settings()


def job_view(job_id: str = "job_1", status: str = "succeeded", url: str | None = None) -> dict:
    return {
        "id": job_id,
        "status": status,
        "batch": "b1",
        "metadata": {"sku": "A-113"},
        "createdAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:01:00Z",
        "callbackUrl": url,
        "steps": [
            {
                "id": "s1",
                "parent": None,
                "label": "IMAGINE",
                "action": "IMAGINE",
                "status": "succeeded",
                "progress": "100%",
                "taskId": "t1",
                "failReason": None,
                "images": [
                    {
                        "key": "job_1/00-IMAGINE.png",
                        "url": "file:///x.png",
                        "sha256": "ab",
                        "bytes": 10,
                        "width": 2,
                        "height": 2,
                    }
                ],
            },
            {
                "id": "s2",
                "parent": "s1",
                "label": "U1",
                "action": "UPSCALE",
                "status": "succeeded",
                "progress": "100%",
                "taskId": "t2",
                "failReason": None,
                "images": [
                    {
                        "key": "job_1/01-U1.png",
                        "url": "file:///y.png",
                        "sha256": "cd",
                        "bytes": 11,
                        "width": 4,
                        "height": 4,
                    }
                ],
            },
        ],
    }


def event(job_id: str = "job_1") -> dict:
    return build_event("job.succeeded", job_view(job_id))


def drain(
    r: redis.Redis,
    keys: Keys,
    settings: Settings,
    session: requests.Session,
    done: Callable[[], bool],
    *,
    schedule_s: tuple[float, ...] = FAST_S,
    timeout_s: float = 8.0,
) -> None:
    """Call deliver_due on the real clock until ``done()`` (or fail after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "deliveries did not settle in time"
        deliver_due(
            r, keys, settings=settings, session=session, schedule_s=schedule_s, jitter_fraction=0
        )
        time.sleep(0.02)


def state_of(r: redis.Redis, keys: Keys, delivery_id: str) -> str:
    view = get_delivery(r, keys, delivery_id)
    assert view is not None
    return str(view["state"])


def settled(r: redis.Redis, keys: Keys, delivery_id: str) -> Callable[[], bool]:
    return lambda: state_of(r, keys, delivery_id) != State.PENDING.value


# --- events -----------------------------------------------------------------------------


def test_build_event_shape() -> None:
    ev = build_event("job.partial", job_view(status="partial"))
    assert ev["type"] == "job.partial"
    assert ev["timestamp"].endswith("Z")
    data = ev["data"]
    assert data["jobId"] == "job_1" and data["batch"] == "b1" and data["status"] == "partial"
    assert data["metadata"] == {"sku": "A-113"}
    assert data["images"] == ["job_1/00-IMAGINE.png", "job_1/01-U1.png"]
    step = data["steps"][1]
    assert set(step) == {"id", "label", "action", "status", "taskId", "failReason", "images"}
    assert set(step["images"][0]) == {"key", "bucket", "uri", "path", "url", "sha256", "bytes",
                                        "width", "height"}

    step_ev = build_event("step.succeeded", job_view(), step_id="s2")
    assert step_ev["data"]["stepId"] == "s2" and step_ev["data"]["images"] == ["job_1/01-U1.png"]
    with pytest.raises(ValueError):
        build_event("job.exploded", job_view())
    with pytest.raises(ValueError):
        build_event("step.succeeded", job_view(), step_id="nope")


def test_default_schedule_is_the_standard_webhooks_example() -> None:
    assert RETRY_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


# --- delivery ---------------------------------------------------------------------------


def test_delivered_once_with_valid_signature(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/once", 200)
    ev = event()
    did = enqueue(r, keys, job_id="job_1", url=url, event=ev)
    assert pending_count(r, keys) == 1

    assert deliver_due(r, keys, settings=settings, session=session) == 1
    assert deliver_due(r, keys, settings=settings, session=session) == 0  # nothing more due

    [req] = receiver.on("/once")
    assert req["verified"], req["error"]
    assert req["payload"] == ev
    assert req["headers"]["content-type"] == "application/json"
    [entry] = delivery_log(r, keys, "job_1")
    assert entry["id"] == did and entry["state"] == "delivered" and entry["type"] == "job.succeeded"
    assert req["headers"]["webhook-id"] == entry["webhook_id"]
    assert entry["webhook_id"].startswith("msg_")
    [att] = entry["attempts"]
    assert att["status"] == 200 and att["attempt"] == 1 and att["result"] == "delivered"
    assert isinstance(att["latency_ms"], int) and att["latency_ms"] >= 0
    assert pending_count(r, keys) == 0 and failed_count(r, keys) == 0


def test_5xx_retried_then_delivered_with_stable_webhook_id(
    r, keys, settings, session, receiver
) -> None:
    url = receiver.script("/flaky", 500, 503, 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    drain(r, keys, settings, session, settled(r, keys, did))

    reqs = receiver.on("/flaky")
    assert len(reqs) == 3
    assert all(req["verified"] for req in reqs)
    assert len({req["headers"]["webhook-id"] for req in reqs}) == 1
    assert len({req["body"] for req in reqs}) == 1  # the same bytes every time
    view = get_delivery(r, keys, did)
    assert view is not None and view["state"] == "delivered" and view["attempt_count"] == 3
    assert [a["status"] for a in view["attempts"]] == [500, 503, 200]
    assert [a["result"] for a in view["attempts"]] == ["retry", "retry", "delivered"]
    assert view["attempts"][0]["error"].startswith("HTTP 500")


def test_schedule_exhausted_marks_failed(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/down", 500)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    drain(r, keys, settings, session, settled(r, keys, did))

    assert len(receiver.on("/down")) == len(FAST_S)
    view = get_delivery(r, keys, did)
    assert view is not None and view["state"] == "failed"
    assert view["reason"].startswith(f"gave up after {len(FAST_S)} attempts")
    assert failed_count(r, keys) == 1 and pending_count(r, keys) == 0


def test_retry_delays_follow_schedule_and_retry_after(r, keys, settings, session, receiver) -> None:
    throttled = {"status": 429, "headers": {"Retry-After": "120"}}
    url = receiver.script("/throttled", 503, throttled, throttled, 500)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event(), now=1000.0)
    # a fixed clock: attempt 1 at t=1000 fails -> next in 5 s (schedule[1]), no jitter
    deliver_due(r, keys, settings=settings, session=session, now=1000.0, jitter_fraction=0)
    assert r.zscore(keys.deliveries_due(), did) == pytest.approx(1005.0)
    assert deliver_due(r, keys, settings=settings, session=session, now=1004.0) == 0
    # attempt 2 gets 429 Retry-After: 120, but schedule[2] (300 s) is longer and wins
    deliver_due(r, keys, settings=settings, session=session, now=1005.0, jitter_fraction=0)
    assert r.zscore(keys.deliveries_due(), did) == pytest.approx(1305.0)
    # with a short schedule, Retry-After stretches the delay (capped at the longest step)
    deliver_due(
        r,
        keys,
        settings=settings,
        session=session,
        now=1305.0,
        jitter_fraction=0,
        schedule_s=(0, 1, 1, 1, 200),
    )
    assert r.zscore(keys.deliveries_due(), did) == pytest.approx(1305.0 + 120)
    # jitter stays within ±15 %
    deliver_due(
        r, keys, settings=settings, session=session, now=1425.0, schedule_s=(0, 1, 1, 1, 100, 100)
    )
    assert 1425 + 85 <= r.zscore(keys.deliveries_due(), did) <= 1425 + 115


def test_410_disables_endpoint(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/gone", 410)
    first = enqueue(r, keys, job_id="job_1", url=url, event=event(), now=time.time() - 10)
    queued_before = enqueue(r, keys, job_id="job_1", url=url, event=event(), now=time.time() + 1)
    deliver_due(r, keys, settings=settings, session=session, now=time.time())
    assert state_of(r, keys, first) == "disabled"
    assert r.sismember(keys.endpoints_disabled(), url)
    assert len(receiver.on("/gone")) == 1

    # queued before the 410: claimed when due, but not sent
    deliver_due(r, keys, settings=settings, session=session, now=time.time() + 5)
    assert state_of(r, keys, queued_before) == "disabled"
    # enqueued after: disabled at once, never scheduled
    later = enqueue(r, keys, job_id="job_2", url=url, event=event("job_2"))
    assert state_of(r, keys, later) == "disabled"
    assert deliver_due(r, keys, settings=settings, session=session, now=time.time() + 5) == 0
    assert len(receiver.on("/gone")) == 1
    view = get_delivery(r, keys, later)
    assert view is not None and "410" in view["reason"]


def test_3xx_counts_as_failure_and_is_not_followed(r, keys, settings, session, receiver) -> None:
    target = receiver.script("/moved-here", 200)
    url = receiver.script("/moved", {"status": 301, "headers": {"Location": target}})
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    drain(r, keys, settings, session, settled(r, keys, did), schedule_s=(0, 0.05))

    assert len(receiver.on("/moved")) == 2
    assert receiver.on("/moved-here") == []
    view = get_delivery(r, keys, did)
    assert view is not None and view["state"] == "failed"
    assert [a["status"] for a in view["attempts"]] == [301, 301]
    assert "not followed" in view["attempts"][0]["error"]


def test_timeout_is_retried(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/slow", {"status": 200, "sleep_s": 1.5}, 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    drain(r, keys, settings, session, settled(r, keys, did))

    view = get_delivery(r, keys, did)
    assert view is not None and view["state"] == "delivered"
    first, second = view["attempts"]
    assert first["status"] is None and first["error"].startswith("timeout after 0.5 s")
    assert first["latency_ms"] >= 400
    assert second["status"] == 200
    reqs = receiver.on("/slow")
    assert len({req["headers"]["webhook-id"] for req in reqs}) == 1


def test_replay_resends_same_webhook_id(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/replay", 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    deliver_due(r, keys, settings=settings, session=session)
    assert state_of(r, keys, did) == "delivered"

    assert replay(r, keys, delivery_id=did) == [did]
    assert state_of(r, keys, did) == "pending"
    deliver_due(r, keys, settings=settings, session=session)

    reqs = receiver.on("/replay")
    assert len(reqs) == 2 and all(req["verified"] for req in reqs)
    assert reqs[0]["headers"]["webhook-id"] == reqs[1]["headers"]["webhook-id"]
    view = get_delivery(r, keys, did)
    assert view is not None and view["state"] == "delivered" and view["replays"] == 1
    assert len(view["attempts"]) == 2

    # by job: every delivery of the job
    other = enqueue(r, keys, job_id="job_1", url=url, event=build_event("job.failed", job_view()))
    deliver_due(r, keys, settings=settings, session=session)
    assert sorted(replay(r, keys, job_id="job_1")) == sorted([did, other])
    with pytest.raises(ValueError):
        replay(r, keys)


def test_replay_of_failed_clears_failed_count(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/later-ok", 500, 500, 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    drain(r, keys, settings, session, settled(r, keys, did), schedule_s=(0, 0.05))
    assert state_of(r, keys, did) == "failed" and failed_count(r, keys) == 1
    replay(r, keys, delivery_id=did)
    assert failed_count(r, keys) == 0 and pending_count(r, keys) == 1
    drain(r, keys, settings, session, settled(r, keys, did))
    assert state_of(r, keys, did) == "delivered"


def test_replay_to_disabled_endpoint_needs_force(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/gone-then-back", 410, 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    deliver_due(r, keys, settings=settings, session=session)
    assert state_of(r, keys, did) == "disabled"

    assert replay(r, keys, delivery_id=did) == []
    assert state_of(r, keys, did) == "disabled"
    assert replay(r, keys, delivery_id=did, force=True) == [did]
    assert not r.sismember(keys.endpoints_disabled(), url)
    deliver_due(r, keys, settings=settings, session=session)
    assert state_of(r, keys, did) == "delivered"
    reqs = receiver.on("/gone-then-back")
    assert len(reqs) == 2 and reqs[0]["headers"]["webhook-id"] == reqs[1]["headers"]["webhook-id"]


def test_concurrent_deliver_due_never_double_sends(r, keys, receiver) -> None:
    settings = delivery_settings(delivery_timeout_s=10.0)   # a loaded CI box must not time out here
    url = receiver.script("/many", {"status": 200, "sleep_s": 0.02})
    ids = {enqueue(r, keys, job_id=f"job_{i}", url=url, event=event(f"job_{i}")) for i in range(40)}
    barrier = threading.Barrier(3)
    counts: list[int] = []

    def worker() -> None:
        s = requests.Session()
        s.trust_env = False
        barrier.wait()
        counts.append(deliver_due(r, keys, settings=settings, session=s, concurrency=4, limit=100))
        s.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    reqs = receiver.on("/many")
    assert sum(counts) == 40
    assert len(reqs) == 40
    assert len({req["headers"]["webhook-id"] for req in reqs}) == 40
    assert all(state_of(r, keys, did) == "delivered" for did in ids)
    assert all(get_delivery(r, keys, did)["attempt_count"] == 1 for did in ids)  # type: ignore[index]


def test_claim_lease_blocks_others_until_it_expires(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/lease", 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    now = time.time()
    # a worker claims it and dies before sending
    assert _claim_due(r, keys, now_s=now, limit=10, lease_s=60, token="dead") == [(did, 1)]
    assert deliver_due(r, keys, settings=settings, session=session, now=now + 1) == 0
    assert attempt(r, keys, did, settings=settings, session=session, now=now + 1) is None
    assert receiver.on("/lease") == []
    # after the lease, another worker picks it up; the dead worker's late result is only logged
    assert deliver_due(r, keys, settings=settings, session=session, now=now + 61) == 1
    assert state_of(r, keys, did) == "delivered"
    assert len(receiver.on("/lease")) == 1
    view = get_delivery(r, keys, did)
    assert view is not None and view["attempt_count"] == 2


def test_attempt_sends_one_now(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/now", 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event(), now=time.time() + 3600)
    assert attempt(r, keys, did, settings=settings, session=session) == State.DELIVERED
    assert attempt(r, keys, did, settings=settings, session=session) is None  # not pending
    assert len(receiver.on("/now")) == 1


# --- refusals ---------------------------------------------------------------------------


def test_ssrf_private_url_refused(r, keys, session, receiver) -> None:
    settings = delivery_settings(allow_private_urls=False)
    url = receiver.script("/private", 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    meta = enqueue(r, keys, job_id="job_1", url="http://169.254.169.254/latest", event=event())
    deliver_due(r, keys, settings=settings, session=session)

    assert receiver.on("/private") == []
    for delivery_id in (did, meta):
        view = get_delivery(r, keys, delivery_id)
        assert view is not None and view["state"] == "failed"
        assert view["reason"].startswith("refused by the SSRF guard")
    assert "loopback" in get_delivery(r, keys, did)["reason"]  # type: ignore[index]
    # metadata addresses stay refused even when private URLs are allowed
    replay(r, keys, delivery_id=meta)
    deliver_due(r, keys, settings=delivery_settings(), session=session)
    assert "metadata" in get_delivery(r, keys, meta)["reason"]  # type: ignore[index]


def test_missing_secret_fails_with_reason(r, keys, session, receiver) -> None:
    settings = delivery_settings(webhook_secret=None)
    url = receiver.script("/nosecret", 200)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    assert deliver_due(r, keys, settings=settings, session=session) == 1
    assert receiver.on("/nosecret") == []
    view = get_delivery(r, keys, did)
    assert view is not None and view["state"] == "failed"
    assert "MJFLOW_WEBHOOK_SECRET" in view["reason"]


def test_per_endpoint_secret_signs_and_stays_hidden(r, keys, settings, session, receiver) -> None:
    own = new_secret()
    url = receiver.script("/own-secret", 200, secret=own)
    enqueue(r, keys, job_id="job_1", url=url, event=event(), secret=own)
    deliver_due(r, keys, settings=settings, session=session)
    [req] = receiver.on("/own-secret")
    assert req["verified"], req["error"]
    shown = json.dumps(delivery_log(r, keys, "job_1"))
    assert own not in shown and SECRET not in shown


# --- glue and housekeeping --------------------------------------------------------------


def test_notify_job_is_idempotent(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/notify", 200)
    view = job_view(url=url)
    first = notify_job(r, keys, view)
    assert first is not None and notify_job(r, keys, view) == first
    assert notify_job(r, keys, job_view(status="running", url=url)) is None
    assert notify_job(r, keys, job_view(url=None)) is None
    deliver_due(r, keys, settings=settings, session=session)
    [req] = receiver.on("/notify")
    assert req["payload"]["type"] == "job.succeeded"
    assert len(delivery_log(r, keys, "job_1")) == 1


def test_purge_job_deliveries(r, keys, settings, session, receiver) -> None:
    url = receiver.script("/purge", 500)
    did = enqueue(r, keys, job_id="job_1", url=url, event=event())
    deliver_due(r, keys, settings=settings, session=session)
    assert purge_job_deliveries(r, keys, "job_1") == 1
    assert delivery_log(r, keys, "job_1") == [] and pending_count(r, keys) == 0
    assert not r.exists(keys.delivery(did), keys.delivery_log(did))
