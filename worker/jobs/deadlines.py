"""How long mjflow waits for an in-flight step, and why it stopped waiting.

Time in the upstream's queue and time running are judged apart:

* **queued** (accepted upstream, not started): from when the submit was accepted, the
  allowance is ``MJFLOW_QUEUE_DEADLINE_S`` plus ``MJFLOW_QUEUE_PER_TASK_S`` for each task
  the upstream said was ahead (``numberOfQueues``, at most :data:`MAX_AHEAD`), times
  ``MJFLOW_RELAX_QUEUE_FACTOR`` when the job runs in RELAX mode (RELAX queues take much
  longer);
* **running**: from the task's ``startTime`` (clamped to our own clock: not before the
  submit, not after now) or, without one, the first IN_PROGRESS seen, the step has
  ``MJFLOW_STEP_DEADLINE_S`` (``MJFLOW_UPSCALE_DEADLINE_S`` for an upscale).

The deadline lives in ``{p}:deadline``; the transitions set it (entering flight: the
queued allowance; the reconcile that first sees the task start: the running deadline) and
the tick's sweep only expires (:func:`expiry`), with a readable reason. The step's slot
lease follows its deadline, so a long RELAX queue does not free its slot early.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.jobs.model import DEFAULT_UPSTREAM, Step, StepStatus
from worker.upstream.models import Task, TaskStatus

S = StepStatus
#: A task further back than this is judged as this far back (a garbage position is not
#: an unbounded wait).
MAX_AHEAD = 100
#: The slot lease outlives the deadline by this much (as the dispatch lease does).
SLOT_MARGIN_S = 120.0
#: A start time further in the past than this is not believed (clock skew, garbage).
SANE_AGE_S = 86_400.0
WATCHED = (S.SUBMITTED, S.RUNNING, S.MODAL)


@dataclass(frozen=True)
class Timing:
    """The waits a transition applies (``Engine.timing`` builds it from the settings)."""

    poll_in_s: float = 30.0
    deadline_s: float = 600.0           # running, from the task's start
    queue_s: float = 600.0              # queued upstream with nothing ahead, FAST
    queue_per_task_s: float = 60.0      # plus this per task ahead
    relax_factor: float = 6.0           # RELAX multiplies the queued allowance
    mode: str | None = None             # MJFLOW_UPSTREAM_MODE (a job's own mode wins)
    late_grace_s: float = 86_400.0      # a given-up task's SUCCESS is still stored this long
    late_poll_s: float = 600.0          # and it is checked this often meanwhile


def timing_from(settings: Any, poll_in_s: float, deadline_s: float, *,
                mode: str | None = None) -> Timing:
    """The :class:`Timing` of ``settings`` (a :class:`worker.settings.Settings`); ``mode``
    is the upstream's default speed mode (its fleet entry's ``mode``)."""
    return Timing(poll_in_s=poll_in_s, deadline_s=deadline_s,
                  queue_s=settings.queue_deadline_s,
                  queue_per_task_s=settings.queue_per_task_s,
                  relax_factor=settings.relax_queue_factor, mode=mode,
                  late_grace_s=settings.late_success_grace_s,
                  late_poll_s=settings.late_poll_s)


def job_mode(spec: dict[str, Any], default: str | None) -> str | None:
    """The speed mode a job runs in: RELAX if its allowed modes include it (the slowest one
    decides how long its queue may take), else its first mode, else the default."""
    modes = list(((spec.get("accountFilter") or {}).get("modes")) or [])
    if not modes and spec.get("mode"):
        modes = [spec["mode"]]
    if "RELAX" in modes:
        return "RELAX"
    return modes[0] if modes else default


def queue_allowance_s(timing: Timing, mode: str | None, ahead: int | None) -> float:
    tasks = min(max(ahead or 0, 0), MAX_AHEAD)
    factor = timing.relax_factor if mode == "RELAX" else 1.0
    return factor * (timing.queue_s + tasks * timing.queue_per_task_s)


def queued_since(step: Step) -> float | None:
    """When the upstream accepted the step (our clock)."""
    t = step.times
    return t.get("submitted") or t.get("modal") or t.get("running") or t.get("submitting")


def deadline_at(step: Step, spec: dict[str, Any], timing: Timing, now: float) -> float:
    started = step.times.get("started")
    if started:
        return started + timing.deadline_s
    since = queued_since(step) or now
    return since + queue_allowance_s(timing, job_mode(spec, timing.mode), step.queue_ahead)


def arm(tx: Any, step: Step, timing: Timing, now: float) -> float:
    """Set the step's deadline from its state (a :class:`worker.jobs.store.Txn`), and its
    slot lease to outlive it."""
    at = deadline_at(step, tx.job.spec, timing, now)
    tx.pipe.zadd(tx.keys.deadline(), {step.id: at})
    tx.pipe.zadd(tx.keys.slots(step.upstream or DEFAULT_UPSTREAM), {step.id: at + SLOT_MARGIN_S},
                 xx=True, gt=True)
    return at


def start_time(step: Step, task: Task, now: float) -> float | None:
    """When the task started running, if this snapshot says it did: its ``startTime``
    (not before our submit, not after now), else now for a first IN_PROGRESS."""
    reported = task.startTime / 1000 if task.startTime else None
    if reported is not None and now - reported < SANE_AGE_S:
        floor = step.times.get("submitting") or queued_since(step) or reported
        return min(max(reported, floor), now)
    if task.task_status == TaskStatus.IN_PROGRESS:
        return now
    return None


def note_start(tx: Any, step: Step, task: Task, timing: Timing, now: float) -> bool:
    """The first snapshot that shows the task running moves its deadline to the running
    one. Returns True when it did."""
    if step.status not in WATCHED or "started" in step.times:
        return False
    at = start_time(step, task, now)
    if at is None:
        return False
    step.times["started"] = at
    tx.save(step)
    arm(tx, step, timing, now)
    return True


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def expiry(step: Step, spec: dict[str, Any], timing: Timing, now: float
           ) -> tuple[float, str]:
    """(the step's deadline, why it is failed once that has passed)."""
    started = step.times.get("started")
    at = deadline_at(step, spec, timing, now)
    if started:
        last = f", last progress {step.progress}" if step.progress else ""
        return at, (f"ran for {duration(now - started)} without finishing "
                    f"(deadline {duration(timing.deadline_s)}{last})")
    mode = job_mode(spec, timing.mode)
    ahead = min(step.queue_ahead or 0, MAX_AHEAD)
    behind = f" behind {ahead} task{'s' if ahead != 1 else ''}" if ahead else ""
    allowance = queue_allowance_s(timing, mode, step.queue_ahead)
    since = queued_since(step) or now
    return at, (f"queued upstream for {duration(now - since)}{behind} "
                f"({mode + ' ' if mode else ''}allowance {duration(allowance)})")
