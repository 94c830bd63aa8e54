"""What the ``mjflow`` commands share: exit codes, failing with a message, the engine,
output, and a job's lines and progress."""
from __future__ import annotations

import json
import sys
import time
from typing import Any, NoReturn

import click
import redis

from worker import api
from worker.enqueue import CeleryEnqueue
from worker.flow import receiver
from worker.flow.engine import build_engine
from worker.redisurl import redact
from worker.settings import ConfigError, get_settings

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CONFIG, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
EXIT_PENDING, EXIT_INTERRUPTED = 5, 130
JOB_OK = ("succeeded",)


def fail(code: int, message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _settings():  # type: ignore[no-untyped-def]
    try:
        return get_settings()
    except ConfigError as exc:
        fail(EXIT_CONFIG, str(exc.code))


def _engine():  # type: ignore[no-untyped-def]
    settings = _settings()
    try:
        engine = build_engine(settings, enqueue=CeleryEnqueue())
        engine.r.ping()
    except ConfigError as exc:
        fail(EXIT_CONFIG, str(exc.code))
    except redis.RedisError as exc:
        fail(EXIT_CONFIG, f"Redis unreachable at {redact(settings.redis_url)}: {exc}")
    return engine


def _out(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2) if as_json else text)


def job_line(view: dict[str, Any]) -> str:
    steps = ", ".join(f"{s['label']}:{s['status']}{' ' + s['progress'] if s['status'] == 'running' else ''}"
                      for s in view["steps"])
    return f"{view['id']}  {view['status']:<10} {steps}"


def job_images(view: dict[str, Any]) -> list[str]:
    return [f"{s['label']}: {img['key']}  {img.get('url') or ''}".rstrip()
            for s in view["steps"] for img in s["images"]]


def job_exit(view: dict[str, Any]) -> int:
    if not view["finishedAt"]:
        return EXIT_PENDING
    return EXIT_OK if view["status"] in JOB_OK else EXIT_FAILED


def wait_for_job(engine, job_id: str, timeout_s: float, quiet: bool = False) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[steps]}"),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task(job_id, total=None, steps="")
        while True:
            view = api.get_job(engine, job_id)
            steps = view["steps"]
            done = sum(1 for s in steps if s["status"] in ("succeeded", "failed", "cancelled", "skipped"))
            bar.update(task, total=len(steps), completed=done,
                       steps=" ".join(f"{s['label']}:{s['status']}" for s in steps))
            if view["finishedAt"] or time.monotonic() > deadline:
                return view
            time.sleep(0.5)


def warn_if_no_callbacks(engine) -> None:  # type: ignore[no-untyped-def]
    """Say so on stderr when the callback receiver does not answer (the job then waits
    for polling); probes it first when the last probe is stale."""
    if not engine.callbacks_configured:
        return
    url = engine.settings.public_url
    warning = receiver.describe(url, receiver.check(engine.r, engine.keys, url))
    if warning:
        click.echo(f"warning: {warning} (every {min(engine.poll_interval_s(m) for m in engine.fleet):g} s); start the web "
                   "app (gunicorn, see the Procfile) or unset MJFLOW_PUBLIC_URL", err=True)
