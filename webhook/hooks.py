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
flight, or another task gets 409, except the SUCCESS of its own task for a step mjflow
gave up on, within ``MJFLOW_LATE_SUCCESS_GRACE_S`` (kept for the reconcile, which stores
it: worker.jobs.machine.revive); no step changes state in this request.

The receiver is :func:`handle`, free of any web framework. :class:`FastLane` serves it in
front of Flask (a plain WSGI callable: callbacks are most of the traffic, and Flask's
request machinery would cost several times the receiver's own work); the Flask route
serves the same function for any server that bypasses the lane.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from pydantic import ValidationError

from worker.flow.engine import Engine
from worker.flow.pacing import after_callback
from worker.flow.tokens import verify_hook_token
from worker.ids import valid_id
from worker.jobs.model import upstream_state
from worker.upstream import Task

bp = Blueprint("hooks", __name__)
log = logging.getLogger("mjflow.hooks")
http_log = logging.getLogger("mjflow.http")
PREFIX = "/hooks/mj/"
#: What the recording script's refusals answer.
REFUSALS = {
    "not_found": (404, "no such hook"),
    "late": (409, "step already finished"),
    "not_submitted": (409, "no submit of this step is in flight"),
    "wrong_task": (409, "callback is for another task"),
}
Answer = tuple[int, dict[str, str] | None]


def _reject(engine: Engine, status: int, reason: str, message: str) -> Answer:
    engine.store.bump("callbacks", f"rejected_{reason}")
    return status, {"error": reason, "message": message}


def _attempt(engine: Engine, step_id: str, token: str) -> int | None:
    """The generation the token was given to (None: no such step, or a bad token)."""
    settings = engine.settings
    if not valid_id(step_id):
        verify_hook_token(settings, step_id, token)      # the same work as any other miss
        return None
    if verify_hook_token(settings, step_id, token):
        return 0
    generation = engine.store.inbox.generation(step_id)
    if not generation or not verify_hook_token(settings, upstream_state(step_id, generation),
                                               token):
        return None
    return generation


def handle(engine: Engine, step_id: str, token: str, mimetype: str, length: int | None,
           read: Callable[[int], bytes]) -> Answer:
    """One callback: the HTTP status and the JSON body of the answer (None for 204)."""
    generation = _attempt(engine, step_id, token)
    if generation is None:
        return _reject(engine, 404, "not_found", "no such hook")
    if mimetype != "application/json":
        return _reject(engine, 415, "unsupported_media_type", "expected application/json")
    limit = engine.settings.callback_max_bytes
    if (length or 0) > limit:
        return _reject(engine, 413, "too_large", f"callback body larger than {limit} bytes")
    raw = read(limit + 1)
    if len(raw) > limit:
        return _reject(engine, 413, "too_large", f"callback body larger than {limit} bytes")
    try:
        payload = json.loads(raw)
        task = Task.model_validate(payload) if isinstance(payload, dict) else None
    except (ValueError, ValidationError, UnicodeDecodeError, RecursionError):
        task = None
    if task is None or not task.id:
        return _reject(engine, 400, "malformed", "body is not a task JSON object with an id")
    now = time.time()
    outcome = engine.store.inbox.record(
        step_id, generation, upstream_state(step_id, generation), task,
        raw.decode("utf-8", "replace"), now=now, next_check=after_callback(engine, task, now),
        confirm=engine.settings.confirm_terminal_callbacks)
    if outcome in REFUSALS:
        status, message = REFUSALS[outcome]
        return status, {"error": outcome, "message": message}     # counted by the script
    if outcome == "enqueue":
        engine.enqueue.reconcile(step_id)
    return 204, None


def _split(path: str) -> tuple[str, str] | None:
    parts = path[len(PREFIX):].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and parts[0] and parts[1] else None


@bp.post("/hooks/mj/<step_id>/<token>")
def receive(step_id: str, token: str):  # type: ignore[no-untyped-def]
    status, body = handle(current_app.extensions["mjflow"], step_id, token, request.mimetype,
                          request.content_length, request.stream.read)
    if body is None:
        return Response(status=status)
    return Response(json.dumps(body), status=status, mimetype="application/json")


class FastLane:
    """WSGI middleware: ``POST /hooks/mj/<step>/<token>`` straight to :func:`handle`;
    everything else to the Flask app. Answers as the Flask route does (a 5xx only when
    Redis fails, logged with the path's token redacted)."""

    def __init__(self, engine: Engine, app: Callable[..., Iterable[bytes]]) -> None:
        self.engine = engine
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        parts = _split(path) if path.startswith(PREFIX) else None
        if parts is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        ctype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0) or None
        except ValueError:
            length = None
        stream = environ["wsgi.input"]
        t0 = time.perf_counter()
        try:
            status, body = handle(self.engine, *parts, ctype, length,
                                  lambda n: stream.read(min(n, length) if length else n))
        except Exception:  # noqa: BLE001 - the app's own last resort, in the lane
            log.exception("unhandled error in the callback receiver")
            status, body = 500, {"error": "internal_error", "message": "unexpected error; see logs"}
        level = logging.WARNING if status >= 500 else logging.DEBUG
        if http_log.isEnabledFor(level):    # the request line, as the HTTP logger writes it
            redacted = f"{PREFIX}{parts[0]}/<redacted>"
            http_log.log(level, "POST %s %s", redacted, status, extra={
                "method": "POST", "path": redacted, "status": status, "step": parts[0],
                "duration_ms": round((time.perf_counter() - t0) * 1000, 2)})
        data = b"" if body is None else json.dumps(body).encode()
        headers = [("Content-Length", str(len(data)))]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        start_response(f"{status} {_REASONS.get(status, '')}".strip(), headers)
        return [data]


_REASONS = {204: "No Content", 400: "Bad Request", 404: "Not Found", 409: "Conflict",
            413: "Request Entity Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.wsgi_app = FastLane(app.extensions["mjflow"], app.wsgi_app)  # type: ignore[method-assign]
