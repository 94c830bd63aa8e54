"""The one reconcile path: callbacks, polls and fetches all feed a task snapshot here.

``reconcile`` is idempotent: a snapshot only ever moves a step forward, progress only up,
a terminal state once. Replaying, duplicating, reordering or dropping snapshots of the
same history always ends in the same state with each side effect done once.

The first snapshot that shows the task running (IN_PROGRESS, or a ``startTime``) moves the
step's deadline from the queued allowance to the running one
(:func:`worker.jobs.deadlines.note_start`). A SUCCESS for a step mjflow gave up on (its
deadline passed, or its task was lost) is not dropped as late within the grace: when it is
the step's own task and carries the step's ``state``, the step is revived
(:func:`worker.jobs.machine.revive`) and its result stored.
"""
from __future__ import annotations

import time
from typing import Any

from worker.jobs import deadlines, machine
from worker.jobs.deadlines import Timing
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

__all__ = ["Timing", "apply_snapshot", "reconcile"]


def apply_snapshot(tx: Txn, step: Step, task: Task, timing: Timing, now: float) -> str:
    """Apply one snapshot to one step inside a transaction. Returns what happened."""
    if step.status.terminal:
        return _late(tx, step, task, now)
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
        _take_result(tx, step, task)
    moved = machine.move(
        tx, step, target, now=now, reason=readable_failure(task) if target == S.FAILED else None,
        poll_in_s=timing.poll_in_s, timing=timing,
    )
    if moved and target == S.FAILED:
        tx.effect("task_failed", step.id)    # the upstream failed it (refunds: flow.budget)
    if not moved and target == S.MODAL:
        machine.request_modal(tx, step)      # its input was refused for now: send it again
    deadlines.note_start(tx, step, task, timing, now)
    return f"moved:{target.value}" if moved else "kept"


def _take_result(tx: Txn, step: Step, task: Task) -> None:
    """A SUCCESS snapshot's result onto the step (before it moves to storing)."""
    if task.startTime and task.finishTime:
        learn_run_time(tx.pipe, tx.keys, step.upstream or DEFAULT_UPSTREAM, task.action,
                       (task.finishTime - task.startTime) / 1000)
    step.progress = "100%"
    step.buttons = [b.model_dump(exclude_none=True) for b in task.buttons]
    step.image_url = task.imageUrl or None
    step.task = _summary(task)
    tx.save(step)


def _late(tx: Txn, step: Step, task: Task, now: float) -> str:
    """A snapshot for a finished step: dropped, unless it is the SUCCESS of a step mjflow
    gave up on, within the grace, of its own task, whose copy carries the step's state."""
    if (task.task_status != T.SUCCESS or task.id != step.task_id
            or task.state != step.upstream_state or not machine.revivable(step, now)):
        return "late"
    _take_result(tx, step, task)
    machine.revive(tx, step, now)
    return "moved:storing"


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
