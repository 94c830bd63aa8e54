"""``mjflow``: the command line, thin over the same functions as the HTTP API.

Exit codes (scripts can rely on them):
    0  everything asked for succeeded
    1  some job failed, was cancelled or finished partial
    2  bad input (invalid spec, unreadable file, bad option)
    3  configuration error or a needed service unreachable
    4  not found
    130 interrupted (Ctrl-C); the work goes on in the workers
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from worker import api
from worker.settings import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CONFIG, EXIT_NOT_FOUND, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
JOB_OK = ("succeeded",)


def _engine():  # type: ignore[no-untyped-def]
    import redis

    from worker.engine import build_engine
    from worker.tasks import CeleryEnqueue

    try:
        engine = build_engine(enqueue=CeleryEnqueue())
        engine.r.ping()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except redis.RedisError as exc:
        click.echo(f"error: Redis unreachable at {engine.settings.redis_url}: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mjflow: Midjourney jobs through any midjourney-proxy-compatible API."""


@main.command()
@click.argument("prompt")
@click.option("--then", "then", multiple=True, help="follow-up button (U1, V2, 'Zoom Out 2x'...)")
@click.option("--mode", type=click.Choice(["FAST", "RELAX", "TURBO"]))
@click.option("--split-grid", is_flag=True)
@click.option("--callback-url")
@click.option("--priority", type=click.IntRange(0, 9), default=5)
@click.option("--wait", is_flag=True, help="show progress until the job finishes")
@click.option("--timeout", "timeout_s", type=float, default=1800.0)
@click.option("--json", "as_json", is_flag=True)
def submit(prompt: str, then: tuple[str, ...], mode: str | None, split_grid: bool,
           callback_url: str | None, priority: int, wait: bool, timeout_s: float,
           as_json: bool) -> None:
    """Submit one imagine job (with follow-ups) and print its id."""
    engine = _engine()
    spec: dict[str, Any] = {"prompt": prompt, "then": list(then), "priority": priority,
                            "splitGrid": split_grid}
    if mode:
        spec["mode"] = mode
    if callback_url:
        spec["callbackUrl"] = callback_url
    try:
        view = api.create_job(engine, spec)
    except api.SpecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    if not wait:
        _out(view, as_json, view["id"])
        return
    view = wait_for_job(engine, view["id"], timeout_s, quiet=as_json)
    _out(view, as_json, "\n".join([job_line(view), *job_images(view)]))
    sys.exit(EXIT_OK if view["status"] in JOB_OK else EXIT_FAILED)


def wait_for_job(engine, job_id: str, timeout_s: float, quiet: bool = False) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[steps]}"),
                  TimeElapsedColumn(), disable=quiet, transient=True) as bar:
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


@main.command()
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True)
def status(ident: str, as_json: bool) -> None:
    """Show a job (job_...) or a batch."""
    engine = _engine()
    try:
        view = api.get_job(engine, ident)
    except api.NotFound:
        click.echo(f"error: no job {ident}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    _out(view, as_json, "\n".join([job_line(view), *job_images(view)] +
                                  [f"  {s['label']}: {s['failReason']}" for s in view["steps"] if s["failReason"]]))
    sys.exit(EXIT_OK if view["status"] in JOB_OK else EXIT_FAILED)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel what has not started yet."""
    engine = _engine()
    try:
        view = api.cancel_job(engine, job_id)
    except api.NotFound:
        click.echo(f"error: no job {job_id}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    _out(view, as_json, job_line(view))


@main.command()
@click.option("--json", "as_json", is_flag=True)
def resume(as_json: bool) -> None:
    """Resume dispatch after it was paused (out of credit, auth failure)."""
    engine = _engine()
    engine.window.resume()
    state = engine.window.state()
    _out(state, as_json, f"dispatch resumed; window {state['size']}/{state['max']}, {state['inUse']} in use")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              add_help_option=False)
@click.pass_context
def sim(ctx: click.Context) -> None:
    """Run the simulated upstream (see `mjflow sim --help`)."""
    from simulator.cli import main as sim_main

    sim_main(ctx.args)


if __name__ == "__main__":
    main()
