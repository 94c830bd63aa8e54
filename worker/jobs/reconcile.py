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
from worker.jobs.model import Step, StepStatus
from worker.jobs.store import JobStore, Txn
from worker.upstream.models import Task

S = StepStatus
UPSTREAM_TO_STEP = {
    "": S.SUBMITTED, "NOT_START": S.SUBMITTED, "SUBMITTED": S.SUBMITTED,
    "IN_PROGRESS": S.RUNNING, "MODAL": S.MODAL, "SUCCESS": S.STORING,
    "FAILURE": S.FAILED, "CANCEL": S.FAILED,
}
KNOWN_REASONS = {
    "任务超时": "upstream timed out the task",
    "执行超时": "upstream timed out the task",
    "可能包含敏感词": "banned prompt (upstream moderation)",
    "取消任务": "cancelled upstream",
    "主动取消任务": "cancelled upstream",
    "强制取消": "cancelled upstream (account restarted)",
    "实例不可用": "upstream account unavailable",
    "服务异常": "upstream service error",
    "未找到父级任务": "upstream lost the parent task",
    "超时，未找到消息": "upstream timed out waiting for the modal",
}


def readable_failure(task: Task) -> str:
    raw = (task.failReason or "").strip()
    for needle, text in KNOWN_REASONS.items():
        if needle in raw:
            return f"{text} ({raw})"
    if task.status == "CANCEL":
        return f"cancelled upstream{': ' + raw if raw else ''}"
    return f"upstream failed the task: {raw}" if raw else "upstream failed the task (no reason given)"


@dataclass(frozen=True)
class Timing:
    poll_in_s: float = 30.0
    deadline_s: float = 600.0


def _progress(value: str) -> int:
    try:
        return int(float(value.strip().rstrip("%") or 0))
    except ValueError:
        return 0


def apply_snapshot(tx: Txn, step: Step, task: Task, timing: Timing, now: float) -> str:
    """Apply one snapshot to one step inside a transaction. Returns what happened."""
    if step.status.terminal:
        return "late"
    if step.task_id and task.id != step.task_id:
        return "mismatch"
    if not step.task_id:
        if task.state != step.upstream_state:
            return "mismatch"
        step.task_id = task.id
        tx.pipe.set(tx.keys.task(task.id), step.id, ex=tx.store.retention_s)
        tx.effect("task_adopted")
        tx.save(step)
    status = (task.status or "").upper()
    target = UPSTREAM_TO_STEP.get(status)
    if target is None:
        return "unknown-status"
    step.misses = 0
    if _progress(task.progress or "") > _progress(step.progress) and target != S.FAILED:
        step.progress = task.progress or step.progress
        tx.save(step)
    if target == S.STORING:
        step.progress = "100%"
        step.buttons = [b.model_dump(exclude_none=True) for b in task.buttons]
        step.image_url = task.imageUrl or None
        step.task = _summary(task)
    moved = machine.move(
        tx, step, target, now=now, reason=readable_failure(task) if target == S.FAILED else None,
        poll_in_s=timing.poll_in_s, deadline_s=timing.deadline_s,
    )
    return f"moved:{target.value}" if moved else "kept"


def _summary(task: Task) -> dict[str, Any]:
    return {
        "finalPrompt": task.properties.get("finalPrompt") or task.properties.get("final_prompt"),
        "promptEn": task.promptEn, "description": task.description,
        "submitTime": task.submitTime, "startTime": task.startTime, "finishTime": task.finishTime,
        "action": task.action,
    }


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
