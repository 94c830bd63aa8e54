"""Polling, the other half of callbacks.

Each in-flight step has a next-check time in ``{p}:poll``; callbacks push it back
(heartbeats), silence brings it due. A tick claims the due steps (re-scoring them first,
so a crashed tick loses nothing; steps due a moment later ride along in the same
request), asks each upstream for its own tasks in batches (list-by-condition where the profile has it, fetch
otherwise), feeds every snapshot to reconcile and sets each step's next check from what
the answer showed (:mod:`worker.flow.pacing`, :mod:`worker.flow.schedule`). The cost
grows with the due steps, not with all jobs. A task the upstream no longer knows is
detected after a few misses and handled per ``MJFLOW_LOST_TASK_POLICY``.
"""
from __future__ import annotations

import logging
import time

from worker.errors import MjflowError
from worker.flow import pacing
from worker.flow.engine import Engine
from worker.flow.fleet import Member
from worker.jobs import machine
from worker.jobs.model import StepBrief, StepStatus
from worker.jobs.reconcile import reconcile
from worker.jobs.store import Txn

log = logging.getLogger("mjflow.poll")
S = StepStatus
POLL_CLAIM_LIMIT = 500
#: reconcile's answer when a poll moved a step to running (the upstream had started it)
RUNNING_FOUND = f"moved:{S.RUNNING.value}"


def claim_due(engine: Engine, now: float, limit: int = POLL_CLAIM_LIMIT) -> list[str]:
    k = engine.keys
    due = engine.r.zrangebyscore(k.poll(), "-inf", now, start=0, num=limit)
    if due:
        interval = min(engine.poll_interval_s(m) for m in engine.fleet)
        engine.r.zadd(k.poll(), {s: now + interval for s in due}, xx=True)
    return due


def poll_due(engine: Engine, now: float | None = None) -> dict[str, int]:
    """One polling round: each upstream asked for its own tasks. Returns counts (polled,
    recovered transitions, lost)."""
    now = time.time() if now is None else now
    out = {"polled": 0, "moved": 0, "lost": 0}
    step_ids = claim_due(engine, now)
    if not step_ids:
        return out
    ahead = max(pacing.lookahead_s(pacing.typicals(engine, m)) for m in engine.fleet)
    if ahead > 0:
        step_ids = list(dict.fromkeys(step_ids + claim_due(engine, now + ahead)))
    groups: dict[str, dict[str, StepBrief]] = {}
    for sid, brief in zip(step_ids, engine.store.briefs(step_ids)):
        if brief is None or not brief.task_id or brief.status.terminal:
            engine.r.zrem(engine.keys.poll(), sid)
            continue
        groups.setdefault(brief.upstream, {})[brief.task_id] = brief
    for name, by_task in groups.items():
        member = engine.fleet.find(name)
        if member is None:
            log.warning("%d steps wait on upstream %r, which is no longer in the fleet",
                        len(by_task), name)
            continue
        for key, count in _poll_member(engine, member, by_task, now).items():
            out[key] += count
    return out


def _poll_member(engine: Engine, member: Member, by_task: dict[str, StepBrief], now: float
                 ) -> dict[str, int]:
    try:
        tasks = member.client.list_by_condition(list(by_task))
    except MjflowError as exc:
        log.warning("poll of %d tasks on %s failed: %s", len(by_task), member.name, exc)
        engine.store.bump("polls", "failed")
        return {}
    engine.store.bump("polls", "rounds")
    engine.store.bump("polls", "tasks", len(by_task))
    moved = lost = 0
    seen: set[str] = set()
    answered, told = [], []
    for task in tasks:
        brief = by_task.get(task.id)
        if brief is None:
            continue
        seen.add(task.id)
        result = reconcile(engine.store, brief.id, task, engine.timing(member, brief.custom_id),
                           now)
        if result.startswith("moved"):
            moved += 1
        if task.is_terminal or (result == RUNNING_FOUND and task.progress_pct > 0):
            told.append(brief.id)      # a callback should have said this already
        if not task.is_terminal:
            answered.append((brief, task))
    for task_id in set(by_task) - seen:
        lost += _missed(engine, by_task[task_id].id, task_id, now)
    if moved:
        engine.store.bump("polls", "recovered", moved)
    _schedule(engine, member, answered, told, now)
    return {"polled": len(by_task), "moved": moved, "lost": lost}


def _schedule(engine: Engine, member: Member, answered: list, told: list[str],
              now: float) -> None:
    """Each answered step's next check. A result, or progress of a task the step did not
    know had started, found here while no callback brought it means the upstream is losing
    callbacks: polls then follow the profile's pace, and its other steps are checked next."""
    if told and engine.callbacks_on(member):
        missing = [s for s, raw in zip(told, engine.store.inbox.peek(told)) if raw is None]
        if missing:
            pacing.note_callbacks_lost(engine, member, len(missing), now)
    if answered:
        pipe = engine.r.pipeline(transaction=False)
        for sid, at in pacing.after_poll(engine, member, answered, now).items():
            pipe.zadd(engine.keys.poll(), {sid: at}, xx=True)
        pipe.execute()


def _missed(engine: Engine, step_id: str, task_id: str, now: float) -> int:
    """The task was not in the upstream's answer: count it (a snapshot that sees the task
    resets the count in its own transaction), and after N polls in a row apply the policy."""
    job_id = engine.store.job_of(step_id)
    if job_id is None:
        return 0
    policy = engine.settings.lost_task_policy
    limit = engine.settings.missing_polls_before_lost

    def fn(tx: Txn) -> str | None:
        step = tx.steps[step_id]
        if step.status.terminal or step.status == S.STORING or step.task_id != task_id:
            return None
        step.misses += 1
        tx.save(step)
        if step.misses < limit:
            return None
        reason = (f"upstream no longer knows task {task_id} "
                  f"(missing from {step.misses} polls in a row)")
        if policy == "resubmit" and step.status in (S.SUBMITTED, S.RUNNING):
            step.task_id = None
            step.misses = 0
            step.status = S.SUBMITTING
            machine.requeue(tx, step)
            tx.effect("lost_resubmitted")
        else:      # mjflow gives up; should the task come back and succeed, it is stored
            machine.give_up(tx, step, reason,
                            engine.timing(engine.fleet.find(step.upstream), step.custom_id), now)
        return reason

    reason = engine.store.mutate(job_id, fn)
    if reason is None:
        return 0
    log.warning("step %s: %s (policy %s)", step_id, reason, policy)
    engine.store.bump("polls", "lost")
    return 1
