"""Putting an event in the outbox: one delivery hash per (job, event), scheduled now.

The id is derived from the job and a dedupe key (the event type plus the job's finish
time), so queueing the same event twice makes one delivery; a URL disabled by a 410 gets a
delivery in state ``disabled`` that is never attempted. ``outbox`` sends what is due.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from enum import Enum
from typing import Any

import redis

from worker.delivery import scripts
from worker.keys import Keys

DISABLED_REASON = "endpoint disabled after HTTP 410 Gone (replay with force=True to re-enable)"


class State(str, Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"


def _dedupe_id(job_id: str, dedupe_key: str) -> str:
    digest = hashlib.sha256(f"{job_id}\x00{dedupe_key}".encode()).hexdigest()
    return f"dlv_{digest[:32]}"


def enqueue(
    r: redis.Redis,
    keys: Keys,
    *,
    job_id: str,
    url: str,
    event: Mapping[str, Any],
    secret: str | None = None,
    dedupe_key: str | None = None,
    now: float | None = None,
) -> str:
    """Store ``event`` for ``url`` and schedule its first attempt now; return its id.

    ``secret`` is a per-endpoint ``whsec_`` secret (else ``MJFLOW_WEBHOOK_SECRET`` is used
    at send time); it is stored in the delivery hash and never shown. With ``dedupe_key``
    (e.g. the event type plus the job's finish time) the id is derived from it, so
    enqueueing the same event twice creates one delivery. A URL already disabled by a
    410 gets a delivery in state ``disabled`` that is never attempted.
    """
    if not url:
        raise ValueError("a delivery needs a callback URL")
    now_s = time.time() if now is None else now
    delivery_id = _dedupe_id(job_id, dedupe_key) if dedupe_key else f"dlv_{uuid.uuid4().hex}"
    fields: dict[str, str] = {
        "id": delivery_id,
        "job_id": job_id,
        "url": url,
        "body": json.dumps(event, separators=(",", ":"), ensure_ascii=False),
        "msg_id": f"msg_{uuid.uuid4().hex}",
        "type": str(event.get("type", "")),
        "state": State.PENDING.value,
        "attempts": "0",
        "replays": "0",
        "created_at": repr(now_s),
        "next_at": repr(now_s),
    }
    if secret:
        fields["secret"] = secret
    args: list[str] = [delivery_id, repr(now_s), url, DISABLED_REASON]
    for name, value in fields.items():
        args += [name, value]
    r.eval(
        scripts.ENQUEUE,
        4,
        keys.delivery(delivery_id),
        keys.job_deliveries(job_id),
        keys.deliveries_due(),
        keys.endpoints_disabled(),
        *args,
    )
    return delivery_id
