"""Event envelopes sent to a job's ``callbackUrl`` (Standard Webhooks payload shape).

An event is ``{"type": "<dotted>", "timestamp": "<ISO-8601 UTC>", "data": {...}}``. The
``data`` is a *thin-ish* snapshot of the job as the API shows it: ids, status, metadata,
per-step outcome and the stored image keys/URLs; no prompt, no upstream payloads. A
consumer that needs more calls ``GET /v1/jobs/{id}``; the event is a hint plus the
result, not the authoritative record.

    type             when
    job.succeeded    every step succeeded
    job.partial      some steps succeeded, some failed/skipped
    job.failed       no step produced a result
    job.cancelled    the job was cancelled
    step.succeeded   one step stored its images (only when ``MJFLOW_STEP_EVENTS`` is on)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

JOB_SUCCEEDED = "job.succeeded"
JOB_PARTIAL = "job.partial"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
STEP_SUCCEEDED = "step.succeeded"

JOB_EVENT_TYPES: tuple[str, ...] = (JOB_SUCCEEDED, JOB_PARTIAL, JOB_FAILED, JOB_CANCELLED)
EVENT_TYPES: tuple[str, ...] = (*JOB_EVENT_TYPES, STEP_SUCCEEDED)

#: job status (API) -> the event that announces it; other statuses are not terminal.
JOB_STATUS_EVENTS: Mapping[str, str] = {
    "succeeded": JOB_SUCCEEDED,
    "partial": JOB_PARTIAL,
    "failed": JOB_FAILED,
    "cancelled": JOB_CANCELLED,
}

#: ``key`` is the object's real key (S3: prefix included), ``bucket`` (S3) or ``path``
#: (files) and ``uri`` (``s3://bucket/key``, ``file:///path``) say where it is
_IMAGE_FIELDS = ("key", "bucket", "uri", "path", "url", "sha256", "bytes", "width", "height")


def iso_utc(when: datetime | float | None = None) -> str:
    """``when`` (aware datetime, unix seconds, or now) as ISO-8601 UTC with a ``Z``."""
    if when is None:
        dt = datetime.now(UTC)
    elif isinstance(when, datetime):
        dt = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    else:
        dt = datetime.fromtimestamp(float(when), UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_type_for_status(status: str) -> str | None:
    """The job event for a terminal job status, or ``None`` if the job is not finished."""
    return JOB_STATUS_EVENTS.get(status)


def _image(image: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: image.get(name) for name in _IMAGE_FIELDS}
    out.update({name: image[name] for name in ("contentType", "poster") if image.get(name)})
    return out


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "id": step.get("id"),
        "label": step.get("label"),
        "action": step.get("action"),
        "status": step.get("status"),
        "taskId": step.get("taskId"),
        "failReason": step.get("failReason"),
        "images": [_image(img) for img in step.get("images") or ()],
    }
    # only on the steps that have them: the image seed, an UPLOAD's URLs, a video
    out.update({name: step[name] for name in ("seed", "uploads", "video") if name in step})
    return out


def build_event(
    event_type: str,
    job_view: Mapping[str, Any],
    *,
    step_id: str | None = None,
    now: datetime | float | None = None,
) -> dict[str, Any]:
    """The event envelope for ``job_view`` (a job in the ``GET /v1/jobs/{id}`` shape).

    ``data.images`` lists the storage keys of every stored image, flattened in step
    order. For ``step.succeeded`` pass ``step_id``: ``data.stepId`` names the step and
    ``data.images`` holds that step's keys only (``data.steps`` still lists all steps so
    the consumer sees the job's progress). Raises ``ValueError`` for an unknown type or a
    step event without a known step.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; expected one of {EVENT_TYPES}")
    steps = [_step(s) for s in job_view.get("steps") or ()]
    data: dict[str, Any] = {
        "jobId": job_view.get("id"),
        "batch": job_view.get("batch"),
        "status": job_view.get("status"),
        "metadata": job_view.get("metadata") or {},
        "createdAt": job_view.get("createdAt"),
        "finishedAt": job_view.get("finishedAt"),
        "steps": steps,
    }
    if event_type == STEP_SUCCEEDED:
        chosen = [s for s in steps if s["id"] == step_id] if step_id else []
        if not chosen:
            raise ValueError(f"step.succeeded needs the id of a step of the job, got {step_id!r}")
        data["stepId"] = step_id
        data["images"] = [img["key"] for img in chosen[0]["images"] if img.get("key")]
    else:
        data["images"] = [img["key"] for s in steps for img in s["images"] if img.get("key")]
    return {"type": event_type, "timestamp": iso_utc(now), "data": data}
