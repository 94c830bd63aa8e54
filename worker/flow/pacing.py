"""The polling schedule's inputs, read from Redis and the settings, per upstream of the
fleet (the rules themselves are pure, in :mod:`worker.flow.schedule`).

* typical run times per action, learned by the transitions that see a task finish
  (``{p}:durations:{upstream}``, see :func:`worker.jobs.durations.typical_run_times`);
* whether callbacks can be trusted: configured, and no poll has lately found a result a
  callback should have brought (``{p}:callbacks:health:{upstream}``; :data:`LOST_MEMORY_S`);
* the pace: with trusted callbacks the safety net (``MJFLOW_POLL_INTERVAL_S`` or 60 s) is
  the longest wait, and a running task no callback has told anything about is looked at
  after the profile's pace; otherwise the profile's pace is the fallback, and behind a
  reseller that refreshes its copy (``Profile.refreshes``) polls are aligned to its refresh.

When a poll first finds what callbacks should have told (:func:`note_callbacks_lost`),
every other step of that upstream is checked at the next tick, in one request.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

from worker.flow.engine import CALLBACK_POLL_S, Engine
from worker.flow.fleet import Member
from worker.flow.schedule import Known, Pace, first_check, next_check, queue_basis
from worker.jobs.durations import run_time_label, typical_run_times
from worker.jobs.model import StepBrief
from worker.upstream import Task
from worker.upstream.models import TaskStatus, is_upscale

#: After a poll found what a callback should have told, callbacks are not trusted for this long.
LOST_MEMORY_S = 600.0
#: A poll also takes steps due within this fraction of the longest typical run (same request).
LOOKAHEAD = 0.05
QUEUED = (TaskStatus.NOT_START, TaskStatus.SUBMITTED)


def callbacks_trusted(engine: Engine, member: Member, now: float) -> bool:
    if not engine.callbacks_on(member):
        return False
    last = engine.r.hget(engine.keys.callbacks_health(member.name), "last_lost")
    return not last or now - float(last) > LOST_MEMORY_S


def note_callbacks_lost(engine: Engine, member: Member, count: int, now: float) -> int:
    """A poll of ``member`` found ``count`` changes no callback had told. If its callbacks
    were trusted until now, its other steps waiting for the safety net are checked at the
    next tick (:func:`recheck_soon`); returns how many."""
    was_trusted = callbacks_trusted(engine, member, now)
    health = engine.keys.callbacks_health(member.name)
    pipe = engine.r.pipeline(transaction=False)
    pipe.hset(health, "last_lost", repr(now))
    pipe.hincrby(health, "lost", count)
    pipe.execute()
    engine.store.bump("callbacks", "lost_found_by_poll", count)
    return recheck_soon(engine, member, now) if was_trusted else 0


def recheck_soon(engine: Engine, member: Member, now: float) -> int:
    """Every in-flight step of ``member`` is due now: the next poll asks for all of them
    in one request and schedules each as callbacks no longer trusted say."""
    later = engine.r.zrangebyscore(engine.keys.poll(), f"({now!r}", "+inf")
    mine = [sid for sid, brief in zip(later, engine.store.briefs(later))
            if brief is not None and brief.upstream == member.name]
    if mine:
        engine.r.zadd(engine.keys.poll(), {sid: now for sid in mine}, xx=True)
    return len(mine)


def pace(engine: Engine, member: Member, trusted: bool) -> Pace:
    base = engine.poll_interval_s(member)
    tick = engine.settings.tick_interval_s
    profile_pace = min(base, member.poll_interval_s)
    if trusted:
        return Pace(fallback_s=base, max_wait_s=base, min_gap_s=tick, quiet_s=profile_pace)
    grid = base if member.profile.refreshes and not engine.callbacks_on(member) else 0.0
    return Pace(fallback_s=profile_pace, max_wait_s=max(base, CALLBACK_POLL_S),
                min_gap_s=max(tick, grid), grid_s=grid)


def typicals(engine: Engine, member: Member) -> dict[str, float]:
    return typical_run_times(engine.r, engine.keys, member.name)


def lookahead_s(known_typicals: dict[str, float]) -> float:
    return LOOKAHEAD * max(known_typicals.values(), default=0.0)


def guess_action(custom_id: str | None, root_action: str | None = None) -> str:
    """The upstream action a step will run, before any snapshot says it."""
    if custom_id:
        return "UPSCALE" if is_upscale(custom_id) else "VARIATION"
    return run_time_label(root_action or "imagine")


def first_check_at(engine: Engine, member: Member, action: str, now: float | None = None,
                   queued_ahead: int | None = None) -> float:
    """The first check of a step whose submit ``member`` just accepted (``queued_ahead``:
    queued behind that many, as its answer said)."""
    now = time.time() if now is None else now
    trusted = callbacks_trusted(engine, member, now)
    known = typicals(engine, member)
    typical = known.get(run_time_label(action))
    if queued_ahead is not None:
        typical, queued_ahead = queue_basis(typical, known.values(), queued_ahead)
    return first_check(now, typical, pace(engine, member, trusted), callbacks=trusted,
                       queued_ahead=queued_ahead)


def after_poll(engine: Engine, member: Member, answered: Iterable[tuple[StepBrief, Task]],
               now: float) -> dict[str, float]:
    """Next check of each step a poll of ``member`` just saw (step id -> time)."""
    pairs = list(answered)
    known = typicals(engine, member)
    trusted = callbacks_trusted(engine, member, now)
    p = pace(engine, member, trusted)
    queued = sorted((t.submitTime or 0, b.id) for b, t in pairs if t.task_status in QUEUED)
    running = sum(1 for _, t in pairs if t.task_status == TaskStatus.IN_PROGRESS)
    ahead = {sid: i for i, (_, sid) in enumerate(queued)}
    slots = running if queued and running else 3
    out = {}
    for brief, task in pairs:
        label = run_time_label(task.action or guess_action(brief.custom_id))
        typical, place = known.get(label), ahead.get(brief.id)
        if place is not None:
            typical, place = queue_basis(typical, known.values(), place)
        pct = task.progress_pct
        seen_at = brief.progress_at if pct <= brief.progress and brief.progress_at else now
        out[brief.id] = next_check(Known(
            now=now, typical_s=typical,
            started_at=task.startTime / 1000 if task.startTime else None,
            progress=pct, progress_at=seen_at, progress_exact=False,
            queued_ahead=place, slots=slots, callbacks=trusted), p)
    return out


def after_callback(engine: Engine, task: Task, now: float) -> float:
    """Next check of a step whose callback just came (its progress seen as it changed)."""
    push = engine.settings.heartbeat_push_s
    tick = engine.settings.tick_interval_s
    return next_check(Known(now=now, started_at=task.startTime / 1000 if task.startTime else None,
                            progress=task.progress_pct, progress_at=now, progress_exact=True,
                            callbacks=True),
                      Pace(fallback_s=push, max_wait_s=push, min_gap_s=tick))
