"""Job and step states, and the records as they live in Redis hashes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class StepStatus(str, Enum):
    WAITING = "waiting"        # parent not done
    QUEUED = "queued"          # ready, waiting for a slot
    SUBMITTING = "submitting"  # slot taken, submit in progress (or its answer lost)
    SUBMITTED = "submitted"    # upstream accepted it (task id known)
    RUNNING = "running"        # upstream reports progress
    MODAL = "modal"            # upstream waits for /modal input
    STORING = "storing"        # upstream SUCCESS, images being stored
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"        # parent failed or was cancelled

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int:
        return RANK[self]


#: the upstream of a one-upstream fleet (the single-upstream settings), and of steps
#: recorded before the fleet
DEFAULT_UPSTREAM = "default"
TERMINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED,
                      StepStatus.SKIPPED})
IN_FLIGHT = frozenset({StepStatus.SUBMITTING, StepStatus.SUBMITTED, StepStatus.RUNNING,
                       StepStatus.MODAL})
# A step only ever moves to a higher rank (terminal states are all the highest).
RANK = {
    StepStatus.WAITING: 0, StepStatus.QUEUED: 1, StepStatus.SUBMITTING: 2,
    StepStatus.SUBMITTED: 3, StepStatus.MODAL: 4, StepStatus.RUNNING: 5,
    StepStatus.STORING: 6, StepStatus.SUCCEEDED: 9, StepStatus.FAILED: 9,
    StepStatus.CANCELLED: 9, StepStatus.SKIPPED: 9,
}


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED,
                        JobStatus.CANCELLED)


def upstream_state(step_id: str, generation: int | str | None = 0) -> str:
    """The ``state`` sent with a step's submits: the step id, plus the retry generation
    once a finished job was retried (a retry is a new upstream task, not a duplicate)."""
    gen = int(generation or 0)
    return step_id if gen == 0 else f"{step_id}.r{gen}"


@dataclass(frozen=True)
class StepBrief:
    """The few fields of a step that routing decisions read without loading the job."""

    id: str
    status: StepStatus
    task_id: str | None
    custom_id: str | None
    generation: int
    submit_started: float | None
    progress: int = 0                   # 0..100
    progress_at: float | None = None
    upstream: str = DEFAULT_UPSTREAM     # the upstream that holds (or will hold) its task
    late_until: float | None = None     # given up: a late SUCCESS is stored until then

    @property
    def upstream_state(self) -> str:
        return upstream_state(self.id, self.generation)


@dataclass(frozen=True)
class JobBrief:
    """The few fields of a job that lists and counts read without loading its steps."""

    id: str
    status: JobStatus
    created_at: float | None
    finished_at: float | None
    batch: str | None
    root_status: StepStatus | None     # the first step's status (None: gone or not read)


@dataclass
class Step:
    """A step as stored in ``{p}:step:{id}``. JSON fields are decoded on load."""

    id: str
    job: str
    index: int
    label: str
    action: str
    status: StepStatus
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    progress: str = ""
    progress_at: float | None = None     # when the progress last went up (our clock)
    task_id: str | None = None
    #: the fleet's upstream that holds its task (set when a slot there is claimed for it)
    upstream: str | None = None
    custom_id: str | None = None
    parent_task_id: str | None = None
    fail_reason: str | None = None
    prompt: str | None = None
    mask: str | None = None
    enable_remix: bool | None = None
    image_url: str | None = None
    buttons: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    attempt: int = 0
    generation: int = 0
    submit_started: float | None = None
    misses: int = 0
    store_attempts: int = 0
    requeues: int = 0
    #: tasks ahead of it in the upstream's queue when its submit was accepted (numberOfQueues)
    queue_ahead: int | None = None
    #: why mjflow gave up waiting (deadline, lost task), and until when a late SUCCESS of
    #: its task is still stored (see ``worker.jobs.machine.give_up``)
    gave_up: str | None = None
    late_until: float | None = None
    times: dict[str, float] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    #: per-step request options: chooseSameChannel, seed, extend's index/motion, the
    #: /change of a profile without buttons ({"change": ["UPSCALE", 3]})
    options: dict[str, Any] = field(default_factory=dict)

    JSON_FIELDS = ("children", "buttons", "images", "times", "task", "options")

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Step:
        kw: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in h or h[name] == "":
                continue
            raw = h[name]
            if name in cls.JSON_FIELDS:
                kw[name] = json.loads(raw)
            elif name in ("index", "attempt", "misses", "generation", "store_attempts",
                          "requeues", "queue_ahead"):
                kw[name] = int(raw)
            elif name in ("submit_started", "progress_at", "late_until"):
                kw[name] = float(raw)
            elif name == "enable_remix":
                kw[name] = raw == "1"
            elif name == "status":
                kw[name] = StepStatus(raw)
            else:
                kw[name] = raw
        return cls(**kw)

    @property
    def upstream_state(self) -> str:
        return upstream_state(self.id, self.generation)

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in self.JSON_FIELDS:
                out[name] = json.dumps(value, ensure_ascii=False)
            elif isinstance(value, StepStatus):
                out[name] = value.value
            elif isinstance(value, bool):
                out[name] = "1" if value else "0"
            elif value is None:
                out[name] = ""
            else:
                out[name] = str(value)
        return out


@dataclass
class Job:
    """A job as stored in ``{p}:job:{id}``."""

    id: str
    status: JobStatus
    spec: dict[str, Any]
    created_at: float
    batch: str | None = None
    finished_at: float | None = None
    open_steps: int = 0
    cancel_requested: bool = False
    lane: str = "interactive"
    manifest: str | None = None         # the manifest's real key, once the job's finish wrote it
    manifest_uri: str | None = None     # and its URI (s3://bucket/key or file:///path)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Job:
        return cls(
            id=h["id"], status=JobStatus(h["status"]), spec=json.loads(h["spec"]),
            created_at=float(h["created_at"]), batch=h.get("batch") or None,
            finished_at=float(h["finished_at"]) if h.get("finished_at") else None,
            open_steps=int(h.get("open_steps", 0)),
            cancel_requested=h.get("cancel_requested") == "1",
            lane=h.get("lane") or "interactive", manifest=h.get("manifest") or None,
            manifest_uri=h.get("manifest_uri") or None,
        )

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id, "status": self.status.value,
            "spec": json.dumps(self.spec, ensure_ascii=False),
            "created_at": repr(self.created_at), "batch": self.batch or "",
            "finished_at": repr(self.finished_at) if self.finished_at else "",
            "open_steps": str(self.open_steps),
            "cancel_requested": "1" if self.cancel_requested else "0", "lane": self.lane,
            "manifest": self.manifest or "", "manifest_uri": self.manifest_uri or "",
        }

    @property
    def metadata(self) -> dict[str, Any]:
        return self.spec.get("metadata") or {}

    @property
    def priority(self) -> int:
        return int(self.spec.get("priority", 5))
