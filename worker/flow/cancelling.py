"""Cancelling a job's in-flight tasks upstream, where the profile can (trueai's
``POST /mj/task/{id}/cancel``). A cancelled job's steps that are still running upstream get
``cancel_upstream`` (from :func:`worker.jobs.machine.cancel`); each outcome is written to
the step (its reason says what was cancelled where) and to the job's timeline."""
from __future__ import annotations

import logging

from worker.errors import MjflowError
from worker.flow.engine import Engine
from worker.jobs import machine
from worker.jobs.model import StepStatus
from worker.jobs.store import Txn

log = logging.getLogger("mjflow.cancel")
S = StepStatus
RUNNING = (S.SUBMITTED, S.RUNNING)


def cancel_upstream(engine: Engine, step_id: str) -> str:
    step = engine.store.get_step(step_id)
    if step is None or step.status not in RUNNING or not step.task_id:
        return "not-in-flight"
    member = engine.member(step.upstream)
    profile = member.profile.name
    where = f"step {step.label} (upstream task {step.task_id} on {member.name})"
    if not member.profile.has_cancel:
        engine.store.note(step.job, "cancel", f"{where}: upstream profile {profile!r} cannot "
                          "cancel tasks; it runs to its end upstream, its follow-ups do not start")
        return "cannot-cancel"
    try:
        acknowledged = member.client.cancel(step.task_id)
    except MjflowError as exc:
        log.warning("cancel of %s upstream failed: %s", where, exc)
        engine.store.note(step.job, "cancel", f"{where}: the upstream cancel failed ({exc}); "
                          "it may run to its end")
        return "failed"
    if not acknowledged:
        engine.store.note(step.job, "cancel", f"{where}: {profile} refused the cancel; it "
                          "runs to its end upstream")
        return "refused"
    reason = f"cancelled upstream on {profile} (task {step.task_id})"

    def fn(tx: Txn) -> bool:
        current = tx.steps.get(step_id)
        return bool(current and current.status in RUNNING
                    and machine.move(tx, current, S.CANCELLED, reason=reason))

    moved = engine.store.mutate(step.job, fn)
    engine.store.note(step.job, "cancel", f"{where}: {reason}")
    return "cancelled" if moved else "already-done"
