"""Signed outgoing webhooks ("callbacks out"): events, a durable Redis outbox, sending.

    events   build_event(): the Standard Webhooks envelope for a job or step event
    outbox   enqueue / deliver_due / attempt, the retry schedule, the key layout
    history  replay / delivery_log / get_delivery / pending_count / failed_count / purge
    scripts  the Lua that moves a delivery's state and its indexes atomically
    sender   one signed POST and the meaning of its answer
    notify   notify_job / notify_step: what the job engine calls on a transition

Run :func:`deliver_due` periodically (a beat task every few seconds); it is safe to
run from several workers at once.
"""

from __future__ import annotations

from worker.delivery.events import (
    EVENT_TYPES,
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_PARTIAL,
    JOB_SUCCEEDED,
    STEP_SUCCEEDED,
    build_event,
    event_type_for_status,
)
from worker.delivery.history import (
    delivery_log,
    failed_count,
    get_delivery,
    pending_count,
    purge_job_deliveries,
    replay,
)
from worker.delivery.notify import notify_job, notify_step
from worker.delivery.outbox import JITTER_FRACTION, RETRY_SCHEDULE_S, attempt, deliver_due
from worker.delivery.queue import State, enqueue

__all__ = [
    "EVENT_TYPES",
    "JITTER_FRACTION",
    "JOB_CANCELLED",
    "JOB_FAILED",
    "JOB_PARTIAL",
    "JOB_SUCCEEDED",
    "RETRY_SCHEDULE_S",
    "STEP_SUCCEEDED",
    "State",
    "attempt",
    "build_event",
    "deliver_due",
    "delivery_log",
    "enqueue",
    "event_type_for_status",
    "failed_count",
    "get_delivery",
    "notify_job",
    "notify_step",
    "pending_count",
    "purge_job_deliveries",
    "replay",
]
