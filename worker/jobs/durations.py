"""Step durations as Redis histograms, written with the transition that ends the step.

:func:`observe_step_duration` adds one observation (bucket counter + sum + count) to the
hash ``{p}:counter:step_duration:{action}`` and counts the action in
``{p}:counter:step_duration`` (the index ``worker.metrics`` reads to find the actions).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import redis

from worker.keys import Keys

STEP_DURATION = "step_duration"      # index hash: action -> observations
# Midjourney steps take seconds (upscales) to many minutes (relax mode imagines).
STEP_DURATION_BUCKETS: tuple[float, ...] = (
    5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 450, 600, 900, 1800, 3600,
)
_ACTION_RE = re.compile(r"[^a-z0-9_.-]+")


def _action_label(action: str) -> str:
    return _ACTION_RE.sub("_", str(action).strip().lower())[:40] or "unknown"


def _bucket_field(bound: float) -> str:
    return f"le:{float(bound)!r}"


def observe_step_duration(r: Any, keys: Keys, action: str, seconds: float,
                          *, buckets: Iterable[float] = STEP_DURATION_BUCKETS) -> None:
    """Add one step duration (seconds) to the histogram of ``action``.

    ``r`` is a Redis client or a pipeline. With a client the writes go out in their own
    ``MULTI`` (a scrape never sees the count without its bucket). With a pipeline (e.g.
    ``tx.pipe`` inside ``JobStore.mutate``) the commands are only queued: they commit with
    the transition, so a retried transaction never counts twice.

    Buckets are stored non-cumulatively (``le:<bound>`` = observations in
    ``(previous bound, bound]``; above the last bound only ``count`` grows); the collector
    accumulates them. Negative durations count as 0; NaN/inf are ignored.
    """
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return
    if math.isnan(seconds) or math.isinf(seconds):
        return
    seconds = max(0.0, seconds)
    label = _action_label(action)
    key = keys.counter(f"{STEP_DURATION}:{label}")
    bucket = next((b for b in sorted(float(b) for b in buckets) if seconds <= b), None)
    own = not isinstance(r, redis.client.Pipeline)
    pipe = r.pipeline(transaction=True) if own else r
    if bucket is not None:
        pipe.hincrby(key, _bucket_field(bucket), 1)
    pipe.hincrbyfloat(key, "sum", seconds)
    pipe.hincrby(key, "count", 1)
    pipe.hincrby(keys.counter(STEP_DURATION), label, 1)
    if own:
        pipe.execute()


# -- typical run times (the polling schedule's input) ------------------------------------
#: Past this many observations both sums are halved: recent tasks count more.
RUN_TIME_DECAY_AT = 200


def run_time_label(action: str | None) -> str:
    return _action_label(action or "unknown").upper()


def learn_run_time(pipe: Any, keys: Keys, scope: str, action: str | None,
                   seconds: float) -> None:
    """Queue one upstream run time (its finishTime - startTime) of ``action`` on ``pipe``
    (the transition's own transaction) into ``{p}:durations:{scope}``."""
    if not (0 < seconds < 86_400):
        return
    label = run_time_label(action)
    pipe.hincrbyfloat(keys.durations(scope), f"{label}:sum", seconds)
    pipe.hincrbyfloat(keys.durations(scope), f"{label}:n", 1)


def typical_run_times(r: redis.Redis, keys: Keys, scope: str) -> dict[str, float]:
    """Mean run time per action label (seconds), from ``{p}:durations:{scope}``."""
    raw = r.hgetall(keys.durations(scope))
    out: dict[str, float] = {}
    for name, value in raw.items():
        if not name.endswith(":n"):
            continue
        label = name[:-2]
        n, total = float(value), float(raw.get(f"{label}:sum") or 0)
        if n > 0 and total > 0:
            out[label] = total / n
        if n > RUN_TIME_DECAY_AT:
            r.hset(keys.durations(scope), mapping={f"{label}:n": n / 2, f"{label}:sum": total / 2})
    return out
