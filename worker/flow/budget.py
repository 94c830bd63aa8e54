"""Spend and budgets: what accepted tasks cost, and the limits that stop dispatch.

Each upstream of the fleet may give ``costs`` (price per accepted task by action, ``*``
for the rest, in the user's unit). When a step's task is accepted (the transition out of
``submitting``, effect ``task_accepted``) its price is added to the job's, the batch's and
the day's spend, per upstream; when the upstream fails the task and ``refundsFailures``
is set (effect ``task_failed``), it is taken back. Before a step is sent,
:func:`blocker` says whether a budget is reached: the job's ``maxCost``, its batch's
``maxCost`` or ``MJFLOW_BUDGET_PER_DAY`` (UTC days); such a step ends ``skipped`` with
"budget of N reached". Spend is counted after the fact, so a budget can be passed by the
tasks that were already being submitted when it was reached.
"""
from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from worker.flow.fleet import Fleet, Member
from worker.jobs.store import JobStore
from worker.upstream.models import is_upscale

log = logging.getLogger("mjflow.budget")
DAY_TTL_S = 8 * 86400
TOTAL = "total"


def day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def cost_key(root_action: str, parent: str | None, custom_id: str | None) -> str:
    """The ``costs`` entry a step is priced by: the root's action, ``UPSCALE`` for an
    upscale button, ``ACTION`` for any other follow-up."""
    if parent is None:
        return root_action
    return "UPSCALE" if is_upscale(custom_id) else "ACTION"


def _price(store: JobStore, fleet: Fleet, step_id: str
           ) -> tuple[Member, str, str | None, float] | None:
    step = store.get_step(step_id)
    job_id = store.job_of(step_id)
    member = fleet.find(step.upstream) if step else None
    if step is None or job_id is None or member is None:
        return None
    spec = store.job_spec(job_id) or {}
    price = member.cost_of(cost_key(spec.get("action", "IMAGINE"), step.parent, step.custom_id))
    return member, job_id, store.r.hget(store.keys.job(job_id), "batch") or None, price


def _add(store: JobStore, upstream: str, job_id: str, batch: str | None, amount: float,
         now: float) -> None:
    k = store.keys
    pipe = store.r.pipeline(transaction=True)
    for key in (k.job_spend(job_id), k.spend_day(day(now))) + (
            (k.batch_spend(batch),) if batch else ()):
        pipe.hincrbyfloat(key, upstream, amount)
        pipe.hincrbyfloat(key, TOTAL, amount)
    pipe.expire(k.spend_day(day(now)), DAY_TTL_S)
    pipe.execute()


def charge(store: JobStore, fleet: Fleet, step_id: str) -> None:
    """The effect ``task_accepted``: the step's task now costs its price."""
    priced = _price(store, fleet, step_id)
    if priced and priced[3]:
        member, job_id, batch, price = priced
        _add(store, member.name, job_id, batch, price, time.time())


def refund(store: JobStore, fleet: Fleet, step_id: str) -> None:
    """The effect ``task_failed``: the upstream failed the task; an upstream that refunds
    failures gives its price back."""
    priced = _price(store, fleet, step_id)
    if priced and priced[3] and priced[0].config.refunds_failures:
        member, job_id, batch, price = priced
        _add(store, member.name, job_id, batch, -price, time.time())


def _read(raw: dict[str, str]) -> dict[str, Any]:
    by = {k: round(float(v), 6) for k, v in raw.items() if k != TOTAL}
    return {"total": round(float(raw.get(TOTAL, 0.0)), 6), "byUpstream": by}


def job_spend(store: JobStore, job_id: str) -> dict[str, Any]:
    return _read(store.r.hgetall(store.keys.job_spend(job_id)))


def batch_spend(store: JobStore, batch_id: str) -> dict[str, Any]:
    return _read(store.r.hgetall(store.keys.batch_spend(batch_id)))


def spent_today(store: JobStore, upstream: str | None = None, now: float | None = None
                ) -> float:
    raw = store.r.hget(store.keys.spend_day(day(time.time() if now is None else now)),
                       upstream or TOTAL)
    return round(float(raw or 0.0), 6)


def blocker(store: JobStore, job_id: str, spec: dict[str, Any], batch: str | None,
            price: float, per_day: float | None) -> str | None:
    """Why a step of this price may not be dispatched now (a budget is reached), or None.
    Free steps are never stopped."""
    if price <= 0:
        return None
    limits: list[tuple[str, float | None, float]] = [
        ("the job's maxCost", spec.get("maxCost"), job_spend(store, job_id)["total"]),
    ]
    if batch:
        raw = store.r.hget(store.keys.batch(batch), "max_cost")
        limits.append(("the batch's maxCost", float(raw) if raw else None,
                       batch_spend(store, batch)["total"]))
    limits.append(("MJFLOW_BUDGET_PER_DAY", per_day, spent_today(store)))
    for what, limit, spent in limits:
        if limit is not None and spent >= float(limit):
            return f"budget of {float(limit):g} reached ({what}; spent {spent:g})"
    return None
