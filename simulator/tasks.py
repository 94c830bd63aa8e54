"""Task records, ids, the clock and lifecycle plans (no HTTP, no locking).

Lifecycle (reference §6.4): ``NOT_START`` (waiting for a running slot) →
``SUBMITTED`` "0%" → ``IN_PROGRESS`` "0%", "15%", … "93%" → ``SUCCESS`` "100%"
or ``FAILURE`` with progress ``""``. Modal actions start in ``MODAL`` and join
the queue after ``/submit/modal``.

A task's run is a *plan*: a list of :class:`PlanStep` with absolute due times,
built when the task gets a running slot. The simulator's scheduler applies the
steps whose time has come.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .images import ImageSpec


class Status(str, Enum):
    """Task status strings as the upstream serialises them."""

    NOT_START = "NOT_START"
    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    MODAL = "MODAL"


TERMINAL = frozenset({Status.SUCCESS, Status.FAILURE})

# Base durations at speed 1 (seconds from getting a slot to SUCCESS).
BASE_DURATION_S: dict[str, float] = {
    "IMAGINE": 30.0,
    "VARIATION": 30.0,
    "REROLL": 30.0,
    "ZOOM": 30.0,
    "PAN": 30.0,
    "INPAINT": 30.0,
    "BLEND": 30.0,
    "UPSCALE": 10.0,
    "UPSCALE_HD": 20.0,
    "DESCRIBE": 8.0,
    "SHORTEN": 8.0,
    "SWAP_FACE": 15.0,
    "VIDEO": 40.0,
    "EDIT": 30.0,
    "RETEXTURE": 30.0,
}
DEFAULT_BASE_DURATION_S = 30.0
GRID_PROGRESS = ("15%", "31%", "46%", "62%", "78%", "93%")
# Actions without Midjourney's percentage messages (single-shot jobs).
NO_PROGRESS_ACTIONS = frozenset({"UPSCALE", "DESCRIBE", "SHORTEN", "SWAP_FACE"})
IN_PROGRESS_AT = 0.05  # fraction of the duration when IN_PROGRESS "0%" arrives
PROGRESS_SPAN = (0.15, 0.9)  # fractions where the percentage steps are spread
FAIL_AT = 0.5  # fraction of the duration when a failing task fails
TIMEOUT_REASON = "任务超时"
FAIL_REASONS = (
    "[Invalid parameter] Unrecognized parameter(s): `--foo`",
    (
        "[Job action restricted] Sorry! Our AI moderators feel your prompt might be against "
        "our community standards."
    ),
    (
        "[Banned prompt detected] Sorry! Our AI moderator thinks this prompt is probably "
        "against our community standards."
    ),
    "[Internal Server Error] Sorry, something went wrong. The error has been logged.",
)


class Clock:
    """Wall clock in epoch milliseconds with a test-controlled offset (:meth:`advance`)."""

    def __init__(self) -> None:
        self._offset_ms = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_ms += int(seconds * 1000)


class IdGenerator:
    """16-digit string ids: epoch ms * 1000 + a 3-digit counter, strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self, now_ms: int) -> str:
        self._last = max(now_ms * 1000, self._last + 1)
        return str(self._last)


@dataclass
class PlanStep:
    """One scheduled state change of a running task."""

    at_ms: int
    status: Status
    progress: str
    fail_reason: str | None = None


@dataclass
class SimTask:
    """One task as the upstream stores it, plus simulator bookkeeping."""

    id: str
    action: str
    prompt: str = ""
    prompt_en: str = ""
    description: str = ""
    state: str | None = None
    custom_id: str | None = None
    bot_type: str = "MID_JOURNEY"
    mode: str | None = None  # FAST / RELAX / TURBO (path prefix or accountFilter.modes)
    status: Status = Status.NOT_START
    progress: str = "0%"
    submit_time_ms: int = 0
    start_time_ms: int | None = None
    finish_time_ms: int | None = None
    fail_reason: str | None = None
    buttons: list[dict] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    notify_hook: str | None = None
    parent_id: str | None = None
    account: int = 0
    image: ImageSpec | None = None  # what the final image looks like (None: no image)
    has_image: bool = False  # imageUrl is set (preview or final)
    final_prompt: str = ""  # finalPrompt on success (describe/shorten: the analysis)
    produces: str = "grid"
    needs_mask: bool = False
    gateway_keeps_21: bool = False
    stuck: bool = False
    will_fail: bool = False
    plan: list[PlanStep] = field(default_factory=list)
    plan_index: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    gateway_row: dict[str, Any] | None = None  # newapi: last polled upstream view
    gateway_submit_ms: int = 0
    gateway_description: str = ""  # the submit answer's description, kept by gateways
    choices: list[str] = field(default_factory=list)  # describe/shorten numbered prompts
    clips: int = 0  # VIDEO: how many clips (batch size)
    forced_fail: str | None = None  # fails with this reason when run (no start frame)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def record(self, now_ms: int, event: str, **extra: Any) -> None:
        """Append a timeline event."""
        self.events.append({"t_ms": now_ms, "event": event, **extra})


def duration_ms(action: str, speed: float) -> int:
    """Run time of ``action`` at ``speed`` (1.0 = real Midjourney pace)."""
    base_s = BASE_DURATION_S.get(action, DEFAULT_BASE_DURATION_S)
    return max(1, int(base_s * 1000 / max(speed, 1e-9)))


def build_plan(
    action: str,
    start_ms: int,
    run_ms: int,
    *,
    stuck: bool,
    fail_reason: str | None,
    stuck_progress: str,
    stuck_timeout_ms: int | None,
) -> list[PlanStep]:
    """Schedule SUBMITTED → IN_PROGRESS steps → SUCCESS/FAILURE (or nothing, when stuck)."""
    steps = [
        PlanStep(start_ms, Status.SUBMITTED, "0%"),
        PlanStep(start_ms + int(run_ms * IN_PROGRESS_AT), Status.IN_PROGRESS, "0%"),
    ]
    progress = () if action in NO_PROGRESS_ACTIONS else GRID_PROGRESS
    lo, hi = PROGRESS_SPAN
    for i, pct in enumerate(progress):
        frac = lo + (hi - lo) * i / max(1, len(progress) - 1)
        steps.append(PlanStep(start_ms + int(run_ms * frac), Status.IN_PROGRESS, pct))
    if fail_reason is not None:
        fail_ms = start_ms + int(run_ms * FAIL_AT)
        steps = [s for s in steps if s.at_ms < fail_ms]
        steps.append(PlanStep(fail_ms, Status.FAILURE, "", fail_reason))
        return steps
    if stuck:
        if steps[-1].progress != stuck_progress:
            steps.append(PlanStep(start_ms + int(run_ms * hi), Status.IN_PROGRESS, stuck_progress))
        if stuck_timeout_ms is not None:
            at = max(steps[-1].at_ms, start_ms + stuck_timeout_ms)
            steps.append(PlanStep(at, Status.FAILURE, "", TIMEOUT_REASON))
        return steps
    steps.append(PlanStep(start_ms + run_ms, Status.SUCCESS, "100%"))
    return steps
