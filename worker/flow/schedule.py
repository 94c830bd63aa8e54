"""When to check an in-flight step next, from what is known about it. Pure: no I/O.

Inputs (:class:`Known`): the task's typical run time for its action (learned from finished
tasks), when the upstream started it, the last progress seen and when, how many of our
tasks wait ahead of it in the upstream's queue, and whether callbacks can be trusted
(configured, and the upstream has not been losing them lately). Pacing limits
(:class:`Pace`): the fallback when nothing is known, the longest wait, the shortest gap,
and a grid to align checks to (a reseller that refreshes every N seconds).

Rules, in order:

* **queued** behind ``n`` of ours on ``slots`` running: not checked before it could have
  finished, ``(n // slots + 1) × FASTEST × typical`` from now (an action not seen yet is
  measured by one round of the shortest known run, :func:`queue_basis`);
* **running**, its finish estimated from progress (rate since its start) blended with the
  typical run time (the more progress, the more the rate counts); with callbacks the check
  comes ``CALLBACK_LAG`` of a run after that (the callback should have come: a task at 93 %
  whose callbacks went quiet is checked within seconds), without callbacks ``POLL_LAG``;
  a task past its estimate is checked every ``OVERDUE`` of a run;
* **nothing known**: the fallback pace (the safety net with callbacks, the profile's pace
  without, so a silent upstream is polled at the profile's pace); but a task the upstream
  runs is looked at after ``quiet`` (the profile's pace) even with callbacks: they should
  have told its progress by then;
* then clamped to ``[now + min_gap, now + max_wait]`` and rounded up to the grid.

The first check after a submit (:func:`first_check`) follows the same idea. Without
callbacks: when the task could first have finished. With callbacks, any callback pushes
the check back, so an early one costs nothing while they come: a task that runs at once is
looked at after ``quiet`` (its progress should have been told by then), so the first
silent task of an upstream that lost its callbacks is found within seconds, not at the
safety net; a task too short to show progress before ``quiet`` only once even its slowest
run's final callback is overdue (a check before would race that callback); a queued one
at the safety net (no callback comes while it waits; when a poll finds callbacks lost,
the upstream's steps are all re-planned).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

#: The fastest a task runs, as a fraction of its typical run time (durations vary ±30 %).
FASTEST = 0.7
#: With callbacks: how long after the estimated finish the silence is suspicious.
CALLBACK_LAG = 0.15
#: Without (or with lost) callbacks: check this soon after the estimated finish.
POLL_LAG = 0.02
#: A task past its estimate is checked again every this much of its run time.
OVERDUE = 0.08
#: Progress seen by a poll was reached some time before the poll: assume half a step more.
PROGRESS_STEP = 15
#: Timestamps further from now than this are not believed (clock skew, garbage).
SANE_AGE_S = 86_400.0


@dataclass(frozen=True)
class Known:
    now: float
    typical_s: float | None = None       # learned run time of the action (None: unknown)
    started_at: float | None = None      # the upstream's startTime, in seconds
    progress: int = 0                    # 0..100
    progress_at: float | None = None     # when that progress was seen
    progress_exact: bool = False         # seen when it changed (a callback), not by a poll
    queued_ahead: int | None = None      # queued upstream behind this many of ours
    slots: int = 3                       # tasks the upstream runs at once
    callbacks: bool = True               # callbacks configured and not lost lately


@dataclass(frozen=True)
class Pace:
    fallback_s: float                    # when nothing is known
    max_wait_s: float                    # never wait longer (with callbacks: the safety net)
    min_gap_s: float = 0.0               # never sooner (the tick; a reseller's refresh)
    grid_s: float = 0.0                  # align to this grid (0: none)
    quiet_s: float = 0.0                 # with callbacks: a running task unheard of this
    #                                      long is looked at (the profile's pace; 0: never)


def queue_basis(own_s: float | None, known_s: Iterable[float], ahead: int
                ) -> tuple[float | None, int]:
    """What measures a queued task's wait, as ``(typical run, tasks ahead)``: its own
    action's typical run and its place; for an action not seen yet (the first upscales
    queued behind imagines) one round of the shortest run known of the upstream: nothing
    says how long the tasks ahead take, but none is likely quicker than that."""
    if own_s:
        return own_s, ahead
    return min((s for s in known_s if s > 0), default=None), 0


def _started(k: Known) -> float | None:
    s = k.started_at
    if s is None or s > k.now + 5.0 or k.now - s > SANE_AGE_S:
        return None
    return s


def estimated_run_s(k: Known) -> float | None:
    """The task's whole run time: the typical one, refined by the rate of its progress."""
    started = _started(k)
    by_rate = None
    if started is not None and k.progress_at is not None and 0 < k.progress < 100:
        pct = k.progress if k.progress_exact else min(99, k.progress + PROGRESS_STEP / 2)
        elapsed = k.progress_at - started
        if elapsed > 0:
            by_rate = elapsed * 100.0 / pct
    if by_rate is None:
        return k.typical_s
    if k.typical_s is None:
        return by_rate
    weight = k.progress / 100.0
    return weight * by_rate + (1 - weight) * k.typical_s


def estimated_finish(k: Known) -> float | None:
    started = _started(k)
    run = estimated_run_s(k)
    if started is None or run is None:
        return None
    return started + run


def next_check(k: Known, pace: Pace) -> float:
    """The time (unix s) of the step's next check."""
    now = k.now
    if k.queued_ahead is not None and k.typical_s:
        rounds = k.queued_ahead // max(1, k.slots) + 1
        at = now + rounds * FASTEST * k.typical_s
    else:
        finish = estimated_finish(k)
        run = estimated_run_s(k)
        if finish is None or run is None:
            quiet = k.callbacks and pace.quiet_s > 0 and _started(k) is not None
            at = now + (min(pace.quiet_s, pace.fallback_s) if quiet else pace.fallback_s)
        else:
            at = finish + (CALLBACK_LAG if k.callbacks else POLL_LAG) * run
            if at <= now:
                at = now + OVERDUE * run
    return _bounded(at, now, pace)


def _bounded(at: float, now: float, pace: Pace) -> float:
    at = min(at, now + pace.max_wait_s)
    at = max(at, now + pace.min_gap_s)
    return math.ceil(at / pace.grid_s) * pace.grid_s if pace.grid_s > 0 else at


def first_check(now: float, typical_s: float | None, pace: Pace, *, callbacks: bool,
                queued_ahead: int | None = None) -> float:
    """Right after the submit (``queued_ahead``: the submit's answer said it waits behind
    that many tasks). Without callbacks: when the task could first have finished (then its
    progress tells the rest). With callbacks: when their silence says something is wrong."""
    if not callbacks:    # its place in the queue is not counted: those ahead may be short
        at = now + (FASTEST * typical_s if typical_s else pace.fallback_s)
    elif queued_ahead is not None or not pace.quiet_s:   # no callback comes while it waits
        at = now + pace.fallback_s
    elif not typical_s or pace.quiet_s < FASTEST * typical_s:
        at = now + min(pace.quiet_s, pace.fallback_s)    # its progress should have come
    else:    # too short to show progress first: after its slowest finish, when the last
        at = now + min(pace.fallback_s, (2 - FASTEST + CALLBACK_LAG) * typical_s)  # is due
    return _bounded(at, now, pace)
