"""The benchmarks' compressed clock: real-pace intervals divided by the simulator's speed
factor, for the baselines and for mjflow's settings alike."""
from __future__ import annotations

from typing import Any

from worker.flow.engine import CALLBACK_POLL_S
from worker.jobs.model import DEFAULT_UPSTREAM
from worker.settings import Settings
from worker.upstream import get_profile

#: Real-pace intervals (seconds) that every side scales by the simulator speed.
NAIVE_FETCH_S = 5.0        # the naive loop fetches each task this often
RESELLER_LIST_S = 15.0     # the reseller poller lists all unfinished tasks this often
QUEUE_FULL_PAUSE_S = 5.0   # the baselines' pause after a queue-full answer
#: The beat tick is not scaled below this: Celery beat ticking faster than 20 Hz would
#: mostly measure beat itself. At high speeds this *slows* mjflow relative to real pace.
TICK_FLOOR_S = 0.05
#: Nor are the window's cool-downs (queue full, the submit breaker) below this: they must
#: cover the answers already on their way, and a submit's round trip does not compress.
COOLDOWN_FLOOR_S = 0.25


def scaled(real_s: float, speed: float, floor_s: float = 0.0) -> float:
    """A real-pace interval on the simulator's compressed clock."""
    return max(floor_s, real_s / speed)


def mjflow_timers(speed: float, callbacks: bool) -> dict[str, str]:
    """mjflow's pacing settings at ``speed``: its defaults divided by the speed factor.

    Poll interval: the profile's (10 s), or 60 s when callbacks are expected (the safety
    net); heartbeat push 60 s; queue-full back-off 5 s and the submit breaker's hold (5 s,
    at most 120 s), floored at ``COOLDOWN_FLOOR_S``; tick 1 s (floored, see
    ``TICK_FLOOR_S``). Safety timers (submit grace, redrive, deadlines) keep their
    defaults: nothing in these runs waits for them.
    """
    defaults = {name: f.default for name, f in Settings.model_fields.items()}
    profile_poll = get_profile("midjourney-proxy").poll_interval_s
    poll = max(CALLBACK_POLL_S, profile_poll) if callbacks else profile_poll
    timers = {
        "MJFLOW_POLL_INTERVAL_S": f"{scaled(poll, speed):.4f}",
        "MJFLOW_TICK_INTERVAL_S": f"{scaled(defaults['tick_interval_s'], speed, TICK_FLOOR_S):.4f}",
    }
    floors = {"heartbeat_push_s": 0.0, "queue_full_backoff_s": COOLDOWN_FLOOR_S,
              "breaker_cooldown_s": COOLDOWN_FLOOR_S, "breaker_max_cooldown_s": COOLDOWN_FLOOR_S}
    for name, floor in floors.items():
        if name in defaults:     # (a run of an older checkout has fewer of them)
            timers[f"MJFLOW_{name.upper()}"] = f"{scaled(defaults[name], speed, floor):.4f}"
    return timers


def scaled_upstream(profile: str, speed: float, sim_options: dict[str, Any],
                    max_in_flight: int | None = None) -> dict[str, Any]:
    """The one simulated upstream as an ``MJFLOW_UPSTREAMS`` entry (named ``default``, as
    the single settings name it) whose own pace, the profile's poll interval, is divided by
    the speed factor like every other interval (``pollIntervalS``): without it the pace a
    silent upstream falls back to would stay at real pace while the safety net shrinks.
    ``max_in_flight``: its window's ceiling (what ``MJFLOW_MAX_IN_FLIGHT`` is for one
    upstream; the profile's 13 when None)."""
    entry = {"name": DEFAULT_UPSTREAM, "profile": profile,
             "pollIntervalS": round(scaled(get_profile(profile).poll_interval_s, speed), 4),
             "sim": dict(sim_options)}
    if max_in_flight is not None:
        entry["maxInFlight"] = max_in_flight
    return entry
