"""Does our own callback receiver answer? A cheap probe of ``MJFLOW_PUBLIC_URL``.

Callbacks only arrive while the web app behind ``MJFLOW_PUBLIC_URL`` answers. When it is
down, a job still finishes, but through the safety-net poll (60 s with callbacks
expected) instead of callbacks (seconds): a silent slow path. So the beat tick probes the
URL every ``PROBE_EVERY_S`` (``GET {public_url}/healthz``, ``PROBE_TIMEOUT_S``) and keeps
the answer in Redis (``{p}:receiver``); while the last probe failed, callbacks count as
off (:meth:`Engine.callbacks_on`), so steps are polled at the profile's no-callback pace,
and ``mjflow submit``, ``/readyz``, the dashboard's upstream page and the metric
``mjflow_callbacks_reachable`` say so. Hook URLs are still sent: callbacks resume on their
own as soon as the receiver is back.

Any HTTP answer below 500 counts as "answers" (a proxy that routes only ``/hooks`` to us
may answer 404 on ``/healthz``); a connection error, a timeout or a 5xx (a proxy whose
backend is gone) does not. No answer recorded yet counts as "answers" (the behaviour
before the first probe, and where Redis cannot be read).

The probe goes out *without* the SSRF guard that every other outgoing request passes:
the guard exists for URLs that users and upstreams hand us (callback URLs, image URLs),
while ``MJFLOW_PUBLIC_URL`` is the operator's own setting, is usually a private or
loopback address (which the guard would refuse), and the probe sends nothing but a bare
GET without redirects to its ``/healthz``.
"""
from __future__ import annotations

import time
from typing import Any

import redis
import requests

from worker.keys import Keys

PROBE_EVERY_S = 15.0
PROBE_TIMEOUT_S = 2.0


def read(r: redis.Redis, keys: Keys) -> dict[str, Any]:
    """The last probe: ``{"reachable": bool | None, "checkedAt": float | None, "error": str | None}``."""
    try:
        h = r.hgetall(keys.receiver())
    except redis.RedisError:
        h = {}
    return {"reachable": None if "up" not in h else h["up"] == "1",
            "checkedAt": float(h["at"]) if h.get("at") else None,
            "error": h.get("error") or None}


def answers(r: redis.Redis, keys: Keys) -> bool:
    """False only while the last probe failed."""
    return read(r, keys)["reachable"] is not False


def probe(r: redis.Redis, keys: Keys, public_url: str, now: float | None = None,
          timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Probe now, record the answer, return it (as :func:`read` does)."""
    now = time.time() if now is None else now
    error = ""
    try:
        resp = requests.get(f"{public_url.rstrip('/')}/healthz", timeout=timeout_s,
                            allow_redirects=False)
        if resp.status_code >= 500:
            error = f"HTTP {resp.status_code}"
    except requests.RequestException as exc:
        error = type(exc).__name__
    r.hset(keys.receiver(), mapping={"up": "0" if error else "1", "at": repr(now), "error": error})
    return {"reachable": not error, "checkedAt": now, "error": error or None}


def check(r: redis.Redis, keys: Keys, public_url: str, now: float | None = None,
          max_age_s: float = PROBE_EVERY_S) -> dict[str, Any]:
    """The last probe if younger than ``max_age_s``, else a new one."""
    now = time.time() if now is None else now
    last = read(r, keys)
    if last["checkedAt"] is not None and now - last["checkedAt"] < max_age_s:
        return last
    return probe(r, keys, public_url, now)


def describe(public_url: str | None, state: dict[str, Any]) -> str | None:
    """A sentence for people when the receiver does not answer, else None."""
    if not public_url or state["reachable"] is not False:
        return None
    return (f"MJFLOW_PUBLIC_URL ({public_url}) does not answer ({state['error']}): upstream "
            "callbacks cannot arrive, so jobs are followed by polling at the profile's "
            "no-callback pace until it answers again")


def status(engine: Any) -> dict[str, Any] | None:
    """What ``/readyz`` and the dashboard show; None where callbacks are not configured."""
    if not engine.callbacks_configured:
        return None
    url = engine.settings.public_url
    state = read(engine.r, engine.keys)
    return {"url": url, **state, "warning": describe(url, state)}
