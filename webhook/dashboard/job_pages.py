"""The job page (step tree, timeline, thumbnails that open full size, task ids, delivery
log) and the job's Retry and Cancel buttons."""
from __future__ import annotations

from typing import Any

from flask import redirect, url_for

from webhook.dashboard.common import FINISHED_STEP, back, bp, engine, epoch, render, with_notice
from webhook.dashboard.media import decorate
from worker import api as jobs_api


def _tree(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps in depth-first order, each with its ``depth`` (0 = the root task)."""
    ids = {s["id"] for s in steps}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in steps:
        children.setdefault(s["parent"] if s["parent"] in ids else None, []).append(s)
    out: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            out.append(s | {"depth": min(depth, 8)})
            walk(s["id"], depth + 1)

    walk(None, 0)
    return out


def _timeline(view: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step: the moments the timeline names (seconds after the job was created) and
    bar segments (x, width in 0..1000) for a small SVG Gantt chart."""
    t0 = epoch(view["createdAt"]) or 0.0
    delivered = [epoch(d.get("delivered_at")) for d in view.get("deliveries", [])
                 if (d.get("type") or "").startswith("job.")]
    delivered_at = min((d for d in delivered if d), default=None)
    rows = []
    end = max([t0 + 0.001] + ([delivered_at] if delivered_at else []))
    for s in steps:
        t = {name: epoch(value) for name, value in (s.get("times") or {}).items()}
        finished = next((t[n] for n in FINISHED_STEP if t.get(n)), None)
        row = {
            "queued": t.get("queued") or t.get("retried") or t.get("created"),
            "submitted": t.get("submitted") or t.get("submitting"),
            "started": t.get("running"),
            "storing": t.get("storing"),
            "finished": finished,
            "stored": t.get("succeeded") if s["images"] else None,
        }
        end = max([end] + [v for v in row.values() if v])
        rows.append(row)
    span = end - t0

    def x(ts: float) -> float:
        return round(1000 * (ts - t0) / span, 1)

    out = []
    for s, row in zip(steps, rows):
        segments = []
        marks = [("wait", row["queued"], row["submitted"] or row["finished"]),
                 ("upstream", row["submitted"], row["storing"] or row["finished"]),
                 ("store", row["storing"], row["finished"])]
        for cls, a, b in marks:
            if a and b and b >= a:
                segments.append({"cls": cls, "x": x(a), "w": max(2.0, x(b) - x(a))})
        rel = {name: (round(v - t0, 2) if v else None) for name, v in row.items()}
        out.append({"step": s, "rel": rel, "abs": row, "segments": segments,
                    "fail": s["status"] in ("failed", "cancelled", "skipped")})
    return {"rows": out, "span": span,
            "delivered": round(delivered_at - t0, 2) if delivered_at else None,
            "deliveredX": x(delivered_at) if delivered_at else None}


@bp.get("/jobs/<job_id>")
def job(job_id: str):  # type: ignore[no-untyped-def]
    view = jobs_api.get_job(engine(), job_id)
    decorate([view])
    steps = _tree(view["steps"])
    refresh = not view["finishedAt"] or any(
        d.get("state") not in ("delivered", "failed") for d in view.get("deliveries", []))
    return render("job.html", "_job_live.html", refresh=refresh, job=view, steps=steps,
                  timeline=_timeline(view, steps), nav="batches")


@bp.post("/jobs/<job_id>/retry")
def job_retry(job_id: str):  # type: ignore[no-untyped-def]
    result = jobs_api.retry_job(engine(), job_id)
    count = int(result.get("retried") or 0)
    target = back(url_for("dashboard.job", job_id=job_id))
    code = "retried" if count else "unretryable" if result["notRetried"] else "nothing"
    return redirect(with_notice(target, code, count))


@bp.post("/jobs/<job_id>/cancel")
def job_cancel(job_id: str):  # type: ignore[no-untyped-def]
    jobs_api.cancel_job(engine(), job_id)
    return redirect(with_notice(back(url_for("dashboard.job", job_id=job_id)), "cancelled"))
