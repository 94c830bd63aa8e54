"""Typed results: the job, batch and event JSON of ``docs/api.md`` as dataclasses.

Each keeps the dict it was built from in ``raw`` (fields may be added to the API; they
show up there first). Times stay ISO-8601 strings, as the API sends them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JOB_STATUSES = ("queued", "running", "succeeded", "partial", "failed", "cancelled")
FINISHED_STATUSES = ("succeeded", "partial", "failed", "cancelled")


@dataclass(frozen=True)
class Image:
    key: str | None               # the object's real key (the storage prefix included)
    url: str | None = None
    bucket: str | None = None     # S3 storage
    uri: str | None = None        # s3://bucket/key or file:///path
    path: str | None = None       # file storage
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | str) -> Image:
        if isinstance(d, str):       # an event's data.images lists bare keys
            return cls(key=d, raw={"key": d})
        return cls(key=d.get("key"), url=d.get("url"), bucket=d.get("bucket"), uri=d.get("uri"),
                   path=d.get("path"), sha256=d.get("sha256"),
                   bytes=d.get("bytes"), width=d.get("width"), height=d.get("height"), raw=d)


@dataclass(frozen=True)
class Step:
    id: str
    label: str | None
    action: str | None
    status: str
    parent: str | None = None
    custom_id: str | None = None
    progress: str | None = None
    task_id: str | None = None
    fail_reason: str | None = None
    attempts: int | None = None
    images: list[Image] = field(default_factory=list)
    times: dict[str, Any] = field(default_factory=dict)
    final_prompt: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(id=d.get("id", ""), label=d.get("label"), action=d.get("action"),
                   status=d.get("status", ""), parent=d.get("parent"),
                   custom_id=d.get("customId"), progress=d.get("progress"),
                   task_id=d.get("taskId"), fail_reason=d.get("failReason"),
                   attempts=d.get("attempts"),
                   images=[Image.from_dict(i) for i in d.get("images") or ()],
                   times=d.get("times") or {}, final_prompt=d.get("finalPrompt"), raw=d)


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    steps: list[Step]
    batch: str | None = None
    key: str | None = None
    action: str | None = None
    prompt: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    priority: int | None = None
    created_at: str | None = None
    finished_at: str | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    manifest: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(id=d["id"], status=d.get("status", ""),
                   steps=[Step.from_dict(s) for s in d.get("steps") or ()],
                   batch=d.get("batch"), key=d.get("key"), action=d.get("action"),
                   prompt=d.get("prompt"), metadata=d.get("metadata") or {},
                   callback_url=d.get("callbackUrl"), priority=d.get("priority"),
                   created_at=d.get("createdAt"), finished_at=d.get("finishedAt"),
                   deliveries=d.get("deliveries") or [], manifest=d.get("manifest"), raw=d)

    @property
    def finished(self) -> bool:
        """True once the job is finished (``finishedAt`` is set), whatever its status."""
        return bool(self.finished_at)

    @property
    def images(self) -> list[Image]:
        """Every stored image, in step order."""
        return [img for s in self.steps for img in s.images]


@dataclass(frozen=True)
class Batch:
    id: str
    status: str
    name: str | None = None
    total: int = 0
    finished: int = 0
    progress: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    done: bool = False
    submitted: dict[str, int] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Batch:
        return cls(id=d["id"], status=d.get("status", ""), name=d.get("name"),
                   total=d.get("total") or 0, finished=d.get("finished") or 0,
                   progress=d.get("progress") or 0.0, counts=d.get("counts") or {},
                   done=bool(d.get("done")), submitted=d.get("submitted"),
                   created_at=d.get("createdAt"), updated_at=d.get("updatedAt"),
                   finished_at=d.get("finishedAt"), raw=d)


@dataclass(frozen=True)
class Event:
    """A verified event (``docs/operations.md``): ``job.succeeded``, ``job.partial``,
    ``job.failed``, ``job.cancelled`` or ``step.succeeded``.

    ``id`` is the ``webhook-id`` header: the same across retries and replays, so use it
    to drop an event already processed. ``images`` are the storage keys of the stored
    images; ``steps[].images`` carry the presigned ``url`` too (valid
    ``MJFLOW_PRESIGN_TTL_S``; ``Client.get(event.job_id)`` gives fresh ones).
    """

    id: str
    type: str
    timestamp: str
    job_id: str
    status: str | None
    batch: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    step_id: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, msg_id: str, d: dict[str, Any]) -> Event:
        data = d["data"]
        return cls(id=msg_id, type=d["type"], timestamp=d.get("timestamp", ""),
                   job_id=data["jobId"], status=data.get("status"), batch=data.get("batch"),
                   metadata=data.get("metadata") or {},
                   steps=[Step.from_dict(s) for s in data.get("steps") or ()],
                   images=[str(k) for k in data.get("images") or ()],
                   step_id=data.get("stepId"), created_at=data.get("createdAt"),
                   finished_at=data.get("finishedAt"), raw=d)

    @property
    def stored_images(self) -> list[Image]:
        """The images of the event's steps (key, presigned url, sha256, size...)."""
        steps = [s for s in self.steps if self.step_id in (None, s.id)]
        return [img for s in steps for img in s.images]
