"""A job as the API, the CLI, events and the manifest show it (DESIGN.md's shape)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from worker.jobs.machine import retry_blocker
from worker.jobs.model import Job, JobBrief, JobStatus, Step, StepStatus
from worker.jobs.store import JobStore

#: a step's image records -> as the view shows them (located, with URLs...); the engine's
#: ``images``, ``images_checked`` and ``images_listed`` are such functions
Images = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
EXPIRED = "expired"          # a job purged by retention after it finished
#: the states a batch counts its jobs in (the job statuses, plus ``expired``)
COUNTED = tuple(s.value for s in JobStatus) + (EXPIRED,)
OPEN = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


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


def brief_status(brief: JobBrief | None, *, pending: bool = False) -> str:
    """A job's status as its view says it, from its :class:`JobBrief` (see
    :func:`job_status`: an open job is ``running`` once its root left the queue). A job
    that is gone is ``queued`` when its creation is still pending (a batch claim whose job
    was not created yet), else ``expired``."""
    if brief is None:
        return JobStatus.QUEUED.value if pending else EXPIRED
    if brief.status.finished:
        return brief.status.value
    waiting = brief.root_status in (None, StepStatus.WAITING, StepStatus.QUEUED)
    return (JobStatus.QUEUED if waiting else JobStatus.RUNNING).value


def batch_status(counts: dict[str, int], total: int) -> str:
    """The status of a group of jobs from their counts by state (:data:`COUNTED`)."""
    if not total:
        return "empty"
    open_ = counts["queued"] + counts["running"]
    if open_:
        return "queued" if counts["queued"] == total else "running"
    if counts["succeeded"] + counts[EXPIRED] == total:
        return "succeeded"
    if counts["cancelled"] == total:
        return "cancelled"
    if counts["succeeded"] or counts["partial"]:
        return "partial"
    return "failed"


def tally(states: list[str]) -> dict[str, Any]:
    """Counts by state, total, finished, progress, status and done of a group of jobs."""
    seen = Counter(states)
    counts = {name: seen.get(name, 0) for name in COUNTED}
    total = len(states)
    finished = total - counts["queued"] - counts["running"]
    return {"status": batch_status(counts, total), "total": total, "finished": finished,
            "counts": counts, "progress": round(finished / total, 4) if total else 0.0,
            "done": total > 0 and finished == total}


def step_view(step: Step, images: Images | None = None,
              retry_reason: str | None = None) -> dict[str, Any]:
    """A step as views show it; ``retry_reason`` is why a retry cannot help a failed step
    (:func:`worker.jobs.machine.retry_blocker`), None when it can."""
    failed = step.status == StepStatus.FAILED
    return {
        "id": step.id, "parent": step.parent, "label": step.label,
        "action": (step.task.get("action") if step.task else None) or step.action,
        "customId": step.custom_id, "status": step.status.value,
        "progress": step.progress or ("0%" if step.status.rank >= 3 else ""),
        "taskId": step.task_id, "upstream": step.upstream, "failReason": step.fail_reason,
        "attempts": step.attempt,
        "images": images(step.images) if images else [dict(i) for i in step.images],
        "times": {name: iso(ts) for name, ts in sorted(step.times.items(), key=lambda x: x[1])},
        "finalPrompt": step.task.get("finalPrompt") if step.task else None,
        "retryable": failed and retry_reason is None,
        "retryReason": retry_reason if failed else None,
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
    return out | _late(step)


def _late(step: Step) -> dict[str, Any]:
    """A step mjflow gave up on: why, and whether its task succeeded after all (when), or
    until when a late success would still be stored."""
    if not step.gave_up:
        return {}
    out: dict[str, Any] = {"gaveUp": step.gave_up}
    if "late_succeeded" in step.times:
        out["lateSucceeded"] = True
        out["lateSucceededAt"] = iso(step.times["late_succeeded"])
    elif step.late_until and step.status == StepStatus.FAILED:
        out["lateUntil"] = iso(step.late_until)
    return out


def job_view(job: Job, steps: list[Step], images: Images | None = None) -> dict[str, Any]:
    spec = job.spec
    by_id = {s.id: s for s in steps}
    shown = [step_view(s, images, retry_blocker(job, s, by_id.get(s.parent or "")))
             for s in steps]
    return {
        "id": job.id, "status": job_status(job, steps).value, "batch": job.batch,
        "key": spec.get("key"), "action": spec.get("action"), "prompt": spec.get("prompt"),
        "metadata": job.metadata, "callbackUrl": spec.get("callbackUrl"),
        "priority": job.priority,
        "createdAt": iso(job.created_at), "finishedAt": iso(job.finished_at),
        "retryable": any(s["retryable"] for s in shown),
        "steps": shown,
    }


def not_retried(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The failed steps of a job view that a retry cannot help, each with why."""
    return [{"stepId": s["id"], "label": s["label"], "reason": s["retryReason"]}
            for s in view["steps"] if s["status"] == "failed" and not s["retryable"]]


def load_view(store: JobStore, job_id: str, images: Images | None = None) -> dict[str, Any] | None:
    """The job's view from Redis (``images`` shapes each step's images), or None."""
    loaded = store.load(job_id)
    return None if loaded is None else job_view(*loaded, images)
