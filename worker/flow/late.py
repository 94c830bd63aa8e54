"""Given-up tasks, still watched: a result the upstream finished (and billed) after mjflow
stopped waiting for it is not thrown away.

A step mjflow gave up on (its deadline passed, or the upstream stopped listing its task:
:func:`worker.jobs.machine.give_up`) sits in ``{p}:late`` until its grace
(``MJFLOW_LATE_SUCCESS_GRACE_S``) is over. The tick takes the due ones, re-scores them
``MJFLOW_LATE_POLL_S`` later (a crashed tick loses nothing), asks each upstream about its
own with one list-by-condition per batch, and feeds each SUCCESS to the one reconcile
path, which revives the step (:func:`worker.jobs.machine.revive`). An upstream FAILURE
ends the watch; a task still running, or not listed, is checked again later. Callbacks
for these tasks are taken too (:mod:`worker.jobs.inbox`), so with callbacks the result is
usually stored at once and this is the safety net.
"""
from __future__ import annotations

import logging

from worker.errors import MjflowError
from worker.flow.engine import Engine
from worker.jobs.model import StepBrief, StepStatus
from worker.jobs.reconcile import reconcile
from worker.upstream.models import TaskStatus

log = logging.getLogger("mjflow.late")
S = StepStatus
LATE_CLAIM_LIMIT = 200


def sweep_late(engine: Engine, now: float) -> int:
    """One round over the due given-up steps. Returns how many were revived."""
    k = engine.keys
    due = engine.r.zrangebyscore(k.late(), "-inf", now, start=0, num=LATE_CLAIM_LIMIT)
    if not due:
        return 0
    engine.r.zadd(k.late(), {sid: now + engine.settings.late_poll_s for sid in due}, xx=True)
    groups: dict[str, dict[str, StepBrief]] = {}
    done: list[str] = []
    for sid, brief in zip(due, engine.store.briefs(due)):
        if (brief is None or brief.status != S.FAILED or not brief.task_id
                or brief.late_until is None or now > brief.late_until):
            done.append(sid)                  # revived, retried, purged, or the grace is over
            continue
        groups.setdefault(brief.upstream, {})[brief.task_id] = brief
    revived = 0
    for name, by_task in groups.items():
        member = engine.fleet.find(name)
        if member is None:
            continue                          # no longer in the fleet: checked again later
        try:
            tasks = member.client.list_by_condition(list(by_task))
        except MjflowError as exc:
            log.warning("check of %d given-up tasks on %s failed: %s", len(by_task), name, exc)
            tasks = []
        engine.store.bump("late", "checks", len(by_task))
        for task in tasks:
            brief = by_task.get(task.id)
            if brief is None:
                continue
            if task.task_status == TaskStatus.SUCCESS:
                result = reconcile(engine.store, brief.id, task,
                                   engine.timing(member, brief.custom_id), now)
                revived += result.startswith("moved")
                if not result.startswith("moved"):
                    done.append(brief.id)     # not ours after all (state), or no longer revivable
            elif task.is_terminal:
                done.append(brief.id)         # the upstream failed it: nothing will come
    if done:
        engine.r.zrem(k.late(), *done)
    if revived:
        engine.store.bump("late", "revived_by_poll", revived)
        log.info("%d given-up steps succeeded upstream after all; their results are stored",
                 revived)
    return revived
