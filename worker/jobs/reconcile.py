"""The one reconcile path: callbacks, polls and fetches all feed a task snapshot here.

``reconcile`` is idempotent: a snapshot only ever moves a step forward, progress only up,
a terminal state once. Replaying, duplicating, reordering or dropping snapshots of the
same history always ends in the same state with each side effect done once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from worker.jobs import machine
from worker.jobs.durations import learn_run_time
from worker.jobs.model import DEFAULT_UPSTREAM, Step, StepStatus
from worker.jobs.store import JobStore, Txn
from worker.upstream.failures import readable_failure
from worker.upstream.models import Task, TaskStatus, percent

S = StepStatus
T = TaskStatus
STEP_FOR = {
    T.NOT_START: S.SUBMITTED, T.SUBMITTED: S.SUBMITTED, T.IN_PROGRESS: S.RUNNING,
    T.MODAL: S.MODAL, T.SUCCESS: S.STORING, T.FAILURE: S.FAILED, T.CANCEL: S.FAILED,
}


@dataclass(frozen=True)
class Timing:
    poll_in_s: float = 30.0
    deadline_s: float = 600.0


def apply_snapshot(tx: Txn, step: Step, task: Task, timing: Timing, now: float) -> str:
    """Apply one snapshot to one step inside a transaction. Returns what happened."""
    if step.status.terminal:
        return "late"
    if step.task_id and task.id != step.task_id:
        return "mismatch"
    if not step.task_id:
        if step.status != S.SUBMITTING:
            return "not-submitted"           # only a submit in flight can adopt a task
        if task.state != step.upstream_state:
            return "mismatch"
        step.task_id = task.id
        tx.pipe.set(tx.keys.task(task.id), step.id, ex=tx.store.retention_s)
        tx.effect("task_adopted")
        tx.save(step)
    # new-api answers "" before its first poll of the account: submitted
    target = STEP_FOR.get(task.task_status) if task.status else S.SUBMITTED
    if target is None:
        return "unknown-status"
    if step.misses:
        step.misses = 0             # seen: "missing from N polls" counts polls in a row
        tx.save(step)
    if task.progress_pct > percent(step.progress) and target != S.FAILED:
        step.progress = task.progress or step.progress
        step.progress_at = now
        tx.save(step)
    if target == S.STORING:
        if task.startTime and task.finishTime:
            learn_run_time(tx.pipe, tx.keys, step.upstream or DEFAULT_UPSTREAM, task.action,
                           (task.finishTime - task.startTime) / 1000)
        step.progress = "100%"
        step.buttons = [b.model_dump(exclude_none=True) for b in task.buttons]
        step.image_url = task.imageUrl or None
        step.task = _summary(task)
    moved = machine.move(
        tx, step, target, now=now, reason=readable_failure(task) if target == S.FAILED else None,
        poll_in_s=timing.poll_in_s, deadline_s=timing.deadline_s,
    )
    if moved and target == S.FAILED:
        tx.effect("task_failed", step.id)    # the upstream failed it (refunds: flow.budget)
    if not moved and target == S.MODAL:
        machine.request_modal(tx, step)      # its input was refused for now: send it again
    return f"moved:{target.value}" if moved else "kept"


def _summary(task: Task) -> dict[str, Any]:
    summary = {
        "finalPrompt": task.properties.get("finalPrompt") or task.properties.get("final_prompt"),
        "prompt": task.prompt, "promptEn": task.promptEn, "description": task.description,
        "submitTime": task.submitTime, "startTime": task.startTime, "finishTime": task.finishTime,
        "action": task.action,
    }
    if task.image_urls:
        summary["imageUrls"] = task.image_urls          # trueai: the four full-size images
    if task.is_video:
        summary["video"] = True
        summary["videos"] = [list(clip) for clip in task.videos]
    return summary


def reconcile(store: JobStore, step_id: str, task: Task, timing: Timing,
              now: float | None = None) -> str:
    """Feed one snapshot of the step's upstream task. Safe to call any number of times."""
    now = time.time() if now is None else now
    job_id = store.job_of(step_id)
    if job_id is None:
        return "unknown-step"

    def fn(tx: Txn) -> str:
        step = tx.steps.get(step_id)
        if step is None:
            return "unknown-step"
        return apply_snapshot(tx, step, task, timing, now)

    return store.mutate(job_id, fn) or "unknown-step"
