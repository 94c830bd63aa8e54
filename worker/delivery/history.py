"""Reading and repairing the outbox: the delivery log, replay, metrics gauges, purge.

Everything here reads or resets what :mod:`worker.delivery.outbox` wrote; see its
docstring for the key layout and the states.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from worker.delivery import scripts
from worker.delivery.events import iso_utc
from worker.keys import Keys


def job_delivery_ids(r: redis.Redis, keys: Keys, job_id: str) -> list[str]:
    return [str(d) for d in r.lrange(keys.job_deliveries(job_id), 0, -1)]


def replay(
    r: redis.Redis,
    keys: Keys,
    delivery_id: str | None = None,
    job_id: str | None = None,
    *,
    force: bool = False,
    now: float | None = None,
) -> list[str]:
    """Schedule a delivery (or every delivery of a job) again now; return the ids replayed.

    The state goes back to ``pending`` with a fresh attempt count and the same
    ``webhook-id`` and body (a new ``webhook-timestamp`` and signature per attempt).
    Works from any state, ``delivered`` included. A delivery whose endpoint is disabled
    (410) is skipped unless ``force=True``, which re-enables the endpoint.
    """
    if delivery_id is None and job_id is None:
        raise ValueError("replay needs a delivery_id or a job_id")
    ids = [delivery_id] if delivery_id else job_delivery_ids(r, keys, job_id or "")
    now_s = time.time() if now is None else now
    replayed: list[str] = []
    for did in ids:
        ok = r.eval(
            scripts.REPLAY,
            4,
            keys.delivery(did),
            keys.deliveries_due(),
            keys.deliveries_failed(),
            keys.endpoints_disabled(),
            repr(now_s),
            did,
            "1" if force else "0",
        )
        if ok:
            replayed.append(did)
    return replayed


def _ts(value: str | None) -> str | None:
    return iso_utc(float(value)) if value else None


def _view(fields: Mapping[str, str], entries: Sequence[str]) -> dict[str, Any]:
    status = fields.get("last_status")
    return {
        "id": fields.get("id"),
        "job_id": fields.get("job_id"),
        "type": fields.get("type"),
        "url": fields.get("url"),
        "state": fields.get("state"),
        "webhook_id": fields.get("msg_id"),
        "attempt_count": int(fields.get("attempts") or 0),
        "replays": int(fields.get("replays") or 0),
        "created_at": _ts(fields.get("created_at")),
        "next_at": _ts(fields.get("next_at")) if fields.get("state") == "pending" else None,
        "delivered_at": _ts(fields.get("delivered_at")),
        "last_status": int(status) if status else None,
        "reason": fields.get("last_error") or None,
        "attempts": [json.loads(e) for e in entries],
    }


def get_delivery(r: redis.Redis, keys: Keys, delivery_id: str) -> dict[str, Any] | None:
    """One delivery as :func:`delivery_log` shows it, or None."""
    fields: dict[str, str] = r.hgetall(keys.delivery(delivery_id))  # type: ignore[assignment]
    if not fields:
        return None
    return _view(fields, r.lrange(keys.delivery_log(delivery_id), 0, -1))  # type: ignore[arg-type]


def delivery_log(r: redis.Redis, keys: Keys, job_id: str) -> list[dict[str, Any]]:
    """The job's deliveries in creation order, each with its attempts (no secrets, no body).

    Each item: id, job_id, type, url, state, webhook_id, attempt_count, replays,
    created_at, next_at, delivered_at, last_status, reason, and ``attempts``: a list of
    {at, attempt, status, latency_ms, error, result[, next_at]}.
    """
    ids = job_delivery_ids(r, keys, job_id)
    pipe = r.pipeline(transaction=False)
    for did in ids:
        pipe.hgetall(keys.delivery(did))
        pipe.lrange(keys.delivery_log(did), 0, -1)
    raw = pipe.execute()
    return [_view(raw[i], raw[i + 1]) for i in range(0, len(raw), 2) if raw[i]]


def pending_count(r: redis.Redis, keys: Keys) -> int:
    """Deliveries scheduled or in flight (a gauge for ``/metrics``)."""
    return int(r.zcard(keys.deliveries_due()))


def failed_count(r: redis.Redis, keys: Keys) -> int:
    """Deliveries that gave up and were not replayed since (a gauge for ``/metrics``)."""
    return int(r.zcard(keys.deliveries_failed()))


def purge_job_deliveries(r: redis.Redis, keys: Keys, job_id: str) -> int:
    """Delete every delivery of a job (for retention); return how many."""
    ids = job_delivery_ids(r, keys, job_id)
    pipe = r.pipeline(transaction=True)
    for did in ids:
        pipe.delete(keys.delivery(did), keys.delivery_log(did))
        pipe.zrem(keys.deliveries_due(), did)
        pipe.zrem(keys.deliveries_failed(), did)
    pipe.delete(keys.job_deliveries(job_id))
    pipe.execute()
    return len(ids)
