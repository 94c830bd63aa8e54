"""Is anything due? The cheap check the beat makes before it wakes the tick.

One pipeline: the first member due by now of every schedule the tick works through
(``ZRANGEBYSCORE ... LIMIT 0 1`` each) and whether any lane has queued steps. When all
are empty the tick would do nothing, so no tick is sent (see ``worker.beat``): an idle
mjflow costs one round trip per tick interval in the beat and nothing in the workers.
"""
from __future__ import annotations

import time

import redis

from worker.keys import Keys


def due_schedules(keys: Keys) -> tuple[str, ...]:
    """Every sorted set whose due members the tick handles (scores are unix times)."""
    return (keys.poll(), keys.pending_submit(), keys.deadline(), keys.storing(),
            keys.finishing(), keys.retention(), keys.deliveries_due(), keys.confirm(),
            keys.inbox_dirty(), keys.late())


def anything_due(r: redis.Redis, keys: Keys, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    pipe = r.pipeline(transaction=False)
    for key in due_schedules(keys):
        pipe.zrangebyscore(key, "-inf", now, start=0, num=1)
    pipe.zcard(keys.lanes())           # queued steps wait for dispatch
    return any(pipe.execute())
