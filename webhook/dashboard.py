"""The dashboard: server-rendered pages over the same plain functions as ``/v1``.

    /                    batches (and recent interactive jobs): progress, counts by status
    /batches/<id>        a batch's jobs as thumbnails, filter by status, retry failed ones
                         (``/batches/interactive``: the jobs sent one by one)
    /jobs/<id>           step tree, timeline, full-size images, task ids, delivery log
    /upstream            dispatch window: slots in use, size, paused (resume), recent answers
    /media/<key>         a stored image through the app (``?w=`` a thumbnail that wide)
    /login, /logout      the API key as an HttpOnly ``mjflow_key`` cookie

Auth is :func:`webhook.auth.authorized` (Bearer or the cookie); ``?key=`` on any page sets
the cookie once and redirects to the same URL without it. Every POST needs the
double-submit CSRF token (form field ``csrf`` equal to the ``mjflow_csrf`` cookie) and a
same-origin ``Origin`` when the browser sends one; Bearer requests need neither.
The live part of a page (``#live``) is re-fetched with the ``X-Dashboard-Partial`` header
every few seconds while something may still change; the answer's ``X-Dashboard-Refresh``
header (milliseconds, 0 = stop) says whether to keep going.

Wire it with ``from webhook import dashboard; dashboard.init_app(app)``.
"""
from __future__ import annotations

import hmac
import io
import logging
import math
import mimetypes
import secrets
import threading
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import redis
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException

from webhook.auth import authorized
from worker import api as jobs_api
from worker import batches
from worker.jobs.model import JobStatus
from worker.jobs.views import iso, load_view

log = logging.getLogger("mjflow.dashboard")
bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/dashboard/static")

KEY_COOKIE = "mjflow_key"
CSRF_COOKIE = "mjflow_csrf"
PARTIAL_HEADER = "X-Dashboard-Partial"
REFRESH_HEADER = "X-Dashboard-Refresh"
REFRESH_MS = 3000
COOKIE_MAX_AGE_S = 7 * 24 * 3600
INTERACTIVE = "interactive"
PAGE_SIZE = 48
SCAN_JOBS = 1000            # newest jobs looked at to find the interactive ones
RECENT_INTERACTIVE = 15
LIST_BATCHES = 50
THUMB_MIN, THUMB_MAX = 32, 1024
THUMB_CACHE = 256
STATUSES = [s.value for s in JobStatus] + ["expired"]
OPEN = ("queued", "running")
FINISHED_STEP = ("succeeded", "failed", "cancelled", "skipped")
PUBLIC = {"dashboard.login", "dashboard.static"}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
NOTICES = {
    "retried": "Retry queued: {n} step(s) will run again.",
    "nothing": "Nothing to retry: only the failed steps of a finished job run again.",
    "cancelled": "Cancel requested: steps not yet submitted will not run.",
    "batch-retried": "Retry queued for {n} step(s) of the batch's failed jobs.",
    "resumed": "Dispatch resumed.",
    "signed-out": "Signed out.",
}


def _engine():  # type: ignore[no-untyped-def]
    return current_app.extensions["mjflow"]



# -- auth ----------------------------------------------------------------------------------
def _key_ok(candidate: str) -> bool:
    ok = False
    for key in _engine().settings.api_keys:
        ok |= hmac.compare_digest(key.encode(), candidate.encode())
    return ok


def _bearer() -> bool:
    return request.headers.get("Authorization", "").lower().startswith("bearer ")


def _local_path(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("dashboard.index")
    return target


def _here_without_key() -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "key"]
    query = urlencode(args)
    return request.path + (f"?{query}" if query else "")


def _sign_in(key: str, target: str) -> Response:
    settings = _engine().settings
    if not settings.api_keys:
        return redirect(_local_path(target))      # open local run (or closed: login says so)
    if not _key_ok(key):
        return _login_page(target, error="That key is not valid.", status=401)
    resp = redirect(_local_path(target))
    resp.set_cookie(KEY_COOKIE, key, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Lax",
                    secure=request.is_secure, path="/")
    return resp


def _login_page(target: str, *, error: str | None = None, status: int = 200) -> Response:
    settings = _engine().settings
    closed = not settings.api_keys and not settings.local_run
    resp = make_response(render_template("login.html", next=_local_path(target), error=error,
                                         closed=closed), status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="mjflow"'
    return resp


def csrf_token() -> str:
    if "csrf" not in g:
        g.csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    return g.csrf


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True                                  # old browsers; the token still guards
    host = urlsplit(origin).netloc
    if host == request.host:
        return True
    public = _engine().settings.public_url
    return bool(public) and host == urlsplit(public).netloc


def _csrf_ok() -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.form.get("csrf", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode()) and _same_origin()


@bp.before_request
def _gate():  # type: ignore[no-untyped-def]
    if request.endpoint in PUBLIC:
        return None
    if request.method == "GET" and "key" in request.args:
        return _sign_in(request.args["key"], _here_without_key())
    if not authorized():
        if request.endpoint == "dashboard.media" or request.headers.get(PARTIAL_HEADER):
            return Response("unauthorized\n", 401, mimetype="text/plain")
        return _login_page(request.full_path.rstrip("?"), status=401)
    if request.method == "POST" and not _bearer() and not _csrf_ok():
        return _error_page(403, "This form has expired or came from another site. "
                                "Reload the page and try again.")
    return None


@bp.after_request
def _headers(resp: Response) -> Response:
    if "csrf" in g and request.cookies.get(CSRF_COOKIE) != g.csrf:
        resp.set_cookie(CSRF_COOKIE, g.csrf, httponly=True, samesite="Strict",
                        secure=request.is_secure, path="/")
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp


@bp.context_processor
def _context() -> dict[str, Any]:
    code = request.args.get("done")
    notice = None
    if code in NOTICES:
        n = request.args.get("n", "")
        notice = NOTICES[code].format(n=int(n) if n.isdigit() else "some")
    return {"csrf_token": csrf_token, "notice": notice, "signed_in": bool(
        request.cookies.get(KEY_COOKIE)), "here": request.full_path.rstrip("?")}


def _error_page(status: int, message: str) -> Response:
    if request.endpoint == "dashboard.media" or request.headers.get(PARTIAL_HEADER):
        return Response(message + "\n", status, mimetype="text/plain")
    return make_response(render_template("error.html", status=status, message=message), status)


@bp.errorhandler(jobs_api.NotFound)
def _not_found(exc: jobs_api.NotFound):  # type: ignore[no-untyped-def]
    return _error_page(404, str(exc))


@bp.errorhandler(redis.RedisError)
def _redis_down(exc: redis.RedisError):  # type: ignore[no-untyped-def]
    log.warning("redis error in the dashboard: %s", exc)
    return _error_page(503, "The job store (Redis) is unreachable; retry in a moment.")


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    return _error_page(exc.code or 500, exc.description or exc.name)


# -- template helpers -------------------------------------------------------------------------
def _epoch(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


@bp.app_template_filter("mj_when")
def _when(value: Any) -> str:
    ts = _epoch(value)
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@bp.app_template_filter("mj_duration")
def _duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 10:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s // 60:.0f} m {s % 60:.0f} s"
    return f"{s // 3600:.0f} h {s % 3600 // 60:.0f} m"


def _render(template: str, live: str, *, refresh: bool, **ctx: Any) -> Response:
    """The whole page, or only its live part when the page's script asks for it."""
    if request.headers.get(PARTIAL_HEADER):
        resp = make_response(render_template(live, **ctx))
    else:
        resp = make_response(render_template(template, live_template=live,
                                             refresh_ms=REFRESH_MS if refresh else 0, **ctx))
    resp.headers[REFRESH_HEADER] = str(REFRESH_MS if refresh else 0)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _media_url(job_id: str, image: dict[str, Any], width: int | None = None) -> str:
    args: dict[str, Any] = {"key": image["key"], "job": job_id}
    if image.get("sha256"):
        args["v"] = image["sha256"][:16]
    if width:
        args["w"] = width
    return url_for("dashboard.media", **args)


# -- reading state --------------------------------------------------------------------------
def _states(engine: Any, job_ids: list[str]) -> list[str]:
    """The status of each job as its view would say (two pipelined round trips)."""
    r, k = engine.r, engine.keys
    pipe = r.pipeline(transaction=False)
    for jid in job_ids:
        pipe.hget(k.job(jid), "status")
        pipe.lindex(k.job_steps(jid), 0)
    raw = pipe.execute()
    rows = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
    pipe = r.pipeline(transaction=False)
    for status, root in rows:
        if status in OPEN and root:
            pipe.hget(k.step(root), "status")
    roots = iter(pipe.execute())
    out = []
    for status, root in rows:
        if status is None:
            out.append("expired")
        elif status in OPEN:
            root_status = next(roots) if root else None
            out.append("queued" if root_status in (None, "waiting", "queued") else "running")
        else:
            out.append(status)
    return out


def _counts(states: list[str]) -> dict[str, int]:
    c = Counter(states)
    return {name: c.get(name, 0) for name in STATUSES}


def _interactive_ids(engine: Any) -> list[str]:
    """Jobs sent one by one (no batch) among the newest ``SCAN_JOBS``, newest first."""
    ids = engine.r.zrevrange(engine.keys.jobs(), 0, SCAN_JOBS - 1)
    pipe = engine.r.pipeline(transaction=False)
    for jid in ids:
        pipe.hget(engine.keys.job(jid), "batch")
    return [jid for jid, batch in zip(ids, pipe.execute()) if not batch]


def _summary(batch_id: str, name: str | None, states: list[str], **extra: Any) -> dict[str, Any]:
    """A batch view computed from job states (the interactive pseudo-batch, fallbacks)."""
    counts = _counts(states)
    total = len(states)
    finished = total - counts["queued"] - counts["running"]
    if not total:
        status = "empty"
    elif finished < total:
        status = "running" if counts["running"] or finished else "queued"
    elif counts["succeeded"] + counts["expired"] == total:
        status = "succeeded"
    elif counts["cancelled"] == total:
        status = "cancelled"
    else:
        status = "partial" if counts["succeeded"] or counts["partial"] else "failed"
    return {"id": batch_id, "name": name, "status": status, "total": total,
            "finished": finished, "counts": counts,
            "progress": round(finished / total, 4) if total else 0.0,
            "throughputPerMin": None, "etaSeconds": None, "done": total > 0 and finished == total,
            "createdAt": None, **extra}


def _batch_view(engine: Any, batch_id: str) -> dict[str, Any]:
    mod = batches
    if mod is not None and hasattr(mod, "get_batch"):
        return mod.get_batch(engine, batch_id)
    h = engine.r.hgetall(engine.keys.batch(batch_id))          # pragma: no cover - fallback
    if not h:
        raise jobs_api.NotFound(f"no batch {batch_id}")
    ids = engine.r.zrange(engine.keys.batch_jobs(batch_id), 0, -1)
    return _summary(batch_id, h.get("name"), _states(engine, ids),
                    createdAt=iso(float(h["created"])) if h.get("created") else None)


def _list_batches(engine: Any) -> list[dict[str, Any]]:
    mod = batches
    if mod is not None and hasattr(mod, "list_batches"):
        return mod.list_batches(engine, limit=LIST_BATCHES)["items"]
    out = []                                                       # pragma: no cover
    for batch_id in engine.r.zrevrange(engine.keys.batches(), 0, LIST_BATCHES - 1):
        try:
            out.append(_batch_view(engine, batch_id))
        except jobs_api.NotFound:
            continue
    return out


def _batch_job_ids(engine: Any, batch_id: str) -> list[str]:
    """The batch's current jobs (one per item) in creation order."""
    ordered = engine.r.zrange(engine.keys.batch_jobs(batch_id), 0, -1)
    mod = batches
    if mod is None or not hasattr(mod, "item_jobs"):
        return ordered                                             # pragma: no cover
    current = set(mod.item_jobs(engine, batch_id).values())
    if not current:
        return ordered
    seen = set(ordered)
    return [j for j in ordered if j in current] + sorted(current - seen)


def _card(view: dict[str, Any]) -> dict[str, Any]:
    """What a grid cell shows of a job."""
    steps = view["steps"]
    images = [{"label": s["label"], "url": _media_url(view["id"], img, 320),
               "full": _media_url(view["id"], img), "width": img.get("width"),
               "height": img.get("height")}
              for s in steps for img in s["images"]
              if not str(img.get("contentType", "")).startswith("video/")]  # posters show
    current = next((s for s in steps if s["status"] not in FINISHED_STEP + ("waiting",)), None)
    return {
        "id": view["id"], "status": view["status"], "prompt": view.get("prompt") or "",
        "key": view.get("key"), "images": images,
        "current": f"{current['label']} {current['status']} {current['progress']}".strip()
                   if current else None,
        "reasons": [f"{s['label']}: {s['failReason']}" for s in steps
                    if s["status"] == "failed" and s["failReason"]],
        "retryable": view["status"] in ("failed", "partial"),
        "attempts": max((s["attempts"] for s in steps), default=0),
    }


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
    t0 = _epoch(view["createdAt"]) or 0.0
    delivered = [_epoch(d.get("delivered_at")) for d in view.get("deliveries", [])
                 if (d.get("type") or "").startswith("job.")]
    delivered_at = min((d for d in delivered if d), default=None)
    rows = []
    end = max([t0 + 0.001] + ([delivered_at] if delivered_at else []))
    for s in steps:
        t = {name: _epoch(value) for name, value in (s.get("times") or {}).items()}
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


# -- pages ----------------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    target = request.values.get("next") or url_for("dashboard.index")
    key = request.values.get("key")
    if key is not None:
        return _sign_in(key.strip(), target)
    if authorized():
        return redirect(_local_path(target))
    return _login_page(target)


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    resp = redirect(url_for("dashboard.login", done="signed-out"))
    resp.delete_cookie(KEY_COOKIE, path="/")
    return resp


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    engine = _engine()
    batches = _list_batches(engine)
    ids = _interactive_ids(engine)
    states = _states(engine, ids)
    interactive = _summary(INTERACTIVE, "Interactive jobs", states)
    recent = [v for v in (load_view(engine.store, j)
                          for j in ids[:RECENT_INTERACTIVE]) if v]
    return _render("index.html", "_index_live.html", refresh=True, batches=batches,
                   interactive=interactive, recent=recent, nav="batches")


@bp.get("/batches/<batch_id>")
def batch(batch_id: str):  # type: ignore[no-untyped-def]
    engine = _engine()
    status = request.args.get("status")
    status = status if status in STATUSES else None
    page = request.args.get("page", "1")
    page_no = int(page) if page.isdigit() and int(page) > 0 else 1
    if batch_id == INTERACTIVE:
        ids = _interactive_ids(engine)
        states = _states(engine, ids)
        summary = _summary(INTERACTIVE, "Interactive jobs", states)
    else:
        summary = _batch_view(engine, batch_id)
        ids = _batch_job_ids(engine, batch_id)
        states = _states(engine, ids)
    counts = _counts(states)
    chosen = [j for j, s in zip(ids, states) if status is None or s == status]
    pages = max(1, math.ceil(len(chosen) / PAGE_SIZE))
    page_no = min(page_no, pages)
    views = [load_view(engine.store, j)
             for j in chosen[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]]
    cards = [_card(v) for v in views if v]
    refresh = any(s in OPEN for s in states)
    return _render("batch.html", "_batch_live.html", refresh=refresh, batch=summary,
                   counts=counts, cards=cards, status=status, page=page_no, pages=pages,
                   matching=len(chosen), statuses=STATUSES, interactive=batch_id == INTERACTIVE,
                   nav="batches")


@bp.post("/batches/<batch_id>/retry")
def batch_retry(batch_id: str):  # type: ignore[no-untyped-def]
    engine = _engine()
    mod = batches
    if batch_id == INTERACTIVE or mod is None or not hasattr(mod, "retry_batch"):
        abort(404)
    result = mod.retry_batch(engine, batch_id)
    steps = (result.get("retried") or {}).get("steps", 0)
    return redirect(url_for("dashboard.batch", batch_id=batch_id,
                            done="batch-retried" if steps else "nothing", n=steps))


@bp.get("/jobs/<job_id>")
def job(job_id: str):  # type: ignore[no-untyped-def]
    engine = _engine()
    view = jobs_api.get_job(engine, job_id)
    steps = _tree(view["steps"])
    for s in steps:
        s["media"] = [img | {"src": _media_url(view["id"], img), "poster_src": _media_url(
            view["id"], {"key": img["poster"]}) if img.get("poster") else None}
            for img in s["images"]]
    refresh = not view["finishedAt"] or any(
        d.get("state") not in ("delivered", "failed") for d in view.get("deliveries", []))
    return _render("job.html", "_job_live.html", refresh=refresh, job=view, steps=steps,
                   timeline=_timeline(view, steps), nav="batches")


def _back(default: str) -> str:
    return _local_path(request.form.get("next") or default)


def _with_notice(target: str, code: str, n: int | None = None) -> str:
    path, _, query = target.partition("?")
    keep = [p for p in query.split("&") if p and not p.startswith(("done=", "n="))]
    keep.append(f"done={code}")
    if n is not None:
        keep.append(f"n={n}")
    return f"{path}?{'&'.join(keep)}"


@bp.post("/jobs/<job_id>/retry")
def job_retry(job_id: str):  # type: ignore[no-untyped-def]
    result = jobs_api.retry_job(_engine(), job_id)
    count = int(result.get("retried") or 0)
    target = _back(url_for("dashboard.job", job_id=job_id))
    return redirect(_with_notice(target, "retried" if count else "nothing", count))


@bp.post("/jobs/<job_id>/cancel")
def job_cancel(job_id: str):  # type: ignore[no-untyped-def]
    jobs_api.cancel_job(_engine(), job_id)
    return redirect(_with_notice(_back(url_for("dashboard.job", job_id=job_id)), "cancelled"))


@bp.get("/upstream")
def upstream():  # type: ignore[no-untyped-def]
    engine = _engine()
    state = engine.window.state()
    answers = engine.window.recent_answers()
    return _render("upstream.html", "_upstream_live.html", refresh=True, state=state,
                   answers=answers, profile=engine.settings.upstream_profile, nav="upstream")


@bp.post("/upstream/resume")
def upstream_resume():  # type: ignore[no-untyped-def]
    _engine().window.resume()
    return redirect(url_for("dashboard.upstream", done="resumed"))


# -- media ----------------------------------------------------------------------------------
_thumbs: OrderedDict[tuple[str, str, int], tuple[bytes, str]] = OrderedDict()
_thumbs_lock = threading.Lock()


def _image_record(engine: Any, job_id: str, key: str) -> dict[str, Any] | None:
    """The stored image ``key`` of job ``job_id``, or None: only a job's images are served."""
    if not job_id or len(job_id) > 100:
        return None
    loaded = engine.store.load(job_id)
    if loaded is None:
        return None
    _, steps = loaded
    for step in steps:
        for img in step.images:
            if img.get("key") == key:
                return img
    return None


def _thumbnail(data: bytes, width: int) -> tuple[bytes, str] | None:
    """``data`` scaled down to ``width`` pixels wide (JPEG, or PNG with alpha); None when
    it is not wider already or cannot be read as an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width <= width:
                return None
            height = max(1, round(im.height * width / im.width))
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            small = im.convert("RGBA" if alpha else "RGB").resize((width, height),
                                                                   Image.Resampling.LANCZOS)
            out = io.BytesIO()
            if alpha:
                small.save(out, "PNG")
                return out.getvalue(), "image/png"
            small.save(out, "JPEG", quality=82, optimize=True)
            return out.getvalue(), "image/jpeg"
    except Exception as exc:  # noqa: BLE001 - any unreadable image: serve the original
        log.info("no thumbnail: %s", exc)
        return None


@bp.get("/media/<path:key>")
def media(key: str):  # type: ignore[no-untyped-def]
    engine = _engine()
    job_id = request.args.get("job") or key.split("/", 1)[0]
    image = _image_record(engine, job_id, key)
    if image is None:
        abort(404, "no such image")
    sha = image.get("sha256") or ""
    raw_w = request.args.get("w", "")
    width = min(max(int(raw_w), THUMB_MIN), THUMB_MAX) if raw_w.isdigit() else 0
    ctype = image.get("contentType") or mimetypes.guess_type(key)[0] or "application/octet-stream"
    cache_key = (key, sha, width)
    with _thumbs_lock:
        cached = _thumbs.get(cache_key) if width else None
        if cached:
            _thumbs.move_to_end(cache_key)
    if cached:
        data, ctype = cached
    else:
        try:
            data = engine.sink.get_bytes(key)
        except Exception as exc:  # noqa: BLE001 - gone from the store, or the store is down
            log.warning("media %s unavailable: %s", key, exc)
            abort(404, "the image is not in the store (purged or unreachable)")
        if width:
            small = _thumbnail(data, width)
            if small:
                data, ctype = small
            with _thumbs_lock:
                _thumbs[cache_key] = (data, ctype)
                while len(_thumbs) > THUMB_CACHE:
                    _thumbs.popitem(last=False)
    resp = Response(data, mimetype=ctype)
    if not ctype.startswith(("image/", "video/mp4")) or ctype == "image/svg+xml":
        resp.mimetype = "application/octet-stream"
        resp.headers["Content-Disposition"] = "attachment"
    if sha:
        resp.set_etag(f"{sha[:32]}-{width}")
    versioned = bool(sha) and request.args.get("v") == sha[:16]
    resp.headers["Cache-Control"] = ("private, max-age=86400, immutable" if versioned
                                     else "private, no-cache")
    return resp.make_conditional(request)


def init_app(app: Flask) -> None:
    """Register the dashboard (safe to call twice)."""
    if "dashboard" not in app.blueprints:
        app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
