"""A job as the API, the CLI, events and the manifest show it (DESIGN.md's shape)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from worker.jobs.model import Job, JobStatus, Step, StepStatus
from worker.jobs.store import JobStore

UrlFor = Callable[[str], str | None]


def iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def job_status(job: Job, steps: list[Step]) -> JobStatus:
    if job.status.finished:
        return job.status
    if any(s.status.rank >= StepStatus.SUBMITTING.rank for s in steps):
        return JobStatus.RUNNING
    return JobStatus.QUEUED


def step_view(step: Step, url_for: UrlFor | None = None) -> dict[str, Any]:
    images = []
    for img in step.images:
        item = dict(img)
        if url_for is not None:
            item["url"] = url_for(img["key"])
        images.append(item)
    return {
        "id": step.id, "parent": step.parent, "label": step.label,
        "action": (step.task.get("action") if step.task else None) or step.action,
        "customId": step.custom_id, "status": step.status.value,
        "progress": step.progress or ("0%" if step.status.rank >= 3 else ""),
        "taskId": step.task_id, "failReason": step.fail_reason, "attempts": step.attempt,
        "images": images,
        "times": {name: iso(ts) for name, ts in sorted(step.times.items(), key=lambda x: x[1])},
        "finalPrompt": step.task.get("finalPrompt") if step.task else None,
        **_extras(step),
    }


def _extras(step: Step) -> dict[str, Any]:
    """What some steps have besides images: the image seed, an upload's hosted URLs, a
    video's clips (the ``images`` with contentType video/mp4 and their posters)."""
    task = step.task or {}
    out: dict[str, Any] = {}
    if step.options.get("seed") or "seed" in task:
        out["seed"] = task.get("seed")
        if task.get("seedError"):
            out["seedError"] = task["seedError"]
    if "uploads" in task:
        out["uploads"] = task["uploads"]
    if task.get("video"):
        out["video"] = True
    return out


def job_view(job: Job, steps: list[Step], url_for: UrlFor | None = None) -> dict[str, Any]:
    spec = job.spec
    return {
        "id": job.id, "status": job_status(job, steps).value, "batch": job.batch,
        "key": spec.get("key"), "action": spec.get("action"), "prompt": spec.get("prompt"),
        "metadata": job.metadata, "callbackUrl": spec.get("callbackUrl"),
        "priority": job.priority,
        "createdAt": iso(job.created_at), "finishedAt": iso(job.finished_at),
        "steps": [step_view(s, url_for) for s in steps],
    }


def load_view(store: JobStore, job_id: str, url_for: UrlFor | None = None) -> dict[str, Any] | None:
    """The job's view from Redis (``url_for`` adds each image's URL), or None."""
    loaded = store.load(job_id)
    return None if loaded is None else job_view(*loaded, url_for)
