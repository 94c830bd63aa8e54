"""Jobs and steps in Redis: creation, loading, and atomic per-job transactions.

Every change to a job or its steps goes through :meth:`JobStore.mutate`, an optimistic
transaction (WATCH the job and its steps, compute in Python, MULTI/EXEC the writes and
the index moves together, retry on conflict). Lua scripts that touch steps (dispatch
claims) write the same watched keys, so they are serialised with these transactions.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from worker.jobs.inbox import Inbox
from worker.jobs.model import (
    DEFAULT_UPSTREAM,
    Job,
    JobBrief,
    JobStatus,
    Step,
    StepBrief,
    StepStatus,
)
from worker.jobs.routes import queue_of, route_of
from worker.jobs.spec import EXTEND, FollowUp, JobSpec, normalize_then
from worker.keys import Keys
from worker.upstream.models import percent
from worker.upstream.profiles import Profile, get_profile

T = TypeVar("T")
log = logging.getLogger("mjflow.step")
NOTES_KEPT = 100          # a job's timeline keeps its last this many entries
PRIORITY_BUCKET = 10**13  # ready-queue score = (9 - priority) * bucket + creation ms


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def ready_score(priority: int, job_created_s: float) -> float:
    """Higher priority first; within a priority, older jobs first, so a job's follow-ups
    go ahead of later jobs' first steps and jobs finish (and store) early in a batch."""
    return (9 - priority) * PRIORITY_BUCKET + int(job_created_s * 1000)


@dataclass
class Txn:
    """The view of one job inside a transaction, plus the writes it will commit and the
    effects its transitions registered (handed out once it commits)."""

    store: JobStore
    job: Job
    steps: dict[str, Step]
    pipe: Any
    dirty: set[str] = field(default_factory=set)
    job_dirty: bool = False
    effects: list[tuple[str, str]] = field(default_factory=list)

    @property
    def keys(self) -> Keys:
        return self.store.keys

    def save(self, step: Step) -> None:
        self.dirty.add(step.id)

    def add(self, step: Step) -> None:
        """A new step of this job (act later): written with the commit, listed last."""
        self.steps[step.id] = step
        self.dirty.add(step.id)
        self.pipe.rpush(self.keys.job_steps(self.job.id), step.id)

    def note(self, kind: str, message: str, now: float) -> None:
        """A line of the job's timeline (:meth:`JobStore.note`), written with the commit."""
        entry = {"at": now, "kind": kind, "message": message}
        self.pipe.rpush(self.keys.job_events(self.job.id), json.dumps(entry, ensure_ascii=False))
        self.pipe.ltrim(self.keys.job_events(self.job.id), -NOTES_KEPT, -1)

    def effect(self, name: str, target: str | None = None) -> None:
        """Register what must follow this transaction: counted in ``counter:effects`` with
        the commit, then handed to the handler the engine wired for ``name`` (with
        ``target``, a step or job id; the job's id when omitted)."""
        self.effects.append((name, target or self.job.id))


def _log_moves(txn: Txn, before: dict[str, StepStatus]) -> None:
    """The one INFO line per step transition, written once its transaction committed."""
    if not log.isEnabledFor(logging.INFO):
        return
    for sid in txn.dirty:
        step = txn.steps[sid]
        if before.get(sid) != step.status:
            frm = before[sid].value if sid in before else "new"
            log.info("step %s -> %s", frm, step.status.value,
                     extra={"job": txn.job.id, "step": sid, "task": step.task_id or None,
                            "label": step.label, "reason": step.fail_reason or None})


def new_child(parent: Step, item: FollowUp, index: int, now: float, *, seed: bool = False
              ) -> Step:
    """A follow-up step (``waiting``) under ``parent``, with its request options."""
    options = {"chooseSameChannel": item.chooseSameChannel, "index": item.index,
               "motion": item.motion, "seed": True if (item.seed or seed) else None}
    extend = item.button.strip().lower() == EXTEND
    child = Step(id=new_id("stp"), job=parent.job, index=index, label=item.button,
                 action="EXTEND" if extend else "ACTION", status=StepStatus.WAITING,
                 parent=parent.id, prompt=item.prompt, mask=item.mask,
                 enable_remix=item.enableRemix, times={"created": now},
                 options={k: v for k, v in options.items() if v is not None})
    parent.children.append(child.id)
    return child


class JobStore:
    def __init__(self, r: redis.Redis, keys: Keys, *, retention_s: int = 7 * 86400,
                 redrive_s: float = 60.0,
                 profile_of: Callable[[str | None], Profile] | None = None) -> None:
        self.r = r
        self.keys = keys
        self.retention_s = retention_s
        self.redrive_s = redrive_s
        #: the callback receiver's one round trip, and the worker's side of it
        self.inbox = Inbox(r, keys, retention_s, redrive_s)
        #: an upstream's profile by its name: how it takes follow-ups ("buttons", or
        #: "change" on novicezk) and the model version of prompts without ``--v``
        self.profile_of = profile_of or (lambda _name: get_profile(None))
        #: effect name -> handler, called with the effect's target after the commit that
        #: registered it (the engine wires these: see ``worker.flow.engine``)
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
                    action=spec.action, status=StepStatus.QUEUED, times={"created": now},
                    parent_task_id=spec.taskId, options={"seed": True} if spec.seed else {})
        steps = [root]
        self._children(root, normalize_then(spec.then), steps, now, spec.seed)
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
        queue = queue_of(route_of(job, root, None), job.lane)
        pipe.zadd(k.ready(queue), {root.id: ready_score(job.priority, now)})
        pipe.zadd(k.lanes(), {queue: 0}, nx=True)
        return job

    def _children(self, parent: Step, items: list[FollowUp], out: list[Step], now: float,
                  seed: bool = False) -> None:
        for item in items:
            child = new_child(parent, item, len(out), now, seed=seed)
            out.append(child)
            self._children(child, normalize_then(item.then), out, now, seed)

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

    def job_spec(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.hget(self.keys.job(job_id), "spec")
        return json.loads(raw) if raw else None

    def get_step(self, step_id: str) -> Step | None:
        h = self.r.hgetall(self.keys.step(step_id))
        return Step.from_hash(h) if h else None

    def job_of(self, step_id: str) -> str | None:
        return self.r.hget(self.keys.step(step_id), "job")

    def briefs(self, step_ids: list[str]) -> list[StepBrief | None]:
        """:class:`StepBrief` of each step (None where the step is gone), in one round trip."""
        names = ("status", "task_id", "custom_id", "generation", "submit_started", "progress",
                 "progress_at", "upstream", "late_until")
        pipe = self.r.pipeline(transaction=False)
        for sid in step_ids:
            pipe.hmget(self.keys.step(sid), *names)
        out: list[StepBrief | None] = []
        for sid, (status, task_id, custom_id, generation, started, progress, progress_at,
                  upstream, late_until) in zip(step_ids, pipe.execute()):
            out.append(None if status is None else StepBrief(
                sid, StepStatus(status), task_id or None, custom_id or None, int(generation or 0),
                float(started) if started else None, percent(progress),
                float(progress_at) if progress_at else None, upstream or DEFAULT_UPSTREAM,
                float(late_until) if late_until else None))
        return out

    def brief(self, step_id: str) -> StepBrief | None:
        return self.briefs([step_id])[0]

    def job_briefs(self, job_ids: list[str]) -> list[JobBrief | None]:
        """:class:`JobBrief` of each job (None where the job is gone), in two round trips:
        the root step's status is read only for jobs that have not finished."""
        pipe = self.r.pipeline(transaction=False)
        for jid in job_ids:
            pipe.hmget(self.keys.job(jid), "status", "created_at", "finished_at", "batch")
            pipe.lindex(self.keys.job_steps(jid), 0)
        raw = pipe.execute()
        rows = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
        open_roots = [root for (fields, root) in rows
                      if fields[0] is not None and not JobStatus(fields[0]).finished and root]
        pipe = self.r.pipeline(transaction=False)
        for root in open_roots:
            pipe.hget(self.keys.step(root), "status")
        root_status = dict(zip(open_roots, pipe.execute()))
        out: list[JobBrief | None] = []
        for jid, ((status, created, finished, batch), root) in zip(job_ids, rows):
            if status is None:
                out.append(None)
                continue
            rs = root_status.get(root) if root else None
            out.append(JobBrief(jid, JobStatus(status), float(created) if created else None,
                                float(finished) if finished else None, batch or None,
                                StepStatus(rs) if rs else None))
        return out

    def job_status(self, job_id: str) -> JobStatus | None:
        """The stored status of a job (one read), or None if it is gone."""
        raw = self.r.hget(self.keys.job(job_id), "status")
        return JobStatus(raw) if raw else None

    def step_times(self, step_ids: list[str]) -> list[dict[str, float]]:
        """The ``times`` of each step ({} where the step is gone)."""
        pipe = self.r.pipeline(transaction=False)
        for sid in step_ids:
            pipe.hget(self.keys.step(sid), "times")
        return [json.loads(raw) if raw else {} for raw in pipe.execute()]

    # -- writes outside a transaction (single fields; a concurrent ``mutate`` watching the
    # -- hash retries, so neither write is lost) ------------------------------------------
    def set_manifest(self, job_id: str, key: str, uri: str) -> None:
        """Record where the job's manifest was written (its real key and URI)."""
        self.r.hset(self.keys.job(job_id), mapping={"manifest": key, "manifest_uri": uri})

    def reschedule_store(self, step_id: str, backoff_s: tuple[float, ...]) -> float:
        """Count a failed store attempt and schedule the next one; returns the delay."""
        attempt = int(self.r.hincrby(self.keys.step(step_id), "store_attempts", 1))
        delay = backoff_s[min(attempt - 1, len(backoff_s) - 1)]
        self.r.zadd(self.keys.storing(), {step_id: time.time() + delay}, xx=True)
        return delay

    def seen_tasks(self, step_id: str, limit: int = 20) -> list[str]:
        return sorted(self.r.srandmember(self.keys.step_seen(step_id), limit) or [])

    def poll_at(self, step_id: str, at: float) -> None:
        """Move an in-flight step's next check (only if it is scheduled)."""
        self.r.zadd(self.keys.poll(), {step_id: at}, xx=True)

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
                    before = {sid: s.status for sid, s in steps.items()}
                    pipe.multi()
                    txn = Txn(self, Job.from_hash(h), steps, pipe)
                    result = fn(txn)
                    for sid in txn.dirty:
                        pipe.hset(k.step(sid), mapping=txn.steps[sid].to_hash())
                    if txn.job_dirty:
                        pipe.hset(k.job(job_id), mapping=txn.job.to_hash())
                    for name, _ in txn.effects:
                        pipe.hincrby(k.counter("effects"), name, 1)
                    pipe.execute()
                except redis.WatchError:
                    continue
            _log_moves(txn, before)
            for name, target in txn.effects:
                handler = self.on_effect.get(name)
                if handler is not None:
                    handler(target)
            return result
        raise RuntimeError(f"job {job_id}: too much contention, gave up after {retries} tries")

    def note(self, job_id: str, kind: str, message: str, now: float | None = None) -> None:
        """Append a line to the job's timeline of notable events (shown by the API)."""
        entry = {"at": time.time() if now is None else now, "kind": kind, "message": message}
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.keys.job_events(job_id), json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(self.keys.job_events(job_id), -NOTES_KEPT, -1)
        pipe.execute()

    def notes(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.keys.job_events(job_id), 0, -1)]

    def counters(self, name: str) -> dict[str, int]:
        return {f: int(v) for f, v in self.r.hgetall(self.keys.counter(name)).items()}

    def bump(self, name: str, field_: str, by: int = 1) -> None:
        self.r.hincrby(self.keys.counter(name), field_, by)
