"""The ``/v1`` API (jobs, batches, upstream): thin views over :mod:`worker.api`.

Every input problem becomes a 4xx with ``{"error", "message", "details": [{path, message}]}``
(400: the body or a parameter as a whole, 422: a field of a valid JSON body); a Redis
outage is a 503. Nothing a client sends can produce a 500.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for

from webhook import openapi
from webhook.auth import authorized
from webhook.ids import check_view_ids
from worker import api as jobs_api
from worker import batches, upstream_ops
from worker.batch_items import loads_strict
from worker.batch_stream import read_json_stream, read_jsonl_stream
from worker.flow import budget
from worker.ids import valid_id
from worker.jobs.model import JobStatus

bp = Blueprint("v1", __name__, url_prefix="/v1")
MAX_PAGE = 200
SAFE_METHODS = ("GET", "HEAD")
MAX_IDEMPOTENCY_KEY_CHARS = 200
JSON_TYPES = ("application/json",)
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonl",
               "application/jsonlines", "application/x-jsonlines")
BATCH_OBJECT_FIELDS = {"name", "items", "batchId", "then", "maxCost"}
#: ``POST /v1/batches`` bodies above this are refused (413) before they are read; the
#: 10,000-item limit is enforced while reading, long before this.
MAX_BATCH_BODY_BYTES = 32 * 1024 * 1024


def _engine():  # type: ignore[no-untyped-def]
    return current_app.extensions["mjflow"]


def error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": code, "message": message, **extra}), status


def bad(path: str, message: str) -> jobs_api.SpecError:
    return jobs_api.SpecError([{"path": path, "message": message}])


@bp.before_request
def _auth():  # type: ignore[no-untyped-def]
    # The dashboard's session cookie is good for reads only; changes need the Bearer key.
    if not authorized(cookie=request.method in SAFE_METHODS):
        resp, status = error(401, "unauthorized", "missing or invalid API key (Authorization: Bearer <key>)")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="mjflow"'
        return resp, status
    check_view_ids()
    return None


def _text_body() -> str:
    try:
        return request.get_data(cache=False).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad("body", f"not UTF-8: {exc}") from None


def _parse_json(text: str) -> Any:
    try:
        return loads_strict(text or "null")
    except (ValueError, RecursionError) as exc:
        raise bad("body", f"malformed JSON: {exc}") from None


def json_body() -> Any:
    if request.mimetype not in JSON_TYPES:
        raise bad("body", "Content-Type must be application/json")
    return _parse_json(_text_body())


@bp.errorhandler(jobs_api.SpecError)
def _spec_error(exc: jobs_api.SpecError):  # type: ignore[no-untyped-def]
    whole = {"body", "cursor", "limit", "status", "batch", "created_from", "created_to", "format",
             "Idempotency-Key"}
    status = 400 if any(e["path"] in whole for e in exc.errors) else 422
    return error(status, "invalid_request", str(exc), details=exc.errors)


@bp.errorhandler(jobs_api.NotFound)
def _not_found(exc: jobs_api.NotFound):  # type: ignore[no-untyped-def]
    return error(404, "not_found", str(exc))


@bp.errorhandler(jobs_api.Conflict)
def _conflict(exc: jobs_api.Conflict):  # type: ignore[no-untyped-def]
    return error(409, "conflict", str(exc))


@bp.errorhandler(redis.RedisError)
def _redis_down(exc: redis.RedisError):  # type: ignore[no-untyped-def]
    current_app.logger.warning("redis error in /v1: %s", exc)
    return error(503, "unavailable", "the job store is unreachable; retry later")


# -- query parameters -------------------------------------------------------------------------
def _limit(default: int) -> int:
    raw = request.args.get("limit")
    try:
        limit = default if raw is None else int(raw)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_PAGE:
        raise bad("limit", f"must be an integer 1..{MAX_PAGE}")
    return limit


def _time_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            value = datetime.fromisoformat(raw).timestamp()
        except (ValueError, OverflowError, OSError):
            raise bad(name, "must be a unix time or ISO-8601") from None
    if not math.isfinite(value):
        raise bad(name, "must be a unix time or ISO-8601")
    return value


def _cursor() -> str | None:
    cursor = request.args.get("cursor")
    if cursor is None:
        return None
    head = cursor.partition(":")[0]
    try:
        ok = math.isfinite(float(head))
    except ValueError:
        ok = False
    if not ok:
        raise bad("cursor", "not a cursor this API returned")
    return cursor


# -- jobs ----------------------------------------------------------------------------------------
@bp.post("/jobs")
def create_job():  # type: ignore[no-untyped-def]
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY_CHARS):
        raise bad("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters")
    view = jobs_api.create_job(_engine(), json_body(), idempotency_key=key)
    status = 200 if view.pop("replayed", False) else 202
    resp = jsonify(view)
    resp.status_code = status
    resp.headers["Location"] = url_for("v1.get_job", job_id=view["id"])
    return resp


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(jobs_api.get_job(_engine(), job_id))


@bp.get("/jobs")
def list_jobs():  # type: ignore[no-untyped-def]
    limit = _limit(50)
    status = request.args.get("status")
    if status is not None and status not in {s.value for s in JobStatus}:
        raise bad("status", "must be one of " + ", ".join(s.value for s in JobStatus))
    batch = request.args.get("batch")
    if batch is not None and not valid_id(batch):
        raise bad("batch", "not a batch id (A-Z a-z 0-9 _ -, up to 100 characters)")
    page = jobs_api.list_jobs(
        _engine(), batch=batch, status=status,
        created_from=_time_arg("created_from"), created_to=_time_arg("created_to"),
        cursor=_cursor(), limit=limit,
    )
    return jsonify(page)


@bp.post("/jobs/<job_id>/steps")
def add_steps(job_id: str):  # type: ignore[no-untyped-def]
    """Act later: a follow-up under a step of an existing job (finished or not)."""
    view = jobs_api.add_steps(_engine(), job_id, json_body())
    resp = jsonify(view)
    resp.status_code = 202
    resp.headers["Location"] = url_for("v1.get_job", job_id=job_id)
    return resp


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(jobs_api.cancel_job(_engine(), job_id))


@bp.post("/jobs/<job_id>/retry")
def retry_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(jobs_api.retry_job(_engine(), job_id))


@bp.post("/jobs/<job_id>/deliveries/replay")
def replay_deliveries(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(jobs_api.replay_deliveries(_engine(), job_id))


# -- batches --------------------------------------------------------------------------------------
def _batch_request() -> tuple[str, Any, str | None, str | None, Any]:
    """(kind, items or lines, name, batch id, then) from a JSON array/object or JSONL body,
    read as a stream that stops at the item limit (:mod:`worker.batch_stream`)."""
    name = request.args.get("name")
    request.max_content_length = MAX_BATCH_BODY_BYTES
    item_chars = _engine().settings.max_upload_bytes * 2 + 64 * 1024
    if request.mimetype in JSONL_TYPES:
        lines = read_jsonl_stream(request.stream, max_items=batches.MAX_BATCH_ITEMS,
                                  max_line_bytes=item_chars)
        return "jsonl", lines, name, None, None
    if request.mimetype not in JSON_TYPES:
        raise bad("body", "Content-Type must be application/json (an array of specs or "
                  "{name, items}) or application/x-ndjson (one spec or prompt a line)")
    body = read_json_stream(request.stream, max_items=batches.MAX_BATCH_ITEMS,
                            max_value_chars=item_chars)
    if isinstance(body, list):
        return "items", body, name, None, None
    if not isinstance(body, dict):
        raise bad("body", "must be an array of job specs or an object with items")
    unknown = sorted(set(body) - BATCH_OBJECT_FIELDS)
    if unknown:
        raise jobs_api.SpecError([{"path": u, "message": "Extra inputs are not permitted"}
                                  for u in unknown])
    if "items" not in body:
        raise bad("items", "Field required")
    body_name = body.get("name")
    if body_name is not None and not isinstance(body_name, str):
        raise bad("name", "must be a string")
    if body_name is not None and name is not None and body_name != name:
        raise bad("name", "given twice (query and body) with different values")
    batch_id = body.get("batchId")
    if batch_id is not None and not isinstance(batch_id, str):
        raise bad("batchId", "must be a string")
    then = body.get("then")
    if then is not None and not isinstance(then, list):
        raise bad("then", "must be a list of follow-ups")
    if "maxCost" in body:
        request.environ["mjflow.max_cost"] = body["maxCost"]
    return "items", body["items"], body_name if body_name is not None else name, batch_id, then


def _max_cost() -> float | None:
    """A batch's ``maxCost`` (the body's field, or ``?maxCost=``), checked."""
    raw = request.environ.get("mjflow.max_cost", request.args.get("maxCost"))
    if raw is None:
        return None
    try:
        return batches.check_max_cost(raw)
    except ValueError as exc:
        raise bad("maxCost", str(exc)) from None


@bp.post("/batches")
def create_batch():  # type: ignore[no-untyped-def]
    kind, payload, name, batch_id, then = _batch_request()
    max_cost = _max_cost()
    engine = _engine()
    if kind == "jsonl":
        entries, errors = payload
        view = batches.create_batch_lines(engine, entries, errors, name=name, batch_id=batch_id)
    else:
        view = batches.create_batch(engine, payload, name=name, batch_id=batch_id, then=then)
    if max_cost is not None:
        view = view | batches.set_max_cost(engine, view["id"], max_cost)
    sub = view["submitted"]
    created = sub["created"] + sub["retried"] + sub["renewed"]
    resp = jsonify(view)
    resp.status_code = 202 if created else 200
    resp.headers["Location"] = url_for("v1.get_batch", batch_id=view["id"])
    return resp


@bp.get("/batches")
def list_batches():  # type: ignore[no-untyped-def]
    return jsonify(batches.list_batches(_engine(), cursor=_cursor(), limit=_limit(20)))


@bp.get("/batches/<batch_id>")
def get_batch(batch_id: str):  # type: ignore[no-untyped-def]
    return jsonify(batches.get_batch(_engine(), batch_id))


@bp.get("/batches/<batch_id>/report")
def batch_report(batch_id: str):  # type: ignore[no-untyped-def]
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise bad("format", "must be csv or json")
    rows = batches.report(_engine(), batch_id)
    if fmt == "csv":
        resp = Response(batches.report_csv(rows), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f'attachment; filename="{batch_id}.csv"'
        return resp
    return jsonify({"batch": batch_id, "items": rows,
                    "spend": budget.batch_spend(_engine().store, batch_id)})


@bp.post("/batches/<batch_id>/retry")
def retry_batch(batch_id: str):  # type: ignore[no-untyped-def]
    return jsonify(batches.retry_batch(_engine(), batch_id))


@bp.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str):  # type: ignore[no-untyped-def]
    return jsonify(batches.cancel_batch(_engine(), batch_id))


# -- upstreams (the fleet) ----------------------------------------------------------------------
@bp.get("/upstreams")
def list_upstreams():  # type: ignore[no-untyped-def]
    return jsonify(upstream_ops.list_upstreams(_engine()))


@bp.get("/upstreams/<name>")
def get_upstream(name: str):  # type: ignore[no-untyped-def]
    return jsonify(upstream_ops.get_upstream(_engine(), name))


@bp.post("/upstreams/<name>/pause")
def pause_upstream(name: str):  # type: ignore[no-untyped-def]
    body = json_body() if request.content_length else {}
    if not isinstance(body, dict):
        raise bad("body", "must be a JSON object (optional: reason)")
    return jsonify(upstream_ops.pause(_engine(), name, body.get("reason")))


@bp.post("/upstreams/<name>/resume")
def resume_upstream(name: str):  # type: ignore[no-untyped-def]
    return jsonify(upstream_ops.resume(_engine(), name))


@bp.get("/upstream")
def upstream_state():  # type: ignore[no-untyped-def]
    """The first upstream, as before the fleet (``/v1/upstreams`` lists them all)."""
    return jsonify(upstream_ops.legacy_view(_engine()))


@bp.post("/upstream/resume")
def upstream_resume():  # type: ignore[no-untyped-def]
    engine = _engine()
    upstream_ops.resume_all(engine)
    return jsonify(next(iter(engine.fleet)).window.state())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    openapi.init_app(app)


__all__ = ["bp", "error", "init_app", "json_body"]
