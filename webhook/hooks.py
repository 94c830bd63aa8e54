"""``POST /hooks/mj/<step_id>/<token>``: the upstream callback receiver.

Verify (token in constant time, content type, size), parse (a bounded task JSON with an
id), then one Redis round trip (:meth:`worker.jobs.inbox.Inbox.record`): the step exists
and this is its attempt, it still listens, the task is its own (or, while its id is
unknown, carries its ``state``: the id is then kept as evidence for a lost submit); the
step's next check moves; progress of a running step is recorded right there, anything
else is kept (newest per step) for the reconcile worker, which gets one message however
many callbacks come before it runs. Answer 204. Nothing slow happens here.

The token names the attempt (the step's ``state``): it is checked first against the
step's first attempt, which needs no read; only a token that does not match it costs one
read of the step's retry generation. "No such step" and "bad token" get the same 404 (a
retried step's old URL is dead); a callback for a finished step, a step with no submit in
flight, or another task gets 409; no step changes state in this request.
"""
from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError

from worker.flow.pacing import after_callback
from worker.flow.tokens import verify_hook_token
from worker.jobs.model import upstream_state
from worker.upstream import Task

bp = Blueprint("hooks", __name__)
log = logging.getLogger("mjflow.hooks")
MAX_STEP_ID = 64
#: What the recording script's refusals answer.
REFUSALS = {
    "not_found": (404, "no such hook"),
    "late": (409, "step already finished"),
    "not_submitted": (409, "no submit of this step is in flight"),
    "wrong_task": (409, "callback is for another task"),
}


def _answer(status: int, reason: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": reason, "message": message}), status


def _reject(status: int, reason: str, message: str) -> tuple[Response, int]:
    engine = current_app.extensions["mjflow"]
    engine.store.bump("callbacks", f"rejected_{reason}")
    return _answer(status, reason, message)


def _attempt(step_id: str, token: str) -> int | None:
    """The generation the token was given to (None: no such step, or a bad token)."""
    engine = current_app.extensions["mjflow"]
    settings = engine.settings
    if len(step_id) > MAX_STEP_ID:
        verify_hook_token(settings, step_id, token)      # the same work as any other miss
        return None
    if verify_hook_token(settings, step_id, token):
        return 0
    generation = engine.store.inbox.generation(step_id)
    if not generation or not verify_hook_token(settings, upstream_state(step_id, generation),
                                               token):
        return None
    return generation


@bp.post("/hooks/mj/<step_id>/<token>")
def receive(step_id: str, token: str):  # type: ignore[no-untyped-def]
    engine = current_app.extensions["mjflow"]
    generation = _attempt(step_id, token)
    if generation is None:
        return _reject(404, "not_found", "no such hook")
    if request.mimetype != "application/json":
        return _reject(415, "unsupported_media_type", "expected application/json")
    limit = engine.settings.callback_max_bytes
    if (request.content_length or 0) > limit:
        return _reject(413, "too_large", f"callback body larger than {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        return _reject(413, "too_large", f"callback body larger than {limit} bytes")
    try:
        payload = json.loads(raw)
        task = Task.model_validate(payload) if isinstance(payload, dict) else None
    except (ValueError, ValidationError, UnicodeDecodeError, RecursionError):
        task = None
    if task is None or not task.id:
        return _reject(400, "malformed", "body is not a task JSON object with an id")
    now = time.time()
    outcome = engine.store.inbox.record(
        step_id, generation, upstream_state(step_id, generation), task,
        raw.decode("utf-8", "replace"), now=now, next_check=after_callback(engine, task, now),
        confirm=engine.settings.confirm_terminal_callbacks)
    if outcome in REFUSALS:
        status, message = REFUSALS[outcome]
        return _answer(status, outcome, message)      # counted by the script
    if outcome == "enqueue":
        engine.enqueue.reconcile(step_id)
    return Response(status=204)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
