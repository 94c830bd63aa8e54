"""The beat's tick schedule: every ``MJFLOW_TICK_INTERVAL_S``, but only when something is
due (:func:`worker.flow.due.anything_due`), and at least every ``IDLE_TICK_S`` anyway (so
whatever a tick does that no schedule records still happens). A failed due-check sends the
tick: the check only saves work, it never loses any."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import redis
from celery.schedules import schedstate, schedule

from worker.flow.due import anything_due
from worker.redis_conn import get_keys, get_redis

log = logging.getLogger("mjflow.beat")
IDLE_TICK_S = 30.0


def something_due() -> bool:
    try:
        return anything_due(get_redis(), get_keys())
    except redis.RedisError as exc:
        log.warning("due-check failed (%s): ticking anyway", exc)
        return True


class WhenDue(schedule):
    """A ``celery.schedules.schedule`` that is only due when the due-check says so."""

    def __init__(self, run_every: float, idle_s: float = IDLE_TICK_S, **kw: Any) -> None:
        super().__init__(timedelta(seconds=run_every), **kw)
        self.idle_s = idle_s

    def is_due(self, last_run_at: Any) -> schedstate:
        state = super().is_due(last_run_at)
        if not state.is_due:
            return state
        idle_for = (self.now() - self.maybe_make_aware(last_run_at)).total_seconds()
        if idle_for >= self.idle_s or something_due():
            return state
        return schedstate(False, self.seconds)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.seconds, self.idle_s)

    def __repr__(self) -> str:
        return f"<when due, every {self.seconds:g} s (at least every {self.idle_s:g} s)>"
