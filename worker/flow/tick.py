"""The beat tick: one singleton round of dispatch, polling and the durable sweeps.

Every piece of waiting lives in a Redis sorted set, never in a Celery countdown; the tick
finds what is due and hands it to workers. It runs under a Redis lock so that only one
tick runs at a time, however many beat or worker processes there are.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from worker.errors import MjflowError
from worker.flow import receiver
from worker.flow.callbacks import confirm_due
from worker.flow.engine import Engine
from worker.flow.fleet import Member
from worker.flow.late import sweep_late
from worker.flow.polling import poll_due
from worker.flow.retention import purge_job
from worker.jobs import deadlines, machine
from worker.jobs.model import StepBrief, StepStatus
from worker.jobs.reconcile import reconcile
from worker.jobs.routes import split_queue
from worker.jobs.store import PRIORITY_BUCKET, Txn
from worker.upstream import Task

log = logging.getLogger("mjflow.tick")
S = StepStatus
LEASE_MARGIN_S = 120.0
SWEEP_LIMIT = 200
RELEASE_LOCK_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def dispatch(engine: Engine, now: float | None = None) -> list[str]:
    """Move queued steps to submit while upstreams have room: each route's queues are
    offered to the upstreams that serve it, in the fleet's order (:mod:`worker.flow.fleet`);
    follow-ups (pinned to their parent's upstream) first."""
    now = time.time() if now is None else now
    s = engine.settings
    queues = engine.r.zrange(engine.keys.lanes(), 0, -1)
    if not queues:
        return []
    routes = sorted({split_queue(q)[0] for q in queues}, key=lambda rt: not rt.startswith("at."))
    room = engine.fleet.room(now)
    claimed: list[str] = []
    for route in routes:
        offered = dict(room)    # what this route may still ask of each member
        while members := engine.fleet.candidates(route, offered):
            member = members[0]     # one step at a time: the order is the fleet's per step
            limit = offered[member.name] if len(members) == 1 else 1
            got = member.window.claim(routes=[route], limit=limit,
                                      lease_s=s.step_deadline_s + LEASE_MARGIN_S,
                                      grace_s=s.submit_grace_s, bucket=PRIORITY_BUCKET, now=now)
            offered[member.name] = offered[member.name] - len(got) if len(got) == limit else 0
            room[member.name] -= len(got)
            claimed += got
    for step_id in claimed:
        engine.enqueue.submit(step_id)
    return claimed


def _due(engine: Engine, key: str, now: float, redrive_s: float) -> list[str]:
    due = engine.r.zrangebyscore(key, "-inf", now, start=0, num=SWEEP_LIMIT)
    if due:
        engine.r.zadd(key, {m: now + redrive_s for m in due}, xx=True)
    return due


def sweep_pending_submits(engine: Engine, now: float) -> int:
    """Submits whose task never ran, or whose answer was lost."""
    k = engine.keys
    count = 0
    due = _due(engine, k.pending_submit(), now, engine.settings.submit_grace_s)
    lists: dict[str, list[Task]] = {}       # each upstream's task list, read once a sweep
    for step_id, brief in zip(due, engine.store.briefs(due)):
        if brief is None or brief.status != S.SUBMITTING:
            engine.r.zrem(k.pending_submit(), step_id)
            continue
        count += 1
        started = brief.submit_started
        if not started:
            engine.enqueue.submit(step_id)      # the submit task was lost before it sent
            continue
        if _found_by_seen_ids(engine, brief, now) or _found_in_task_list(engine, brief, now,
                                                                          lists):
            continue
        if now - started < engine.settings.submit_grace_s:
            continue
        if _clear_lost_attempt(engine, step_id, started):
            engine.store.bump("submits", "ambiguous_resubmits")
            log.warning("step %s: submit answer lost and no callback/list match after %.0fs; "
                        "resubmitting (counted as ambiguous)", step_id, now - started)
            engine.enqueue.submit(step_id)
    return count


def _clear_lost_attempt(engine: Engine, step_id: str, started: float) -> bool:
    """Forget a submit attempt whose answer was lost, if nothing else resolved it since."""
    job_id = engine.store.job_of(step_id)

    def fn(tx: Txn) -> bool:
        step = tx.steps[step_id]
        if step.status != S.SUBMITTING or step.task_id or step.submit_started != started:
            return False
        step.submit_started = None
        tx.save(step)
        tx.effect("ambiguous_resubmit")
        return True

    return bool(job_id and engine.store.mutate(job_id, fn))


def _adopt_from(engine: Engine, brief: StepBrief, what: str, counter: str,
                lookup: Callable[[Member], list[Task]], now: float) -> bool:
    """Ask the step's upstream (``lookup``) for tasks that may be its lost submit; adopt
    the one whose own copy carries our state."""
    member = engine.fleet.find(brief.upstream)
    if member is None:
        return False
    try:
        tasks = lookup(member)
    except MjflowError as exc:
        log.warning("%s lookup on %s failed: %s", what, member.name, exc)
        return False
    for task in tasks:
        if task.state == brief.upstream_state:
            reconcile(engine.store, brief.id, task, engine.timing(member), now)
            engine.store.bump("submits", counter)
            return True
    return False


def _found_by_seen_ids(engine: Engine, brief: StepBrief, now: float) -> bool:
    """The task ids callbacks showed for this step (their reconcile may have died with a
    worker)."""
    seen = engine.store.seen_tasks(brief.id)
    return bool(seen) and _adopt_from(engine, brief, "seen task ids", "recovered_from_callbacks",
                                      lambda m: m.client.list_by_condition(seen), now)


def _found_in_task_list(engine: Engine, brief: StepBrief, now: float,
                        lists: dict[str, list[Task]]) -> bool:
    """The upstream's own list of recent tasks (``GET /mj/task/list``), read once a sweep
    per upstream however many submits it has pending."""
    member = engine.fleet.find(brief.upstream)
    if member is None or not member.profile.has_task_list:
        return False

    def listed(m: Member) -> list[Task]:
        if m.name not in lists:
            lists[m.name] = m.client.task_list()
        return lists[m.name]

    return _adopt_from(engine, brief, "task list", "recovered_from_list", listed, now)


def sweep_deadlines(engine: Engine, now: float) -> int:
    """Fail the in-flight steps whose deadline passed (the transitions set it: see
    :mod:`worker.jobs.deadlines`); mjflow gives up on them, their tasks are still watched
    for a late success (:func:`worker.jobs.machine.give_up`)."""
    k = engine.keys
    count = 0
    for step_id in engine.r.zrangebyscore(k.deadline(), "-inf", now, start=0, num=SWEEP_LIMIT):
        job_id = engine.store.job_of(step_id)
        if job_id is None:
            engine.r.zrem(k.deadline(), step_id)
            continue
        count += bool(engine.store.mutate(
            job_id, lambda tx, sid=step_id: _expire(engine, tx, sid, now)))
    return count


def _expire(engine: Engine, tx: Txn, step_id: str, now: float) -> bool:
    step = tx.steps[step_id]
    if step.status not in (S.SUBMITTED, S.RUNNING, S.MODAL):
        tx.pipe.zrem(engine.keys.deadline(), step_id)
        return False
    timing = engine.timing(engine.fleet.find(step.upstream), step.custom_id)
    at, reason = deadlines.expiry(step, tx.job.spec, timing, now)
    if at > now:       # the settings grew since it was set: wait for the deadline they give
        deadlines.arm(tx, step, timing, now)
        return False
    return machine.give_up(tx, step, reason, timing, now)


def redrive(engine: Engine, key: str, send: Callable[[str], None], now: float) -> int:
    """Hand out again what a schedule (``storing``, ``finishing``, ``inbox:dirty``) says is
    due: the safety net behind a hand-off lost with a killed worker."""
    due = _due(engine, key, now, engine.settings.redrive_s)
    for member in due:
        send(member)
    return len(due)


def purge_expired(engine: Engine, now: float) -> int:
    k = engine.keys
    expired = engine.r.zrangebyscore(k.retention(), "-inf", now, start=0, num=SWEEP_LIMIT)
    for job_id in expired:
        purge_job(engine, job_id)
    return len(expired)


def probe_receiver(engine: Engine, now: float) -> int:
    """Probe MJFLOW_PUBLIC_URL when the last probe is older than ``PROBE_EVERY_S``; when it
    stops answering, bring polls scheduled later than the no-callback pace forward."""
    if not engine.callbacks_configured:
        return 0
    last = receiver.read(engine.r, engine.keys)
    if last["checkedAt"] is not None and now - last["checkedAt"] < receiver.PROBE_EVERY_S:
        return 0
    state = receiver.probe(engine.r, engine.keys, engine.settings.public_url or "", now)
    if not state["reachable"]:
        if last["reachable"] is not False:
            log.warning("%s", receiver.describe(engine.settings.public_url, state))
        soon = now + min(engine.poll_interval_s(m) for m in engine.fleet)
        due = engine.r.zrangebyscore(engine.keys.poll(), f"({soon}", "+inf", start=0,
                                     num=SWEEP_LIMIT)
        if due:
            engine.r.zadd(engine.keys.poll(), {m: soon for m in due}, xx=True, lt=True)
    elif last["reachable"] is False:
        log.warning("MJFLOW_PUBLIC_URL answers again: callbacks are on")
    return 1


def tick(engine: Engine, now: float | None = None) -> dict[str, int] | None:
    """One round; returns counts, or None when another tick holds the lock."""
    lock = engine.keys.lock("tick")
    token = uuid.uuid4().hex
    # The lock only saves work: every step of a tick is atomic and idempotent, so a tick that
    # outlives it (or a worker killed while holding it) costs at most a few seconds.
    ttl_s = max(5, int(engine.settings.tick_interval_s * 10))
    if not engine.r.set(lock, token, nx=True, ex=ttl_s):
        return None
    try:
        now = time.time() if now is None else now
        confirmed = confirm_due(engine, now)      # terminal callbacks a worker left behind
        polled = poll_due(engine, now)
        out = {
            "confirmed": len(confirmed),
            "dispatched": len(dispatch(engine, now)),
            "polled": polled["polled"], "recovered": polled["moved"], "lost": polled["lost"],
            "pending_submits": sweep_pending_submits(engine, now),
            "deadlines": sweep_deadlines(engine, now),
            "late": sweep_late(engine, now),
            "storing": redrive(engine, engine.keys.storing(), engine.enqueue.store, now),
            "finishing": redrive(engine, engine.keys.finishing(), engine.enqueue.finish, now),
            # callback snapshots whose reconcile message was lost
            "inbox": redrive(engine, engine.keys.inbox_dirty(), engine.enqueue.reconcile, now),
            "purged": purge_expired(engine, now),
            "receiver_probes": probe_receiver(engine, now),
        }
        if engine.r.zcount(engine.keys.deliveries_due(), "-inf", now):
            engine.enqueue.deliver()
        return out
    finally:
        engine.r.eval(RELEASE_LOCK_LUA, 1, lock, token)
