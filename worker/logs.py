"""Structured JSON logs: one line per event, with the job, step and upstream task ids.

Standard library only (no python-json-logger).

    setup_logging(settings)       once per process: a stderr handler on the root logger
                                  with JsonFormatter + RedactFilter (idempotent)
    bind(job=, step=, task=)      context manager: ids added to every line logged inside
                                  (contextvars: per thread / per asyncio task)
    connect_celery_signals()      Celery: our logging instead of Celery's, and the ids
                                  found in a task's arguments bound while it runs
    init_request_logging(app)     Flask: one line per request (method, redacted path,
                                  status, duration_ms); ids from the URL bound meanwhile

A line looks like::

    {"ts": "2024-05-01T12:00:00.123Z", "level": "INFO", "logger": "mjflow.submit",
     "msg": "submitted", "pid": 812, "job": "job_...", "step": "stp_...", "task": "1712..."}

Redaction (:class:`RedactFilter`, on the handler so it sees records of every logger):
the token of ``/hooks/mj/<step>/<token>`` paths, ``Bearer``/``Basic`` credentials,
``mj-api-secret`` header values, ``whsec_...`` and ``sk-...`` secrets, signature-like
query parameters (``token=``, ``key=``, ``X-Amz-Signature=``...) and the exact values of
the configured secrets (``upstream_key``, ``hook_secret``, ``hook_secret_previous``,
``webhook_secret``, ``api_keys``; values shorter than ``MIN_SECRET_LEN`` are left alone,
as they would garble every message) are replaced with ``<redacted>`` in the message, its
args, string extras and exception text.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from worker.settings import get_settings

REDACTED = "<redacted>"
MIN_SECRET_LEN = 6
CONTEXT_FIELDS = ("job", "step", "task")
#: Celery's loggers that write a line per task (received, succeeded) or per beat tick.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")

# Never mutated in place: every bind sets a new dict (so a reset restores the outer one).
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mjflow_log_context", default=None)


# -- context ---------------------------------------------------------------------------
def current_context() -> dict[str, Any]:
    """The ids bound in this thread / task (a copy)."""
    return dict(_context.get() or {})


def _push(values: dict[str, Any]) -> contextvars.Token:
    merged = {**(_context.get() or {}), **{k: v for k, v in values.items() if v not in (None, "")}}
    return _context.set(merged)


def _pop(token: contextvars.Token) -> None:
    try:
        _context.reset(token)
    except ValueError:   # reset from another context: drop what we bound instead
        _context.set(None)


@contextmanager
def bind(*, job: str | None = None, step: str | None = None, task: str | None = None,
         **extra: Any) -> Iterator[dict[str, Any]]:
    """Add ids (``job``, ``step``, upstream ``task``, anything else) to every log line
    written inside the block; nested blocks add to (and may override) outer ones."""
    token = _push({"job": job, "step": step, "task": task, **extra})
    try:
        yield current_context()
    finally:
        _pop(token)


# -- redaction ---------------------------------------------------------------------------
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # /hooks/mj/<step>/<token>: keep the step, drop the token
    (re.compile(r"(/hooks/mj/[^/\s?#\"']+/)[^/\s?#\"'&,;)]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+(?!<redacted>)[A-Za-z0-9._~+/=:-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?!bearer\s|<redacted>)"
                r"(?:basic\s+|token\s+)?[^\s\"',;}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(mj-api-secret[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)((?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+"),
     r"\1" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{6,}"), "sk-" + REDACTED),
    (re.compile(r"(?i)([?&](?:token|key|api_key|apikey|secret|sig|signature|"
                r"x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s#\"']+"),
     r"\1" + REDACTED),
]


def secrets_of(settings: Any) -> list[str]:
    """The configured secret values of ``settings`` (missing attributes are skipped)."""
    if settings is None:
        return []
    values: list[str] = []
    for name in ("upstream_key", "hook_secret", "hook_secret_previous", "webhook_secret"):
        v = getattr(settings, name, None)
        if v:
            values.append(str(v))
    values += [str(k) for k in (getattr(settings, "api_keys", None) or []) if k]
    return values


class Redactor:
    """Removes secrets from a string: the fixed patterns plus exact configured values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        uniq = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len,
                      reverse=True)
        self._exact = re.compile("|".join(map(re.escape, uniq))) if uniq else None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._exact is not None:
            text = self._exact.sub(REDACTED, text)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text


def redact_path(path: str) -> str:
    """A URL path with the hook token (and secret-looking query values) removed."""
    return _DEFAULT_REDACTOR(path)


_DEFAULT_REDACTOR = Redactor()
_STD_ATTRS = frozenset(logging.LogRecord("x", 0, "x", 0, "x", None, None).__dict__) | {
    "message", "asctime", "taskName"}


class RedactFilter(logging.Filter):
    """Rewrites each record so no secret survives: the message is rendered with its args
    and redacted (``record.args`` is cleared), string extras and the exception text too.

    Attach it to a *handler*: filters on a logger only see records logged on that very
    logger, not those propagated from its children.
    """

    def __init__(self, settings: Any = None, *, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor([*secrets_of(settings), *secrets])

    def configure(self, settings: Any = None, *, secrets: Iterable[str] = ()) -> None:
        self.redactor.set_secrets([*secrets_of(settings), *secrets])

    def filter(self, record: logging.LogRecord) -> bool:
        red = self.redactor
        if not getattr(record, "_mjflow_redacted", False):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - bad format args must not lose the line
                message = f"{record.msg!r} {record.args!r}"
            record.msg, record.args = red(message), None
            for name, value in list(record.__dict__.items()):
                if name in _STD_ATTRS or name.startswith("_"):
                    continue
                if isinstance(value, str):
                    setattr(record, name, red(value))
                elif isinstance(value, (dict, list, tuple)):
                    setattr(record, name, _redact_obj(value, red))
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = red(record.exc_text)
            if record.stack_info:
                record.stack_info = red(record.stack_info)
            record._mjflow_redacted = True
        return True


def _redact_obj(value: Any, red: Redactor) -> Any:
    if isinstance(value, str):
        return red(value)
    if isinstance(value, dict):
        return {k: _redact_obj(v, red) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_obj(v, red) for v in value]
    return value


# -- formatting --------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, pid, the bound context (job, step,
    task, ...), any ``extra=`` fields, and ``exc`` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        out.update(_context.get() or {})
        for name, value in record.__dict__.items():
            if name not in _STD_ATTRS and not name.startswith("_"):
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


# -- setup ---------------------------------------------------------------------------------
def _installed() -> logging.Handler | None:
    for h in logging.getLogger().handlers:
        if getattr(h, "_mjflow", False):
            return h
    return None


def setup_logging(settings: Any = None, *, level: str | int = "INFO",
                  stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger once: a handler on stderr (or ``stream``) with
    :class:`JsonFormatter` and :class:`RedactFilter`. Calling again only updates the level
    and the secrets (so it is safe from every entry point and from Celery's signal)."""
    root = logging.getLogger()
    handler = _installed()
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RedactFilter(settings))
        handler._mjflow = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    else:
        for f in handler.filters:
            if isinstance(f, RedactFilter) and settings is not None:
                f.configure(settings)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    # per-task and per-tick lines (Celery's "received"/"succeeded", beat's "sending due
    # task") only show at DEBUG; at INFO a log line is one per step transition
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    return handler


def reset_logging() -> None:
    """Remove the handler :func:`setup_logging` installed (tests)."""
    handler = _installed()
    if handler is not None:
        logging.getLogger().removeHandler(handler)


# -- Celery --------------------------------------------------------------------------------
_ID_RE = re.compile(r"^(job|stp)_[A-Za-z0-9]+$")
_celery_tokens: dict[str, contextvars.Token] = {}
_celery_settings: list[Any] = [None]


def ids_from_args(args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None
                  ) -> dict[str, str]:
    """Job and step ids (``job_...``, ``stp_...``) among a task's arguments, and the
    upstream task id of a task snapshot argument (a dict with ``id`` and ``status``)."""
    found: dict[str, str] = {}
    for value in [*(args or ()), *((kwargs or {}).values())]:
        if isinstance(value, str) and _ID_RE.match(value):
            found.setdefault("job" if value.startswith("job_") else "step", value)
        elif isinstance(value, dict) and value.get("id") and (
                "status" in value or "progress" in value):
            found.setdefault("task", str(value["id"]))
    return found


def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    setup_logging(_celery_settings[0], level=loglevel or "INFO")


def _on_task_prerun(task_id: str | None = None, task: Any = None, args: Any = None,
                    kwargs: Any = None, **_: Any) -> None:
    values: dict[str, Any] = ids_from_args(args or (), kwargs or {})
    values["celery_task"] = getattr(task, "name", None)
    values["celery_id"] = task_id
    _celery_tokens[task_id or ""] = _push(values)


def _on_task_postrun(task_id: str | None = None, **_: Any) -> None:
    token = _celery_tokens.pop(task_id or "", None)
    if token is not None:
        _pop(token)


def connect_celery_signals(settings: Any = None) -> None:
    """Hook Celery's signals (idempotent): ``setup_logging`` (Celery then leaves logging
    to us and we call :func:`setup_logging`), ``task_prerun``/``task_postrun`` (bind the
    ids found in the task's arguments for the task's duration)."""
    from celery import signals

    _celery_settings[0] = settings
    signals.setup_logging.connect(_on_setup_logging, weak=False,
                                  dispatch_uid="mjflow.logs.setup")
    signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="mjflow.logs.pre")
    signals.task_postrun.connect(_on_task_postrun, weak=False,
                                 dispatch_uid="mjflow.logs.post")


def disconnect_celery_signals() -> None:
    from celery import signals

    signals.setup_logging.disconnect(dispatch_uid="mjflow.logs.setup")
    signals.task_prerun.disconnect(dispatch_uid="mjflow.logs.pre")
    signals.task_postrun.disconnect(dispatch_uid="mjflow.logs.post")


# -- Flask ----------------------------------------------------------------------------------
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
_REQ_EXT = "mjflow.request_logging"


def init_request_logging(app: Any, *, logger: str = "mjflow.http",
                         quiet_paths: Iterable[str] = QUIET_PATHS) -> None:
    """One log line per request at DEBUG (WARNING for a 5xx): method, path (hook token
    redacted), status, duration_ms, request_id (``X-Request-Id`` or a new one); ids from
    the URL (``step_id``/``job_id``) are bound for the request, so the view's own lines
    carry them too. Nothing is formatted unless the line is logged. Idempotent."""
    from flask import g, request

    if app.extensions.get(_REQ_EXT):
        return
    app.extensions[_REQ_EXT] = True
    log = logging.getLogger(logger)
    quiet = tuple(quiet_paths)

    @app.before_request
    def _start() -> None:
        g._mjflow_t0 = time.perf_counter()
        va = request.view_args or {}
        rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
        g._mjflow_ctx = _push({"job": va.get("job_id"), "step": va.get("step_id"),
                               "request_id": _DEFAULT_REDACTOR(rid)})

    @app.after_request
    def _log(response: Any) -> Any:
        t0 = g.pop("_mjflow_t0", None)
        level = logging.WARNING if response.status_code >= 500 else logging.DEBUG
        if not log.isEnabledFor(level):
            return response
        duration_ms = round((time.perf_counter() - t0) * 1000, 2) if t0 is not None else None
        path = redact_path(request.path)
        if path in quiet:
            level = logging.DEBUG
        log.log(level, "%s %s %s", request.method, path, response.status_code,
                extra={"method": request.method, "path": path,
                       "status": response.status_code, "duration_ms": duration_ms})
        return response

    @app.teardown_request
    def _unbind(_exc: Any = None) -> None:
        token = g.pop("_mjflow_ctx", None)
        if token is not None:
            _pop(token)


# -- gunicorn -----------------------------------------------------------------------------
try:  # gunicorn is only installed where the web app runs
    from gunicorn.glogging import Logger as _GunicornBase
except ImportError:  # pragma: no cover
    _GunicornBase = None

if _GunicornBase is not None:
    class GunicornLogger(_GunicornBase):  # type: ignore[misc, valid-type]
        """``gunicorn --logger-class worker.logs.GunicornLogger``: gunicorn's own error and
        access logs as JSON lines through :class:`RedactFilter` (its access line and its
        "Error handling request <uri>" lines contain the raw path, hook token included)."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            try:
                settings = get_settings()
            except BaseException:  # noqa: BLE001 - the app reports bad settings itself
                settings = None
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())
                    if not any(isinstance(f, RedactFilter) for f in handler.filters):
                        handler.addFilter(RedactFilter(settings))
