"""The index (batches, the interactive jobs, recent ones) and a batch's page (its jobs as
cards with thumbnails, filter by status, Retry), over the job and batch states of
:mod:`worker.jobs.views` and :mod:`worker.batches`."""
from __future__ import annotations

import math
from typing import Any

from flask import abort, redirect, request, url_for

from webhook.dashboard.common import FINISHED_STEP, STATUSES, bp, engine, render
from webhook.dashboard.media import decorate
from worker import batches
from worker.jobs.views import OPEN, brief_status, load_view, tally

INTERACTIVE = "interactive"
PAGE_SIZE = 48
SCAN_JOBS = 1000            # newest jobs looked at to find the interactive ones
RECENT_INTERACTIVE = 15
LIST_BATCHES = 50
RETRY_SCAN = 500            # failed jobs looked at to decide whether Retry can help


def _interactive(e: Any) -> tuple[list[str], list[str]]:
    """Jobs sent one by one (no batch) among the newest ``SCAN_JOBS``, newest first, and
    their states."""
    ids = e.r.zrevrange(e.keys.jobs(), 0, SCAN_JOBS - 1)
    rows = [(jid, b) for jid, b in zip(ids, e.store.job_briefs(ids)) if b and not b.batch]
    return [jid for jid, _ in rows], [brief_status(b) for _, b in rows]


def _interactive_summary(states: list[str]) -> dict[str, Any]:
    return {"id": INTERACTIVE, "name": "Interactive jobs", "throughputPerMin": None,
            "etaSeconds": None, "createdAt": None, **tally(states)}


def _batch_job_ids(e: Any, batch_id: str) -> list[str]:
    """The batch's current jobs (one per item) in creation order."""
    ordered = e.r.zrange(e.keys.batch_jobs(batch_id), 0, -1)
    current = set(batches.item_jobs(e, batch_id).values())
    if not current:
        return ordered
    seen = set(ordered)
    return [j for j in ordered if j in current] + sorted(current - seen)


def _card(view: dict[str, Any]) -> dict[str, Any]:
    """What a grid cell shows of a job (``decorate`` gave its steps their media)."""
    steps = view["steps"]
    current = next((s for s in steps if s["status"] not in FINISHED_STEP + ("waiting",)), None)
    return {
        "id": view["id"], "status": view["status"], "prompt": view.get("prompt") or "",
        "key": view.get("key"), "images": [m for s in steps for m in s["media"]
                                           # a video's posters show on the card, not its clips
                                           if not str(m.get("contentType", "")).startswith("video/")],
        "current": f"{current['label']} {current['status']} {current['progress']}".strip()
                   if current else None,
        "reasons": [f"{s['label']}: {s['failReason']}" for s in steps
                    if s["status"] == "failed" and s["failReason"]],
        "notRetryable": [f"{s['label']}: {s['retryReason']}" for s in steps
                         if s["status"] == "failed" and not s["retryable"]],
        "retryable": view["retryable"],
        "attempts": max((s["attempts"] for s in steps), default=0),
    }


def _any_retryable(e: Any, ids: list[str], states: list[str]) -> bool:
    """Whether Retry can help some failed or partial job of the batch (after
    :data:`RETRY_SCAN` such jobs without one, the button is shown and its answer says)."""
    failed = [j for j, s in zip(ids, states) if s in ("failed", "partial")]
    for job_id in failed[:RETRY_SCAN]:
        view = load_view(e.store, job_id)
        if view and view["retryable"]:
            return True
    return len(failed) > RETRY_SCAN


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    e = engine()
    ids, states = _interactive(e)
    recent = [v for v in (load_view(e.store, j) for j in ids[:RECENT_INTERACTIVE]) if v]
    return render("index.html", "_index_live.html", refresh=True,
                  batches=batches.list_batches(e, limit=LIST_BATCHES)["items"],
                  interactive=_interactive_summary(states), recent=recent, nav="batches")


@bp.get("/batches/<batch_id>")
def batch(batch_id: str):  # type: ignore[no-untyped-def]
    e = engine()
    status = request.args.get("status")
    status = status if status in STATUSES else None
    page = request.args.get("page", "1")
    page_no = int(page) if page.isdigit() and int(page) > 0 else 1
    if batch_id == INTERACTIVE:
        ids, states = _interactive(e)
        summary = _interactive_summary(states)
    else:
        summary = batches.get_batch(e, batch_id)
        ids = _batch_job_ids(e, batch_id)
        states = [brief_status(b) for b in e.store.job_briefs(ids)]
    chosen = [j for j, s in zip(ids, states) if status is None or s == status]
    pages = max(1, math.ceil(len(chosen) / PAGE_SIZE))
    page_no = min(page_no, pages)
    views = [v for v in (load_view(e.store, j, e.images_listed)
                         for j in chosen[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]) if v]
    decorate(views)
    retry_all = batch_id != INTERACTIVE and _any_retryable(e, ids, states)
    return render("batch.html", "_batch_live.html", refresh=any(s in OPEN for s in states),
                  batch=summary, counts=tally(states)["counts"], cards=[_card(v) for v in views],
                  status=status, page=page_no, pages=pages, matching=len(chosen),
                  statuses=STATUSES, interactive=batch_id == INTERACTIVE,
                  retry_all=retry_all, nav="batches")


@bp.post("/batches/<batch_id>/retry")
def batch_retry(batch_id: str):  # type: ignore[no-untyped-def]
    if batch_id == INTERACTIVE:
        abort(404)
    result = batches.retry_batch(engine(), batch_id)
    retried = result["retried"]
    code = ("batch-retried" if retried["steps"] else
            "unretryable" if retried["notRetried"] else "nothing")
    return redirect(url_for("dashboard.batch", batch_id=batch_id, done=code, n=retried["steps"]))
