"""``POST /hooks/mj/<step_id>/<token>``: the upstream callback receiver.

Verify (token in constant time, content type, size), parse (a bounded task JSON whose id
is the step's, or whose ``state`` names the step while its id is unknown), record (push
the step's next poll back; keep a not-yet-adopted task id as evidence for a lost submit)
and enqueue the snapshot for the reconcile worker; answer 204. Nothing slow happens here.
"No such step" and "bad token" get the same 404 (the token is bound to the step's current
attempt, so a retried step's old URL is dead); a callback for a finished step, a step with
no submit in flight, or another task gets 409; no step changes state in this request.
"""
from __future__ import annotations

import json
import logging

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError

from worker.flow.polling import heartbeat
from worker.flow.tokens import verify_hook_token
from worker.ids import valid_id
from worker.jobs.model import IN_FLIGHT, StepStatus
from worker.upstream import Task

bp = Blueprint("hooks", __name__)
LISTENING = IN_FLIGHT | {StepStatus.STORING}     # a late copy of the SUCCESS is harmless
log = logging.getLogger("mjflow.hooks")


def _reject(status: int, reason: str, message: str) -> tuple[Response, int]:
    engine = current_app.extensions["mjflow"]
    engine.store.bump("callbacks", f"rejected_{reason}")
    return jsonify({"error": reason, "message": message}), status


@bp.post("/hooks/mj/<step_id>/<token>")
def receive(step_id: str, token: str):  # type: ignore[no-untyped-def]
    engine = current_app.extensions["mjflow"]
    settings = engine.settings
    step = engine.store.brief(step_id) if valid_id(step_id) else None
    # the token names the attempt (the step's current state); "no such step" costs the same
    attempt = step.upstream_state if step else step_id
    if not verify_hook_token(settings, attempt, token) or step is None:
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
    if step.status.terminal:
        return _reject(409, "late", "step already finished")
    if step.status not in LISTENING:
        return _reject(409, "not_submitted", "no submit of this step is in flight")
    if step.task_id and task.id != step.task_id or not step.task_id and task.state != attempt:
        return _reject(409, "wrong_task", "callback is for another task")
    if not step.task_id:
        engine.store.note_seen(step_id, task.id)
    heartbeat(engine, step_id)
    engine.enqueue.reconcile(step_id, payload)
    engine.store.bump("callbacks", "accepted")
    return Response(status=204)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
