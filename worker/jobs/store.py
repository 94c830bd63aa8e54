"""Jobs and steps in Redis: creation, loading, and atomic per-job transactions.

Every change to a job or its steps goes through :meth:`JobStore.mutate`, an optimistic
transaction (WATCH the job and its steps, compute in Python, MULTI/EXEC the writes and
the index moves together, retry on conflict). Lua scripts that touch steps (dispatch
claims) write the same watched keys, so they are serialised with these transactions.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from worker.jobs.model import Job, JobStatus, Step, StepStatus
from worker.jobs.spec import FollowUp, JobSpec, normalize_then
from worker.keys import Keys

T = TypeVar("T")
PRIORITY_BUCKET = 10**13  # ready-queue score = (9 - priority) * bucket + creation ms


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def ready_score(priority: int, job_created_s: float) -> float:
    """Higher priority first; within a priority, older jobs first, so a job's follow-ups
    go ahead of later jobs' first steps and jobs finish (and store) early in a batch."""
    return (9 - priority) * PRIORITY_BUCKET + int(job_created_s * 1000)


@dataclass
class Txn:
    """The view of one job inside a transaction, plus the writes it will commit."""

    store: JobStore
    job: Job
    steps: dict[str, Step]
    pipe: Any
    dirty: set[str] = field(default_factory=set)
    job_dirty: bool = False
    after: list[Callable[[], None]] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)

    @property
    def keys(self) -> Keys:
        return self.store.keys

    def save(self, step: Step) -> None:
        self.dirty.add(step.id)

    def effect(self, name: str) -> None:
        """Count a side effect (tests and metrics read ``counter:effects``)."""
        self.effects.append(name)

    def then(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after the transaction commits (e.g. enqueue a Celery task)."""
        self.after.append(fn)


class JobStore:
    def __init__(self, r: redis.Redis, keys: Keys, *, retention_s: int = 7 * 86400,
                 redrive_s: float = 60.0) -> None:
        self.r = r
        self.keys = keys
        self.retention_s = retention_s
        self.redrive_s = redrive_s
        #: called with the job id after a commit whose transaction counted that effect
        self.on_effect: dict[str, Callable[[str], None]] = {}

    # -- creation -------------------------------------------------------------------
    def create(self, spec: JobSpec, *, batch: str | None = None, job_id: str | None = None,
               now: float | None = None) -> Job:
        pipe = self.r.pipeline(transaction=True)
        job = self.queue_create(pipe, spec, batch=batch, job_id=job_id, now=now)
        pipe.execute()
        return job

    def queue_create(self, pipe: Any, spec: JobSpec, *, batch: str | None = None,
                     job_id: str | None = None, now: float | None = None) -> Job:
        """Queue the writes that create the job on ``pipe`` (a transaction the caller
        executes, possibly with writes of its own: one atomic step)."""
        now = time.time() if now is None else now
        job = Job(id=job_id or new_id("job"), status=JobStatus.QUEUED,
                  spec=spec.model_dump(mode="json", exclude_none=True), created_at=now,
                  batch=batch, lane=batch or "interactive")
        root = Step(id=new_id("stp"), job=job.id, index=0, label=spec.action,
                    action=spec.action, status=StepStatus.QUEUED, times={"created": now})
        steps = [root]
        self._children(root, normalize_then(spec.then), steps, now)
        job.open_steps = len(steps)
        k = self.keys
        pipe.hset(k.job(job.id), mapping=job.to_hash())
        pipe.rpush(k.job_steps(job.id), *[s.id for s in steps])
        for s in steps:
            pipe.hset(k.step(s.id), mapping=s.to_hash())
        pipe.zadd(k.jobs(), {job.id: now})
        pipe.sadd(k.jobs_live(), job.id)
        if batch:
            pipe.zadd(k.batch_jobs(batch), {job.id: now})
        pipe.zadd(k.ready(job.lane), {root.id: ready_score(job.priority, now)})
        pipe.zadd(k.lanes(), {job.lane: 0}, nx=True)
        return job

    def _children(self, parent: Step, items: list[FollowUp], out: list[Step], now: float) -> None:
        for item in items:
            child = Step(id=new_id("stp"), job=parent.job, index=len(out), label=item.button,
                         action="ACTION", status=StepStatus.WAITING, parent=parent.id,
                         prompt=item.prompt, mask=item.mask, enable_remix=item.enableRemix,
                         times={"created": now})
            parent.children.append(child.id)
            out.append(child)
            self._children(child, normalize_then(item.then), out, now)

    # -- reading ----------------------------------------------------------------------
    def step_ids(self, job_id: str) -> list[str]:
        return self.r.lrange(self.keys.job_steps(job_id), 0, -1)

    def load(self, job_id: str) -> tuple[Job, list[Step]] | None:
        h = self.r.hgetall(self.keys.job(job_id))
        if not h:
            return None
        ids = self.step_ids(job_id)
        pipe = self.r.pipeline(transaction=False)
        for sid in ids:
            pipe.hgetall(self.keys.step(sid))
        steps = [Step.from_hash(x) for x in pipe.execute() if x]
        return Job.from_hash(h), steps

    def get_step(self, step_id: str) -> Step | None:
        h = self.r.hgetall(self.keys.step(step_id))
        return Step.from_hash(h) if h else None

    def job_of(self, step_id: str) -> str | None:
        return self.r.hget(self.keys.step(step_id), "job")

    # -- transactions ---------------------------------------------------------------------
    def mutate(self, job_id: str, fn: Callable[[Txn], T], *, retries: int = 50) -> T | None:
        """Run ``fn`` on a consistent view of the job and commit its writes atomically.

        Returns ``fn``'s result, or None if the job does not exist.
        """
        k = self.keys
        ids = self.step_ids(job_id)
        watched = [k.job(job_id)] + [k.step(s) for s in ids]
        for _ in range(retries):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*watched)
                    h = pipe.hgetall(k.job(job_id))
                    if not h:
                        pipe.reset()
                        return None
                    raw = [pipe.hgetall(k.step(s)) for s in ids]
                    steps = {s.id: s for s in (Step.from_hash(x) for x in raw if x)}
                    pipe.multi()
                    txn = Txn(self, Job.from_hash(h), steps, pipe)
                    result = fn(txn)
                    for sid in txn.dirty:
                        pipe.hset(k.step(sid), mapping=txn.steps[sid].to_hash())
                    if txn.job_dirty:
                        pipe.hset(k.job(job_id), mapping=txn.job.to_hash())
                    for name in txn.effects:
                        pipe.hincrby(k.counter("effects"), name, 1)
                    pipe.execute()
                except redis.WatchError:
                    continue
            for action in txn.after:
                action()
            for name in txn.effects:
                if name in self.on_effect:
                    self.on_effect[name](job_id)
            return result
        raise RuntimeError(f"job {job_id}: too much contention, gave up after {retries} tries")

    def note(self, job_id: str, kind: str, message: str, now: float | None = None) -> None:
        """Append a line to the job's timeline of notable events (shown by the API)."""
        entry = {"at": time.time() if now is None else now, "kind": kind, "message": message}
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.keys.job_events(job_id), json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(self.keys.job_events(job_id), -100, -1)
        pipe.execute()

    def notes(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.keys.job_events(job_id), 0, -1)]

    def counters(self, name: str) -> dict[str, int]:
        return {f: int(v) for f, v in self.r.hgetall(self.keys.counter(name)).items()}

    def bump(self, name: str, field_: str, by: int = 1) -> None:
        self.r.hincrby(self.keys.counter(name), field_, by)
