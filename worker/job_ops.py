"""Jobs through the front doors: create (idempotent per Idempotency-Key), read, list,
cancel, retry and replay their events. Plain functions over an :class:`Engine`; the HTTP
API, the CLI, Celery and :mod:`worker.api` call them."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import redis
from pydantic import ValidationError

from worker.delivery import delivery_log, replay
from worker.errors import Conflict, NotFound, SpecError
from worker.flow import budget
from worker.flow.engine import Engine
from worker.flow.tick import dispatch
from worker.jobs import machine
from worker.jobs.fit import follow_up_problems
from worker.jobs.model import Job, Step, StepStatus
from worker.jobs.parse import errors_of, parse_spec
from worker.jobs.routes import route_of
from worker.jobs.spec import FollowUp, JobSpec
from worker.jobs.spec_images import check_data_url
from worker.jobs.store import Txn
from worker.jobs.views import job_view, load_view, not_retried

IDEMPOTENCY_TTL_S = 24 * 3600
MAX_SCAN_PER_PAGE = 500      # jobs of the index one list page looks at, at most


def _body_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def create_job(engine: Engine, data: dict[str, Any], *, idempotency_key: str | None = None,
               batch: str | None = None, dispatch_now: bool = True) -> dict[str, Any]:
    """Validate and create a job; returns its view. Idempotent per Idempotency-Key."""
    spec = parse_spec(data, max_image_bytes=engine.settings.max_upload_bytes,
                      fits=engine.settings.fits)
    if idempotency_key:
        job_id, created = _create_once(engine, idempotency_key, _body_hash(data), spec, batch)
        if not created:
            view = load_view(engine.store, job_id, engine.images)
            if view is None:           # expired after the record was read: the key is free
                return create_job(engine, data, idempotency_key=idempotency_key, batch=batch,
                                  dispatch_now=dispatch_now)
            return view | {"replayed": True}
    else:
        job_id = engine.store.create(spec, batch=batch).id
    if dispatch_now:
        dispatch(engine)
    view = load_view(engine.store, job_id, engine.images_listed)
    assert view is not None
    return view


def _create_once(engine: Engine, key: str, digest: str, spec: JobSpec,
                 batch: str | None) -> tuple[str, bool]:
    """``(job id, created)`` for an Idempotency-Key: the job and the key's record are
    written in one MULTI/EXEC, WATCHing the record, so no crash leaves a key without its
    job and two requests racing on one key cannot both create. A record of another body
    is a :class:`Conflict`. A record whose job does not exist (left by a process killed
    between claim and create before this was atomic) is taken over."""
    idem = engine.keys.idem(key)
    for _ in range(50):
        with engine.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(idem)
                existing = pipe.hgetall(idem)
                if existing.get("hash") and existing["hash"] != digest:
                    raise Conflict("Idempotency-Key already used with a different body")
                if existing.get("job") and pipe.exists(engine.keys.job(existing["job"])):
                    return existing["job"], False
                pipe.multi()
                job = engine.store.queue_create(pipe, spec, batch=batch)
                pipe.hset(idem, mapping={"job": job.id, "hash": digest})
                pipe.expire(idem, IDEMPOTENCY_TTL_S)
                pipe.execute()
                return job.id, True
            except redis.WatchError:
                continue
    raise Conflict("Idempotency-Key is being used by requests still in progress; retry")


GRID_ACTIONS = frozenset({"IMAGINE", "BLEND", "VARIATION", "REROLL"})


def add_steps(engine: Engine, job_id: str, data: Any, *,
              dispatch_now: bool = True) -> dict[str, Any]:
    """Act later: add a follow-up (with its own ``then``) under a step of an existing job,
    e.g. U3 of a grid that finished an hour ago. ``data`` is a follow-up (``button``,
    ``then``, ``prompt``...) plus ``step``: the parent's id, its label, or ``root``.
    Nothing is created when the body is invalid or the parent's task lacks the button."""
    if not isinstance(data, dict):
        raise SpecError([{"path": "body", "message": "must be a JSON object"}])
    body = dict(data)
    ref = body.pop("step", "root")
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError([{"path": "step", "message": "must be a step id, a label or 'root'"}])
    try:
        item = FollowUp.model_validate(body)
    except ValidationError as exc:
        raise SpecError(errors_of(exc, "")) from None
    if item.mask:
        try:
            check_data_url(item.mask, engine.settings.max_upload_bytes)
        except ValueError as exc:
            raise SpecError([{"path": "mask", "message": str(exc)}]) from None
    loaded = engine.store.load(job_id)
    if loaded is None:
        raise NotFound(f"no job {job_id}")
    job, steps = loaded

    def fn(tx: Txn) -> list[str]:
        parent = machine.find_step(tx, ref)
        action = (parent.task or {}).get("action") or (
            job.spec.get("action") if parent.parent is None else None)
        problems = follow_up_problems([item], engine.member(parent.upstream).profile,
                                      parent_grid=action in GRID_ACTIONS, path="then")
        if problems:
            raise SpecError([{"path": p.removeprefix("then[0]").lstrip(".") or "button",
                              "message": m} for p, m in problems])
        return [s.id for s in machine.add_follow_ups(tx, ref, [item])]

    added = engine.store.mutate(job_id, fn)
    if added is None:
        raise NotFound(f"no job {job_id}")
    if dispatch_now:
        dispatch(engine)
    return get_job(engine, job_id) | {"added": added}


def get_job(engine: Engine, job_id: str) -> dict[str, Any]:
    loaded = engine.store.load(job_id)
    if loaded is None:
        raise NotFound(f"no job {job_id}")
    job, steps = loaded
    view = job_view(job, steps, engine.images_checked)
    view["deliveries"] = delivery_log(engine.r, engine.keys, job_id)
    view["manifest"] = job.manifest
    view["manifestUri"] = job.manifest_uri
    view["events"] = engine.store.notes(job_id)
    view["spend"] = budget.job_spend(engine.store, job_id)
    waiting = waiting_reasons(engine, job, steps)
    for step in view["steps"]:
        if step["id"] in waiting:
            step["waiting"] = waiting[step["id"]]
    return view


def waiting_reasons(engine: Engine, job: Job, steps: list[Step]) -> dict[str, str]:
    """Why each queued step is not dispatched, where no upstream can take it now (all that
    serve it are paused, or the one it is pinned to is)."""
    by_id = {s.id: s for s in steps}
    routes = {s.id: route_of(job, s, by_id.get(s.parent) if s.parent else None)
              for s in steps if s.status == StepStatus.QUEUED}
    reasons = {route: engine.fleet.waiting_reason(route) for route in set(routes.values())}
    return {sid: reasons[route] for sid, route in routes.items() if reasons[route]}


def replay_deliveries(engine: Engine, job_id: str) -> dict[str, Any]:
    """Schedule every event of the job again now (a disabled endpoint is re-enabled)."""
    view = get_job(engine, job_id)
    replay(engine.r, engine.keys, job_id=job_id, force=True)
    engine.enqueue.deliver()
    return view | {"deliveries": get_job(engine, job_id)["deliveries"]}


def cancel_job(engine: Engine, job_id: str) -> dict[str, Any]:
    if engine.store.mutate(job_id, machine.cancel) is None:
        raise NotFound(f"no job {job_id}")
    return get_job(engine, job_id)


def retry_job(engine: Engine, job_id: str, *, dispatch_now: bool = True) -> dict[str, Any]:
    """Run the failed steps of a finished job again (their children too); the view says
    how many were reopened (``retried``) and which failed steps a retry cannot help and
    why (``notRetried``: a follow-up whose button was never offered...)."""
    loaded = engine.store.load(job_id)
    if loaded is None:
        raise NotFound(f"no job {job_id}")

    def fn(tx: Txn) -> int:
        return machine.retry_failed(tx)

    count = engine.store.mutate(job_id, fn) or 0
    if count and dispatch_now:
        dispatch(engine)
    view = get_job(engine, job_id)
    return view | {"retried": count, "notRetried": not_retried(view)}


def list_jobs(engine: Engine, *, batch: str | None = None, status: str | None = None,
              created_from: float | None = None, created_to: float | None = None,
              cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    """Jobs newest first, filtered; ``cursor`` is the opaque ``next`` of the previous page.

    One page looks at no more than ``MAX_SCAN_PER_PAGE`` jobs of the index: with a
    ``status`` filter that matches few jobs, a page may hold fewer than ``limit`` items
    (even none) and still carry a ``next`` cursor to continue from."""
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and not math.isfinite(value):
            raise SpecError([{"path": name, "message": "must be a finite unix time"}])
    if cursor is not None:
        try:
            if not math.isfinite(float(cursor.partition(":")[0])):
                raise ValueError
        except ValueError:
            raise SpecError([{"path": "cursor", "message": "not a cursor this API returned"}]) from None
    k = engine.keys
    index = k.batch_jobs(batch) if batch else k.jobs()
    cursor_score: float | None = None
    skip_id: str | None = None
    if cursor:
        head, _, skip_id = cursor.partition(":")
        cursor_score = float(head)
    hi: Any = cursor_score if cursor_score is not None else (
        created_to if created_to is not None else "+inf")
    if cursor_score is not None and created_to is not None:
        hi = min(cursor_score, created_to)
    lo = created_from if created_from is not None else "-inf"
    out: list[dict[str, Any]] = []
    offset = 0
    page = max(limit * 2, 50)
    last_score = None
    scanned = 0
    more = False
    last_scanned: tuple[float, str] | None = None
    while len(out) < limit and not more:
        rows = engine.r.zrevrangebyscore(index, hi, lo, start=offset, num=page, withscores=True)
        if not rows:
            break
        offset += len(rows)
        for job_id, score in rows:
            if scanned >= MAX_SCAN_PER_PAGE:    # bounded work: the client follows ``next``
                more = True
                break
            scanned += 1
            last_scanned = (score, job_id)
            if skip_id is not None:
                if score == cursor_score:
                    # ties with the cursor: skip up to and including the cursor job
                    if job_id == skip_id:
                        skip_id = None
                    continue
                skip_id = None          # the cursor job is gone; carry on below its score
            view = load_view(engine.store, job_id, engine.images_listed)
            if view is None or (status and view["status"] != status):
                continue
            out.append(view)
            last_score = (score, job_id)
            if len(out) >= limit:
                break
    if more:
        last_score = last_scanned
    nxt = f"{last_score[0]!r}:{last_score[1]}" if last_score and (more or len(out) >= limit) \
        else None
    return {"items": out, "next": nxt}
