"""The dashboard's blueprint and what every page shares: rendering (whole page or its live
part), error pages, template filters, notices after a POST, safe local redirects.

The live part of a page (``#live``) is re-fetched with the ``X-Dashboard-Partial`` header
every few seconds while something may still change; the answer's ``X-Dashboard-Refresh``
header (milliseconds, 0 = stop) says whether to keep going.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Response, current_app, make_response, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from worker import api as jobs_api
from worker.jobs.views import COUNTED

log = logging.getLogger("mjflow.dashboard")
bp = Blueprint("dashboard", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/dashboard/static")

PARTIAL_HEADER = "X-Dashboard-Partial"
REFRESH_HEADER = "X-Dashboard-Refresh"
REFRESH_MS = 3000
STATUSES = list(COUNTED)
FINISHED_STEP = ("succeeded", "failed", "cancelled", "skipped")
NOTICES = {
    "retried": "Retry queued: {n} step(s) will run again.",
    "nothing": "Nothing to retry: only the failed steps of a finished job run again.",
    "unretryable": "Nothing to retry: no failed step here can be fixed by a retry "
                   "(the reason is next to each).",
    "cancelled": "Cancel requested: steps not yet submitted will not run.",
    "batch-retried": "Retry queued for {n} step(s) of the batch's failed jobs.",
    "resumed": "Dispatch resumed.",
    "paused": "Dispatch paused: its queued root steps go to the other upstreams.",
    "signed-out": "Signed out.",
}


def engine():  # type: ignore[no-untyped-def]
    return current_app.extensions["mjflow"]


def plain_answer() -> bool:
    """Answer errors in plain text (images and live fragments), not as an HTML page."""
    return request.endpoint == "dashboard.media" or bool(request.headers.get(PARTIAL_HEADER))


def error_page(status: int, message: str) -> Response:
    if plain_answer():
        return Response(message + "\n", status, mimetype="text/plain")
    return make_response(render_template("error.html", status=status, message=message), status)


@bp.errorhandler(jobs_api.NotFound)
def _not_found(exc: jobs_api.NotFound):  # type: ignore[no-untyped-def]
    return error_page(404, str(exc))


@bp.errorhandler(redis.RedisError)
def _redis_down(exc: redis.RedisError):  # type: ignore[no-untyped-def]
    log.warning("redis error in the dashboard: %s", exc)
    return error_page(503, "The job store (Redis) is unreachable; retry in a moment.")


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    return error_page(exc.code or 500, exc.description or exc.name)


def render(template: str, live: str, *, refresh: bool, **ctx: Any) -> Response:
    """The whole page, or only its live part when the page's script asks for it."""
    if request.headers.get(PARTIAL_HEADER):
        resp = make_response(render_template(live, **ctx))
    else:
        resp = make_response(render_template(template, live_template=live,
                                             refresh_ms=REFRESH_MS if refresh else 0, **ctx))
    resp.headers[REFRESH_HEADER] = str(REFRESH_MS if refresh else 0)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- redirects --------------------------------------------------------------------------------
def local_path(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirects, no control
    characters: a CRLF would split the Location header)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("dashboard.index")
    return target


def back(default: str) -> str:
    return local_path(request.form.get("next") or default)


def with_notice(target: str, code: str, n: int | None = None) -> str:
    path, _, query = target.partition("?")
    keep = [p for p in query.split("&") if p and not p.startswith(("done=", "n="))]
    keep.append(f"done={code}")
    if n is not None:
        keep.append(f"n={n}")
    return f"{path}?{'&'.join(keep)}"


def notice() -> str | None:
    code = request.args.get("done")
    if code not in NOTICES:
        return None
    n = request.args.get("n", "")
    return NOTICES[code].format(n=int(n) if n.isdigit() else "some")


# -- template filters -----------------------------------------------------------------------
def epoch(value: Any) -> float | None:
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
    ts = epoch(value)
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


@bp.app_template_filter("mj_title")
def _title(name: str | None) -> str | None:
    """A batch's title: the file's name for a batch named by its JSONL file's path (the
    CLI's default name), else the name as given."""
    if name and name.startswith("/") and len(name) > 1:
        return name.rstrip("/").rsplit("/", 1)[-1] or name
    return name
