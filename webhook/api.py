"""The ``/v1`` jobs API: thin views over :mod:`worker.api`."""
from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for

from webhook.auth import authorized
from worker import api as jobs_api

bp = Blueprint("v1", __name__, url_prefix="/v1")
MAX_PAGE = 200


def _engine():  # type: ignore[no-untyped-def]
    return current_app.extensions["mjflow"]


def error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": code, "message": message, **extra}), status


@bp.before_request
def _auth():  # type: ignore[no-untyped-def]
    if not authorized():
        resp, status = error(401, "unauthorized", "missing or invalid API key (Authorization: Bearer <key>)")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="mjflow"'
        return resp, status
    return None


def json_body() -> Any:
    if request.mimetype != "application/json":
        raise jobs_api.SpecError([{"path": "body", "message": "Content-Type must be application/json"}])
    try:
        return json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise jobs_api.SpecError([{"path": "body", "message": f"malformed JSON: {exc}"}]) from None


@bp.errorhandler(jobs_api.SpecError)
def _spec_error(exc: jobs_api.SpecError):  # type: ignore[no-untyped-def]
    status = 400 if any(e["path"] == "body" for e in exc.errors) else 422
    return error(status, "invalid_request", str(exc), details=exc.errors)


@bp.errorhandler(jobs_api.NotFound)
def _not_found(exc: jobs_api.NotFound):  # type: ignore[no-untyped-def]
    return error(404, "not_found", str(exc))


@bp.errorhandler(jobs_api.Conflict)
def _conflict(exc: jobs_api.Conflict):  # type: ignore[no-untyped-def]
    return error(409, "conflict", str(exc))


@bp.post("/jobs")
def create_job():  # type: ignore[no-untyped-def]
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 200):
        return error(400, "invalid_request", "Idempotency-Key must be 1 to 200 characters")
    view = jobs_api.create_job(_engine(), json_body(), idempotency_key=key)
    status = 200 if view.pop("replayed", False) else 202
    resp = jsonify(view)
    resp.status_code = status
    resp.headers["Location"] = url_for("v1.get_job", job_id=view["id"])
    return resp


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(jobs_api.get_job(_engine(), job_id))


def _float_arg(name: str) -> float | None:
    from datetime import datetime

    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise jobs_api.SpecError([{"path": name, "message": "must be a unix time or ISO-8601"}]) from None


@bp.get("/jobs")
def list_jobs():  # type: ignore[no-untyped-def]
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_PAGE:
        return error(400, "invalid_request", f"limit must be 1..{MAX_PAGE}")
    status = request.args.get("status")
    cursor = request.args.get("cursor")
    if cursor is not None:
        head = cursor.split(":", 1)[0]
        try:
            float(head)
        except ValueError:
            return error(400, "invalid_request", "cursor is not one this API returned")
    page = jobs_api.list_jobs(
        _engine(), batch=request.args.get("batch"), status=status,
        created_from=_float_arg("created_from"), created_to=_float_arg("created_to"),
        cursor=cursor, limit=limit,
    )
    return jsonify(page)


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(jobs_api.cancel_job(_engine(), job_id))


@bp.post("/jobs/<job_id>/retry")
def retry_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(jobs_api.retry_job(_engine(), job_id))


@bp.get("/upstream")
def upstream_state():  # type: ignore[no-untyped-def]
    engine = _engine()
    return jsonify(engine.window.state() | {"profile": engine.settings.upstream_profile,
                                            "recentAnswers": engine.window.recent_answers()})


@bp.post("/upstream/resume")
def upstream_resume():  # type: ignore[no-untyped-def]
    engine = _engine()
    engine.window.resume()
    return jsonify(engine.window.state())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
