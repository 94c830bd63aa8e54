"""Callback snapshots, after the receiver accepted them: the worker's side of the inbox.

:func:`reconcile_step` (the ``mjflow.reconcile`` task) takes the step's newest snapshot
from the inbox (:mod:`worker.jobs.inbox`). A non-terminal one goes straight to the one
reconcile path. A terminal one is confirmed first (``MJFLOW_CONFIRM_TERMINAL_CALLBACKS``):
it joins ``{p}:confirm`` and :func:`confirm_due` confirms every terminal callback waiting
there with one list-by-condition (one fetch each where the profile has none), then
reconciles the upstream's own copy, never the callback's: a forged or stale terminal
callback stores nothing the upstream did not produce. Whoever runs :func:`confirm_due`
first takes the whole batch (the others find it empty); the tick runs it too, so a batch
whose worker died is confirmed a ``MJFLOW_REDRIVE_S`` later.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from pydantic import ValidationError

from worker.errors import MjflowError
from worker.flow.engine import Engine
from worker.jobs.reconcile import reconcile
from worker.upstream import Task

log = logging.getLogger("mjflow.callback")
CONFIRM_CLAIM_LIMIT = 500      # the client splits the request by the profile's batch size


def _task(raw: str | dict[str, Any] | None) -> Task | None:
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return Task.model_validate(data) if isinstance(data, dict) else None
    except (ValueError, ValidationError, RecursionError):
        return None


def _apply(engine: Engine, step_id: str, task: Task, now: float | None = None) -> str:
    brief = engine.store.brief(step_id)
    member = engine.member(brief.upstream if brief else None)
    result = reconcile(engine.store, step_id, task,
                       engine.timing(member, brief.custom_id if brief else None), now)
    engine.store.bump("callbacks", f"reconciled_{result.split(':')[0]}")
    return result


def reconcile_step(engine: Engine, step_id: str, now: float | None = None) -> str:
    """Reconcile the snapshot the receiver keeps for ``step_id`` (safe to run twice)."""
    inbox = engine.store.inbox
    raw = inbox.begin(step_id)
    if raw is None:
        return "empty"
    task = _task(raw)
    if task is None:
        inbox.ack(step_id, raw)
        return "invalid"
    if task.is_terminal and engine.settings.confirm_terminal_callbacks:
        inbox.want_confirm(step_id, time.time() if now is None else now)
        out = confirm_due(engine, now)
        return out.get(step_id, "confirming")
    result = _apply(engine, step_id, task, now)
    inbox.ack(step_id, raw)
    return result


def confirm_due(engine: Engine, now: float | None = None) -> dict[str, str]:
    """Confirm every terminal callback waiting in ``{p}:confirm`` with one request per
    profile batch; returns step id -> reconcile result."""
    now = time.time() if now is None else now
    inbox = engine.store.inbox
    claimed = inbox.claim_confirms(now, CONFIRM_CLAIM_LIMIT, engine.settings.redrive_s)
    if not claimed:
        return {}
    raws = dict(zip(claimed, inbox.peek(claimed)))
    wanted = {sid: task for sid, task in ((s, _task(r)) for s, r in raws.items())
              if task is not None and task.is_terminal}
    # each step's callback is confirmed by the upstream that holds the step's task
    by_upstream: dict[str, dict[str, Task]] = {}
    for brief in engine.store.briefs(list(wanted)):
        if brief is not None:
            by_upstream.setdefault(brief.upstream, {})[brief.id] = wanted[brief.id]
    confirmed_by_step: dict[str, Task] = {}
    for name, tasks in by_upstream.items():
        member = engine.fleet.find(name)
        if member is None:           # no longer in the fleet: nobody can confirm these
            continue
        try:
            copies = {t.id: t for t in member.client.list_by_condition(
                [t.id for t in tasks.values()])}
        except MjflowError as exc:
            log.warning("could not confirm %d terminal callbacks on %s: %s", len(tasks), name,
                        exc)
            return {}        # still claimed: they come due again after MJFLOW_REDRIVE_S
        engine.store.bump("callbacks", "confirm_requests")
        confirmed_by_step.update({sid: copies[t.id] for sid, t in tasks.items() if t.id in copies})
    out: dict[str, str] = {}
    for sid in claimed:
        task = wanted.get(sid)
        confirmed = confirmed_by_step.get(sid)
        if confirmed is None:
            if task is not None:
                engine.store.poll_at(sid, now)          # not the upstream's: poll soon
            out[sid] = "unconfirmed" if task else "invalid"
        else:
            # the upstream's own copy decides, its ``state`` included: a task is only ever
            # adopted by the step whose state the upstream recorded with it
            out[sid] = _apply(engine, sid, confirmed, now)
            if not confirmed.is_terminal:
                engine.store.poll_at(sid, now)
    # a snapshot that came meanwhile stays, and is confirmed in its turn
    kept = [sid for sid in claimed if raws.get(sid) is not None and not inbox.ack(sid, raws[sid])]
    inbox.confirmed([sid for sid in claimed if sid not in kept], again=kept, now=now)
    return out


def reconcile_callback(engine: Engine, step_id: str, snapshot: dict[str, Any]) -> str:
    """One snapshot handed over directly (messages of the previous release, tests)."""
    task = _task(snapshot)
    if task is None:
        return "invalid"
    if task.is_terminal and engine.settings.confirm_terminal_callbacks:
        brief = engine.store.brief(step_id)
        try:
            confirmed = engine.member(brief.upstream if brief else None).client.fetch(task.id)
        except MjflowError as exc:
            log.warning("could not confirm terminal callback for step %s: %s", step_id, exc)
            confirmed = None
        if confirmed is None or confirmed.id != task.id:
            engine.store.poll_at(step_id, time.time())       # poll soon
            return "unconfirmed"
        task = confirmed
    return _apply(engine, step_id, task)
