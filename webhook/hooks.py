"""``POST /hooks/mj/<step_id>/<token>``: the upstream callback receiver.

Verify (token in constant time, content type, size), parse (a bounded task JSON whose id
is the step's, or whose ``state`` names the step while its id is unknown), record (push
the step's next poll back) and enqueue the snapshot for the reconcile worker; answer 204.
Nothing slow happens here. "No such step" and "bad token" get the same 404; a callback
for a finished step or another task gets 409; nothing changes state in this request.
"""
from __future__ import annotations

import json
import logging

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError

from worker.engine import verify_hook_token
from worker.ids import valid_id
from worker.jobs.model import StepStatus, upstream_state
from worker.polling import heartbeat
from worker.upstream import Task

bp = Blueprint("hooks", __name__)
log = logging.getLogger("mjflow.hooks")


def _reject(status: int, reason: str, message: str) -> tuple[Response, int]:
    engine = current_app.extensions["mjflow"]
    engine.store.bump("callbacks", f"rejected_{reason}")
    return jsonify({"error": reason, "message": message}), status


@bp.post("/hooks/mj/<step_id>/<token>")
def receive(step_id: str, token: str):  # type: ignore[no-untyped-def]
    engine = current_app.extensions["mjflow"]
    settings = engine.settings
    if not valid_id(step_id) or not verify_hook_token(settings, step_id, token):
        return _reject(404, "not_found", "no such hook")
    if request.mimetype != "application/json":
        return _reject(415, "unsupported_media_type", "expected application/json")
    limit = settings.callback_max_bytes
    if (request.content_length or 0) > limit:
        return _reject(413, "too_large", f"callback body larger than {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        return _reject(413, "too_large", f"callback body larger than {limit} bytes")
    try:
        payload = json.loads(raw)
        task = Task.model_validate(payload) if isinstance(payload, dict) else None
    except (ValueError, ValidationError, UnicodeDecodeError, RecursionError):
        task = None             # nested too deeply is malformed too: a 400, never a 500
    if task is None or not task.id:
        return _reject(400, "malformed", "body is not a task JSON object with an id")
    status, task_id, generation = engine.r.hmget(engine.keys.step(step_id), "status", "task_id",
                                                 "generation")
    if status is None:
        return _reject(404, "not_found", "no such hook")
    if StepStatus(status).terminal:
        return _reject(409, "late", "step already finished")
    if task_id and task.id != task_id or not task_id and task.state != upstream_state(step_id, generation):
        return _reject(409, "wrong_task", "callback is for another task")
    heartbeat(engine, step_id)
    engine.enqueue.reconcile(step_id, payload, "callback")
    engine.store.bump("callbacks", "accepted")
    return Response(status=204)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
