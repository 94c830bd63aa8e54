"""The plain functions behind every front door (HTTP, Celery, CLI, Python).

    from worker.api import submit, wait
    job = submit({"prompt": "a lighthouse", "then": ["U1"]})   # workers do the rest
    job = wait(job["id"])                                       # optional

    # or with an engine of your own (tests, scripts):
    from worker.api import create_job
    from worker.engine import build_engine
    job = create_job(build_engine(), {"prompt": "a lighthouse", "then": ["U1"]})

Batches (:mod:`worker.batches`) are re-exported here: ``create_batch``, ``get_batch``,
``list_batches``, ``batch_report``, ``retry_batch``, ``cancel_batch``.

Errors: :class:`SpecError` (invalid spec, carries field paths), :class:`Conflict`
(an Idempotency-Key reused with another body), :class:`NotFound`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from typing import Any

import redis
from pydantic import ValidationError

from worker.engine import Engine
from worker.errors import InvalidSpec, MjflowError
from worker.finishing import job_view_by_id
from worker.jobs import machine
from worker.jobs.model import StepStatus
from worker.jobs.spec import JobSpec
from worker.jobs.store import Txn

IDEMPOTENCY_TTL_S = 24 * 3600
MAX_JSON_DEPTH = 64          # a spec nested deeper is refused (metadata included)
MAX_SCAN_PER_PAGE = 500      # jobs of the index one list page looks at, at most


class SpecError(InvalidSpec):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))


class Conflict(MjflowError):
    pass


class NotFound(MjflowError):
    pass


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "FollowUp", "function-after[_by_action(), JobSpec]"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _too_deep(data: Any, limit: int) -> str | None:
    """The path of a value nested deeper than ``limit`` (iteratively: no recursion), or None."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            return path
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def parse_spec(data: Any, *, max_image_bytes: int, prefix: str = "") -> JobSpec:
    """Validate a job spec; raises SpecError listing every problem with its field path."""
    if not isinstance(data, dict):
        raise SpecError([{"path": prefix or "body", "message": "must be a JSON object"}])
    too_deep = _too_deep(data, MAX_JSON_DEPTH)
    if too_deep is not None:
        path = f"{prefix}{'.' if prefix and too_deep else ''}{too_deep}" or "body"
        raise SpecError([{"path": path, "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}])
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError([{"path": prefix or "body",
                          "message": "text contains an unpaired surrogate (not valid Unicode)"}]) from None
    except (TypeError, ValueError, RecursionError):
        raise SpecError([{"path": prefix or "body", "message": "must be plain JSON"}]) from None
    try:
        spec = JobSpec.model_validate(data)
    except RecursionError:
        raise SpecError([{"path": prefix or "body", "message": "nested too deeply"}]) from None
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            path = _loc(tuple(err["loc"]))
            if prefix and path == "body":
                path = ""
            errors.append({"path": f"{prefix}{'.' if prefix and path else ''}{path}",
                           "message": err["msg"].removeprefix("Value error, ")})
        raise SpecError(errors) from None
    try:
        spec.check_images(max_image_bytes)
    except ValueError as exc:
        path, _, msg = str(exc).partition(": ")
        raise SpecError([{"path": f"{prefix}{'.' if prefix else ''}{path}", "message": msg}]) from None
    return spec


def _body_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def create_job(engine: Engine, data: dict[str, Any], *, idempotency_key: str | None = None,
               batch: str | None = None, dispatch_now: bool = True) -> dict[str, Any]:
    """Validate and create a job; returns its view. Idempotent per Idempotency-Key."""
    spec = parse_spec(data, max_image_bytes=engine.settings.max_upload_bytes)
    if idempotency_key:
        job_id, created = _create_once(engine, idempotency_key, _body_hash(data), spec, batch)
        if not created:
            view = job_view_by_id(engine, job_id)
            if view is None:           # expired after the record was read: the key is free
                return create_job(engine, data, idempotency_key=idempotency_key, batch=batch,
                                  dispatch_now=dispatch_now)
            return view | {"replayed": True}
    else:
        job_id = engine.store.create(spec, batch=batch).id
    if dispatch_now:
        from worker.sweeps import dispatch

        dispatch(engine)
    view = job_view_by_id(engine, job_id, urls=False)
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


def get_job(engine: Engine, job_id: str) -> dict[str, Any]:
    view = job_view_by_id(engine, job_id)
    if view is None:
        raise NotFound(f"no job {job_id}")
    from worker.delivery import delivery_log

    view["deliveries"] = delivery_log(engine.r, engine.keys, job_id)
    view["manifest"] = engine.r.hget(engine.keys.job(job_id), "manifest")
    view["events"] = engine.store.notes(job_id)
    return view


def replay_deliveries(engine: Engine, job_id: str) -> dict[str, Any]:
    """Schedule every event of the job again now (a disabled endpoint is re-enabled)."""
    from worker.delivery import replay

    view = get_job(engine, job_id)
    replay(engine.r, engine.keys, job_id=job_id, force=True)
    engine.enqueue.deliver()
    return view | {"deliveries": get_job(engine, job_id)["deliveries"]}


def cancel_job(engine: Engine, job_id: str) -> dict[str, Any]:
    if engine.store.mutate(job_id, machine.cancel) is None:
        raise NotFound(f"no job {job_id}")
    return get_job(engine, job_id)


def retry_job(engine: Engine, job_id: str, *, dispatch_now: bool = True) -> dict[str, Any]:
    """Run the failed steps of a finished job again (their children too)."""
    loaded = engine.store.load(job_id)
    if loaded is None:
        raise NotFound(f"no job {job_id}")

    def fn(tx: Txn) -> int:
        return machine.retry_failed(tx)

    count = engine.store.mutate(job_id, fn) or 0
    if count and dispatch_now:
        from worker.sweeps import dispatch

        dispatch(engine)
    return get_job(engine, job_id) | {"retried": count}


def list_jobs(engine: Engine, *, batch: str | None = None, status: str | None = None,
              created_from: float | None = None, created_to: float | None = None,
              cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    """Jobs newest first, filtered; ``cursor`` is the opaque ``next`` of the previous page.

    One page looks at no more than ``MAX_SCAN_PER_PAGE`` jobs of the index: with a
    ``status`` filter that matches few jobs, a page may hold fewer than ``limit`` items
    (even none) and still carry a ``next`` cursor to continue from."""
    import math

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
            view = job_view_by_id(engine, job_id, urls=False)
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


# -- for services that import mjflow -------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def default_engine() -> Engine:
    """The engine of this process, from ``MJFLOW_*`` settings; work goes to Celery."""
    from worker.engine import build_engine
    from worker.tasks import CeleryEnqueue

    return build_engine(enqueue=CeleryEnqueue())


def submit(spec: dict[str, Any], *, idempotency_key: str | None = None,
           engine: Engine | None = None) -> dict[str, Any]:
    """Create a job from a spec (the JSON of ``POST /v1/jobs``); returns the job view.

    Raises :class:`SpecError` (``.errors`` lists ``{path, message}``) or :class:`Conflict`.
    The Celery workers do the work; the caller does not wait.
    """
    return create_job(engine or default_engine(), spec, idempotency_key=idempotency_key)


def wait(job_id: str, *, timeout_s: float = 1800.0, poll_s: float = 1.0,
         engine: Engine | None = None) -> dict[str, Any]:
    """Poll until the job finishes (or ``timeout_s`` passes); returns the last view."""
    engine = engine or default_engine()
    deadline = time.monotonic() + timeout_s
    while True:
        view = get_job(engine, job_id)
        if view["finishedAt"] or time.monotonic() >= deadline:
            return view
        time.sleep(poll_s)


def _batches():  # type: ignore[no-untyped-def]
    from worker import batches

    return batches


def create_batch(engine: Engine, items: list[Any], name: str | None = None,
                 batch_id: str | None = None, **kw: Any) -> dict[str, Any]:
    """See :func:`worker.batches.create_batch`."""
    return _batches().create_batch(engine, items, name=name, batch_id=batch_id, **kw)


def get_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    return _batches().get_batch(engine, batch_id)


def list_batches(engine: Engine, **kw: Any) -> dict[str, Any]:
    return _batches().list_batches(engine, **kw)


def batch_report(engine: Engine, batch_id: str) -> list[dict[str, Any]]:
    return _batches().report(engine, batch_id)


def retry_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    return _batches().retry_batch(engine, batch_id)


def cancel_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    return _batches().cancel_batch(engine, batch_id)


__all__ = [
    "Conflict",
    "NotFound",
    "SpecError",
    "StepStatus",
    "batch_report",
    "cancel_batch",
    "cancel_job",
    "create_batch",
    "create_job",
    "get_batch",
    "get_job",
    "list_batches",
    "list_jobs",
    "parse_spec",
    "retry_batch",
    "retry_job",
    "submit",
    "wait",
]
