"""Glue for the job engine: turn a finished job (or a stored step) into a queued delivery.

The engine calls these from its exactly-once transition hooks; both are idempotent on
their own as well (the delivery id is derived from the job, the event and the finish
time), so a transition replayed after a crash does not queue a second event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from worker.delivery.events import STEP_SUCCEEDED, build_event, event_type_for_status
from worker.delivery.queue import enqueue
from worker.keys import Keys
from worker.settings import Settings


def notify_job(
    r: redis.Redis, keys: Keys, job_view: Mapping[str, Any], *, secret: str | None = None
) -> str | None:
    """Queue the terminal job event for ``job_view``; None if it has no callbackUrl or is
    not finished. A job retried and finished again (new ``finishedAt``) gets a new event."""
    url = job_view.get("callbackUrl")
    event_type = event_type_for_status(str(job_view.get("status")))
    if not url or event_type is None:
        return None
    job_id = str(job_view["id"])
    return enqueue(
        r,
        keys,
        job_id=job_id,
        url=str(url),
        event=build_event(event_type, job_view),
        secret=secret,
        dedupe_key=f"{event_type}:{job_view.get('finishedAt')}",
    )


def notify_step(
    r: redis.Redis,
    keys: Keys,
    job_view: Mapping[str, Any],
    step_id: str,
    *,
    settings: Settings,
    secret: str | None = None,
) -> str | None:
    """Queue ``step.succeeded`` for one step when ``MJFLOW_STEP_EVENTS`` is on; else None."""
    url = job_view.get("callbackUrl")
    if not settings.step_events or not url:
        return None
    job_id = str(job_view["id"])
    return enqueue(
        r,
        keys,
        job_id=job_id,
        url=str(url),
        event=build_event(STEP_SUCCEEDED, job_view, step_id=step_id),
        secret=secret,
        dedupe_key=f"{STEP_SUCCEEDED}:{step_id}",
    )
