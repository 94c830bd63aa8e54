"""Batches: many job specs under one id that can be submitted again and again safely.

    from worker.batches import create_batch
    view = create_batch(engine, [{"prompt": "a fox"}, "a lighthouse"], name="overnight")

Resume rules. Every item has a key: its own ``key`` or ``line-<n>:<digest>`` (``n`` its
1-based position or JSONL line, ``digest`` a hash of the item), so the same file gives the
same keys. The batch id is derived from the name (or, with no name, from the items), so
submitting the same thing again lands in the same batch. For each item:

* no job yet: the key is claimed (``HSETNX`` of ``~<job id>``, a *pending* claim) before
  the job is created with that id, then the claim is confirmed (``<job id>``). A crash in
  between leaves a pending claim; the next submission creates the job with the same id.
* job queued or running: left alone (never duplicated);
* job succeeded, or purged by retention after it finished: left alone (not redone);
* job partial: its failed steps are retried in place (succeeded steps are kept; a
  follow-up whose button was never offered is not retried, so such a job stays as it is);
* job failed or cancelled: replaced by a new job (compare-and-set on the key).

Redis: ``batch(id)`` hash (name, created, updated, resumed), ``batch_keys(id)`` item key ->
job id, ``batch_jobs(id)`` every job ever created for the batch, ``batches()`` by creation.
"""
from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Any

import redis

from worker.batch_items import (  # noqa: F401 - part of this module's interface
    BATCH_ID_RE,
    MAX_NAME_CHARS,
    _canonical,
    batch_id_for,
    check_batch_id,
    check_name,
    default_key,
    item_digest,
    loads_strict,
    prepare,
    read_jsonl,
)
from worker.errors import NotFound, SpecError
from worker.flow import budget
from worker.flow.engine import Engine
from worker.flow.tick import dispatch
from worker.job_ops import retry_job
from worker.jobs import machine
from worker.jobs.parse import parse_spec
from worker.jobs.store import new_id
from worker.jobs.views import brief_status, iso, load_view, tally

MAX_BATCH_ITEMS = 10_000
NOT_RETRIED_LISTED = 100
THROUGHPUT_WINDOW_S = 600.0
MIN_RATE_WINDOW_S = 5.0
CREATE_LOCK_S = 60
PENDING = "~"
REPORT_FIELDS = ("key", "jobId", "status", "prompt", "imageKeys", "imageUris", "reason",
                 "createdAt", "finishedAt", "cost")


# -- creation --------------------------------------------------------------------------------
def create_batch(engine: Engine, items: list[Any], name: str | None = None,
                 batch_id: str | None = None, *, then: list[Any] | None = None) -> dict[str, Any]:
    """Validate every item, then create (or resume) the batch; returns its view plus
    ``submitted``: how many items were created, already done, in progress, retried, renewed.

    Nothing is created when any item is invalid (:class:`worker.SpecError` lists all).
    """
    if not isinstance(items, list):
        raise SpecError([{"path": "items", "message": "must be a list of job specs"}])
    return _create(engine, list(enumerate(items, 1)), name=name, batch_id=batch_id, then=then,
                   path="items", zero_based=True)


def create_batch_jsonl(engine: Engine, text: str, name: str | None = None,
                       batch_id: str | None = None, *, then: list[Any] | None = None) -> dict[str, Any]:
    """The same from JSONL text (one spec or prompt a line); errors name their line."""
    entries, errors = read_jsonl(text)
    return create_batch_lines(engine, entries, errors, name=name, batch_id=batch_id, then=then)


def create_batch_lines(engine: Engine, entries: list[tuple[int, Any]],
                       errors: list[dict[str, Any]], name: str | None = None,
                       batch_id: str | None = None, *, then: list[Any] | None = None,
                       ) -> dict[str, Any]:
    """The same from JSONL lines already read (``worker.batch_stream.read_jsonl_stream``)."""
    return _create(engine, entries, name=name, batch_id=batch_id, then=then, path="lines",
                   zero_based=False, errors=errors)


def _create(engine: Engine, entries: list[tuple[int, Any]], *, name: str | None,
            batch_id: str | None, then: list[Any] | None, path: str, zero_based: bool,
            errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    errors = list(errors or [])
    check_name(name)
    if batch_id is not None:
        check_batch_id(batch_id)
    if len(entries) + len(errors) > MAX_BATCH_ITEMS:
        raise SpecError([{"path": path, "message": f"at most {MAX_BATCH_ITEMS} items per "
                              "request (send more in further requests with the same name)"}])
    items, item_errors = prepare(entries, max_image_bytes=engine.settings.max_upload_bytes,
                                 then=then, path=path, zero_based=zero_based,
                                 fits=engine.settings.fits)
    errors += item_errors
    if not errors and not items:
        errors.append({"path": path, "message": "a batch needs at least one item"})
    if errors:
        raise SpecError(sorted(errors, key=lambda e: e.get("line", 0)))
    if batch_id is None:
        batch_id = batch_id_for(name) if name else batch_id_for(
            "items:" + hashlib.sha256(_canonical(items)).hexdigest())
    return submit_items(engine, batch_id, items, name=name)


def submit_items(engine: Engine, batch_id: str, items: list[dict[str, Any]],
                 name: str | None = None) -> dict[str, Any]:
    """Place already validated items (each with a ``key``) into the batch."""
    r, k = engine.r, engine.keys
    now = time.time()
    if r.hsetnx(k.batch(batch_id), "created", repr(now)):
        r.zadd(k.batches(), {batch_id: now})
    fields = {"id": batch_id, "updated": repr(now)}
    if name:
        fields["name"] = name
    r.hset(k.batch(batch_id), mapping=fields)
    summary = {"created": 0, "done": 0, "inProgress": 0, "retried": 0, "renewed": 0}
    for item in items:
        spec = parse_spec(item, max_image_bytes=engine.settings.max_upload_bytes,
                          fits=engine.settings.fits)
        outcome = place(engine, batch_id, item["key"], spec)
        summary[outcome] += 1
    if summary["created"] or summary["retried"] or summary["renewed"]:
        r.hset(k.batch(batch_id), "resumed", repr(now))
        dispatch(engine)
    return batch_view(engine, batch_id) | {"submitted": summary}


def place(engine: Engine, batch_id: str, key: str, spec: Any) -> str:
    """Put one item into the batch per the resume rules; returns what was done."""
    r, k = engine.r, engine.keys
    slot = k.batch_keys(batch_id)
    for _ in range(20):
        claimed = r.hget(slot, key)
        if claimed is None:
            job_id = new_id("job")
            if r.hsetnx(slot, key, PENDING + job_id):
                return _create_claimed(engine, batch_id, key, job_id, spec)
            continue
        job_id = claimed.removeprefix(PENDING)
        known = engine.store.job_status(job_id)
        status = known.value if known else None
        if claimed.startswith(PENDING):
            if status is None:
                return _create_claimed(engine, batch_id, key, job_id, spec)
            _confirm(engine, batch_id, key, job_id)   # its creator died after creating it
            continue
        if status is None or status == "succeeded":
            return "done"                       # finished (purged: finished long ago)
        if status == "partial":
            reopened = retry_job(engine, job_id, dispatch_now=False).get("retried", 0)
            return "retried" if reopened else "done"   # nothing retryable: leave it
        if status in ("failed", "cancelled"):
            fresh = new_id("job")
            if _swap(r, slot, key, claimed, PENDING + fresh):
                _create_claimed(engine, batch_id, key, fresh, spec)
                return "renewed"
            continue
        return "inProgress"
    return "inProgress"


def _swap(r: redis.Redis, slot: str, key: str, old: str, new: str) -> bool:
    with r.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(slot)
            if pipe.hget(slot, key) != old:
                pipe.reset()
                return False
            pipe.multi()
            pipe.hset(slot, key, new)
            pipe.execute()
            return True
        except redis.WatchError:
            return False


def _create_claimed(engine: Engine, batch_id: str, key: str, job_id: str, spec: Any) -> str:
    """Create the job of a pending claim, once even with concurrent submitters."""
    r, k = engine.r, engine.keys
    lock = k.lock(f"create:{job_id}")
    if not r.set(lock, "1", nx=True, ex=CREATE_LOCK_S):
        return "inProgress"                     # another submitter is creating it right now
    try:
        if not r.exists(k.job(job_id)):
            engine.store.create(spec, batch=batch_id, job_id=job_id)
        _confirm(engine, batch_id, key, job_id)
    finally:
        r.delete(lock)
    return "created"


def _confirm(engine: Engine, batch_id: str, key: str, job_id: str) -> None:
    slot = engine.keys.batch_keys(batch_id)
    with engine.r.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(slot)
            if pipe.hget(slot, key) != PENDING + job_id:
                pipe.reset()
                return
            pipe.multi()
            pipe.hset(slot, key, job_id)
            pipe.execute()
        except redis.WatchError:
            pass


# -- reading --------------------------------------------------------------------------------
def exists(engine: Engine, batch_id: str) -> bool:
    return bool(engine.r.exists(engine.keys.batch(batch_id)))


def item_jobs(engine: Engine, batch_id: str) -> dict[str, str]:
    """Item key -> its current job id."""
    raw = engine.r.hgetall(engine.keys.batch_keys(batch_id))
    return {key: value.removeprefix(PENDING) for key, value in raw.items()}


def _pending(engine: Engine, batch_id: str) -> set[str]:
    """Job ids claimed but maybe not created yet (a submitter died in between)."""
    raw = engine.r.hvals(engine.keys.batch_keys(batch_id))
    return {v.removeprefix(PENDING) for v in raw if v.startswith(PENDING)}


def _states(engine: Engine, job_ids: list[str], pending: frozenset[str] | set[str] = frozenset(),
            ) -> list[tuple[str, float | None, float | None]]:
    """(status, created, finished) per job, as the job view would say (two round trips);
    see :func:`worker.jobs.views.brief_status` (a pending claim counts as ``queued``)."""
    out = []
    for jid, brief in zip(job_ids, engine.store.job_briefs(job_ids)):
        status = brief_status(brief, pending=jid in pending)
        out.append((status, brief.created_at if brief else None,
                    brief.finished_at if brief else None))
    return out


def batch_view(engine: Engine, batch_id: str, *, now: float | None = None) -> dict[str, Any]:
    """Counts by status, progress, throughput and ETA of a batch."""
    now = time.time() if now is None else now
    h = engine.r.hgetall(engine.keys.batch(batch_id))
    if not h:
        raise NotFound(f"no batch {batch_id}")
    jobs = item_jobs(engine, batch_id)
    states = _states(engine, list(jobs.values()), _pending(engine, batch_id))
    summary = tally([status for status, _, _ in states])
    total, finished, done = summary["total"], summary["finished"], summary["done"]
    finish_times = [f for _, _, f in states if f]
    created_times = [c for _, c, _ in states if c]
    rate_per_s: float | None = None
    if done and finish_times and created_times:
        span = max(finish_times) - min(created_times)
        rate_per_s = len(finish_times) / span if span > 0 else None
    elif finish_times:
        since = max(now - THROUGHPUT_WINDOW_S, float(h.get("resumed") or h.get("created") or now))
        window = now - since
        recent = sum(1 for f in finish_times if f >= since)
        if window >= MIN_RATE_WINDOW_S and recent:
            rate_per_s = recent / window
    eta_s = None
    if not done and rate_per_s:
        eta_s = round((total - finished) / rate_per_s, 1)
    return {
        "id": batch_id, "name": h.get("name") or None,
        "status": summary["status"],
        "createdAt": iso(float(h["created"])) if h.get("created") else None,
        "updatedAt": iso(float(h["updated"])) if h.get("updated") else None,
        "finishedAt": iso(max(finish_times)) if done and finish_times else None,
        "total": total, "finished": finished, "counts": summary["counts"],
        "progress": summary["progress"],
        "throughputPerMin": round(rate_per_s * 60, 2) if rate_per_s else None,
        "etaSeconds": eta_s if eta_s is None or math.isfinite(eta_s) else None,
        "done": done,
        "maxCost": float(h["max_cost"]) if h.get("max_cost") else None,
        "spend": budget.batch_spend(engine.store, batch_id),
    }


def get_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    return batch_view(engine, batch_id)


def check_max_cost(value: Any) -> float:
    """A budget: a number from 0 up (a string from a query or the CLI is read as one)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a number from 0 up")
    return number


def set_max_cost(engine: Engine, batch_id: str, max_cost: float | None) -> dict[str, Any]:
    """The batch's budget (``maxCost``: its jobs together); None removes it."""
    key = engine.keys.batch(batch_id)
    if max_cost is None:
        engine.r.hdel(key, "max_cost")
    else:
        engine.r.hset(key, "max_cost", repr(check_max_cost(max_cost)))
    return {"maxCost": max_cost}


def list_batches(engine: Engine, *, cursor: str | None = None, limit: int = 20) -> dict[str, Any]:
    """Batches newest first; ``cursor`` is the ``next`` of the previous page."""
    r, k = engine.r, engine.keys
    hi: Any = "+inf"
    after: str | None = None
    if cursor:
        head, _, after = cursor.partition(":")
        try:
            hi = float(head)
            if not math.isfinite(hi):
                raise ValueError
        except ValueError:
            raise SpecError([{"path": "cursor", "message": "not a cursor this API returned"}]) from None
    rows = r.zrevrangebyscore(k.batches(), hi, "-inf", start=0, num=limit + 50, withscores=True)
    ids = [batch_id for batch_id, _ in rows]
    if after and after in ids:
        rows = rows[ids.index(after) + 1:]
    out: list[dict[str, Any]] = []
    last = None
    for batch_id, score in rows:
        try:
            out.append(batch_view(engine, batch_id))
        except NotFound:
            continue
        last = (score, batch_id)
        if len(out) >= limit:
            break
    nxt = f"{last[0]!r}:{last[1]}" if last and len(out) >= limit else None
    return {"items": out, "next": nxt}


def report(engine: Engine, batch_id: str) -> list[dict[str, Any]]:
    """One row per item: key, job id, status, prompt, image keys (each object's real key)
    and URIs (``s3://bucket/key`` or ``file:///path``), failure reason, times."""
    if not exists(engine, batch_id):
        raise NotFound(f"no batch {batch_id}")
    rows = []
    pending = _pending(engine, batch_id)
    for key, job_id in sorted(item_jobs(engine, batch_id).items(), key=_key_order):
        view = load_view(engine.store, job_id, engine.images_listed)
        if view is None:
            gone = job_id not in pending
            rows.append({"key": key, "jobId": job_id, "status": "expired" if gone else "queued",
                         "prompt": None, "imageKeys": [], "imageUris": [], "createdAt": None,
                         "finishedAt": None, "cost": 0.0,
                         "reason": "purged after the retention period" if gone else
                         "claimed but not created; submit the batch again"})
            continue
        reasons = [f"{s['label']}: {s['failReason']}" for s in view["steps"] if s["failReason"]]
        images = [img for s in view["steps"] for img in s["images"]]
        rows.append({"key": key, "jobId": job_id, "status": view["status"],
                     "prompt": view["prompt"], "imageKeys": [img["key"] for img in images],
                     "imageUris": [img["uri"] for img in images],
                     "reason": "; ".join(reasons) or None, "createdAt": view["createdAt"],
                     "finishedAt": view["finishedAt"],
                     "cost": budget.job_spend(engine.store, job_id)["total"]})
    return rows


def _key_order(pair: tuple[str, str]) -> tuple[int, str]:
    m = re.match(r"^line-(\d+):", pair[0])
    return (int(m.group(1)) if m else 1 << 60, pair[0])


def report_csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(REPORT_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {**row, "imageKeys": " ".join(row["imageKeys"]),
                 "imageUris": " ".join(row["imageUris"]),
                 "reason": row["reason"] or "", "prompt": row["prompt"] or ""}
        writer.writerow({name: csv_cell(value) for name, value in cells.items()})
    return buf.getvalue()


#: A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` made inert for spreadsheets: a text starting like a formula gets a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


# -- actions ---------------------------------------------------------------------------------
def retry_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    """Retry the failed steps of every failed or partial job of the batch (same job ids);
    ``notRetried`` lists the failed steps a retry cannot help, with why (at most
    :data:`NOT_RETRIED_LISTED`; ``retried.notRetried`` counts them all)."""
    if not exists(engine, batch_id):
        raise NotFound(f"no batch {batch_id}")
    keys = item_jobs(engine, batch_id)
    jobs = list(keys.values())
    key_of = {job_id: key for key, job_id in keys.items()}
    jobs_retried = steps = left = 0
    not_helped: list[dict[str, Any]] = []
    for job_id, (status, _, _) in zip(jobs, _states(engine, jobs)):
        if status in ("failed", "partial"):
            result = retry_job(engine, job_id, dispatch_now=False)
            count = result.get("retried", 0)
            jobs_retried += 1 if count else 0
            steps += count
            left += len(result["notRetried"])
            room = NOT_RETRIED_LISTED - len(not_helped)
            not_helped += [{"jobId": job_id, "key": key_of.get(job_id), **row}
                           for row in result["notRetried"][:max(room, 0)]]
    if steps:
        engine.r.hset(engine.keys.batch(batch_id), "resumed", repr(time.time()))
        dispatch(engine)
    return batch_view(engine, batch_id) | {
        "retried": {"jobs": jobs_retried, "steps": steps, "notRetried": left},
        "notRetried": not_helped}


def cancel_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    """Cancel every job of the batch that has not finished (in-flight steps finish)."""
    if not exists(engine, batch_id):
        raise NotFound(f"no batch {batch_id}")
    jobs = list(item_jobs(engine, batch_id).values())
    cancelled = 0
    for job_id, (status, _, _) in zip(jobs, _states(engine, jobs)):
        if status in ("queued", "running"):
            if engine.store.mutate(job_id, machine.cancel) is not None:
                cancelled += 1
    return batch_view(engine, batch_id) | {"cancelled": cancelled}
