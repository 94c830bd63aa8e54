"""``mjflow``: the command line, thin over the same functions as the HTTP API.

Exit codes (scripts can rely on them):
    0  everything asked for succeeded (for status/batch/submit --wait: the job or every
       job of the batch succeeded)
    1  some job failed, was cancelled or finished partial (for retry: there are failed
       steps but a retry can help none of them; each is listed with why)
    2  bad input (invalid spec, unreadable file, bad lines in a batch file, bad option)
    3  configuration error or a needed service (Redis) unreachable
    4  not found (no such job or batch)
    5  not finished yet (status of a queued/running job or batch; a --timeout that ran out)
    130 interrupted (Ctrl-C); the work goes on in the workers

Every command takes ``--json`` (machine-readable output on stdout; progress bars off).
A batch is named by its id (``bat_...``), its name, or the path of its JSONL file.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

try:
    import click
except ModuleNotFoundError:  # `pip install mjflow` is the caller SDK only
    raise SystemExit("mjflow: the service is not installed here (pip install 'mjflow[server]'); "
                     "the SDK is `import mjflow`") from None

from simulator.cli import main as sim_main
from worker import api, batches, upstream_ops
from worker.cli_submit import act, submit
from worker.cli_support import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PENDING,
    _engine,
    _out,
    _settings,
    fail,
    job_exit,
    job_images,
    job_line,
)
from worker.flow import budget

JOB_OK = ("succeeded",)
SUBMIT_CHUNK = 20          # items per create call while submitting a batch file
WATCH_INTERVAL_S = 1.0
PLAIN_LOG_INTERVAL_S = 10.0


def batch_exit(view: dict[str, Any]) -> int:
    if not view["done"]:
        return EXIT_PENDING
    return EXIT_OK if view["status"] == "succeeded" else EXIT_FAILED


def batch_lines(view: dict[str, Any]) -> list[str]:
    c = view["counts"]
    rate = f"{view['throughputPerMin']}/min" if view["throughputPerMin"] else "-"
    eta = _duration(view["etaSeconds"]) if view["etaSeconds"] is not None else "-"
    head = f"{view['id']}  {view['status']:<10} {view['finished']}/{view['total']} finished"
    if view.get("name"):
        head += f"  ({view['name']})"
    counts = "  ".join(f"{k} {v}" for k, v in c.items() if v)
    return [head, f"  {counts or 'empty'}", f"  throughput {rate}  eta {eta}"]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def resolve(engine, ident: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """("job"|"batch", id) for a job id, a batch id, a batch name or a batch file path."""
    if ident.startswith("job_"):
        return "job", ident
    if ident.startswith("bat_"):
        return "batch", ident
    path = Path(ident)
    if path.is_file():
        return "batch", batches.batch_id_for(default_batch_name(path))
    by_name = batches.batch_id_for(ident)
    if batches.exists(engine, by_name):
        return "batch", by_name
    return "job", ident


def default_batch_name(path: Path) -> str:
    """A batch file's default name: its absolute path (re-running the file resumes it)."""
    return str(path.resolve())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mjflow: Midjourney jobs through any midjourney-proxy-compatible API."""


main.add_command(submit)
main.add_command(act)


# -- batch ---------------------------------------------------------------------------------------
@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--then", "then", multiple=True,
              help="follow-up for items without their own 'then' (repeatable)")
@click.option("--name", help="batch name (default: the file's absolute path); the same name resumes")
@click.option("--max-cost", "max_cost", type=float, default=None,
              help="budget of the batch: stop dispatching once its tasks cost this much")
@click.option("--detach", is_flag=True, help="submit and return; do not watch")
@click.option("--skip-invalid", is_flag=True, help="submit the valid lines even if some are bad")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="stop watching after this many seconds (exit 5 if not finished)")
@click.option("--json", "as_json", is_flag=True)
def batch(file: Path, then: tuple[str, ...], name: str | None, max_cost: float | None,
          detach: bool, skip_invalid: bool, timeout_s: float | None, as_json: bool) -> None:
    """Submit (or resume) a batch from a JSONL file and show its progress.

    Each line is a job spec (JSON object, optionally with a "key") or a prompt (plain
    text). The whole file is validated first; nothing is submitted while any line is bad
    (unless --skip-invalid). Running the same command again resumes the same batch:
    finished items are not redone, running ones are not duplicated, failed ones run again.
    """
    settings = _settings()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(EXIT_INPUT, f"cannot read {file}: {exc}")
    entries, errors = batches.read_jsonl(text)
    items, item_errors = batches.prepare(entries, max_image_bytes=settings.max_upload_bytes,
                                         then=list(then) or None, path="lines", zero_based=False,
                                         fits=settings.fits)
    errors = sorted(errors + item_errors, key=lambda e: e.get("line", 0))
    if errors:
        for e in errors:
            where = f"{file}:{e['line']}" if e.get("line") else str(file)
            field = e["path"].split("]", 1)[1].lstrip(".") if "]" in e["path"] else ""
            click.echo(f"{where}: {field + ': ' if field else ''}{e['message']}", err=True)
        bad = sorted({e["line"] for e in errors if e.get("line")})
        bad_lines = len(bad) or 1
        if not skip_invalid:
            if as_json:
                _out({"errors": errors, "submitted": False}, True, "")
            fail(EXIT_INPUT, f"{bad_lines} bad line(s) in {file}; nothing submitted "
                             "(fix them, or pass --skip-invalid)")
        click.echo(f"skipping {bad_lines} bad line(s): {', '.join(map(str, bad))}", err=True)
    else:
        bad_lines = 0
    if not items:
        fail(EXIT_INPUT, f"{file} has no valid items")
    engine = _engine()
    name = name or default_batch_name(file)
    try:
        batches.check_name(name)
    except api.SpecError as exc:
        fail(EXIT_INPUT, str(exc))
    batch_id = batches.batch_id_for(name)
    if max_cost is not None:
        try:
            batches.set_max_cost(engine, batch_id, max_cost)
        except ValueError as exc:
            fail(EXIT_INPUT, f"--max-cost {exc}")
    try:
        run_batch(engine, batch_id, items, name, detach=detach, timeout_s=timeout_s,
                  as_json=as_json, skipped=bad_lines)
    except KeyboardInterrupt:
        fail(EXIT_INTERRUPTED, f"interrupted; batch {batch_id} goes on in the workers. "
                               "Rerun the same command to resume it (nothing finished is redone).")


def run_batch(engine, batch_id: str, items: list[dict[str, Any]], name: str, *, detach: bool,  # type: ignore[no-untyped-def]
              timeout_s: float | None, as_json: bool, skipped: int = 0) -> NoReturn:
    view = submit_chunks(engine, batch_id, items, name, quiet=as_json)
    sub = view["submitted"] | {"skipped": skipped}
    if not as_json:
        click.echo(f"batch {batch_id}: {sub['created']} new, {sub['done']} already done, "
                   f"{sub['inProgress']} in progress, {sub['renewed']} failed resubmitted, "
                   f"{sub['retried']} partial retried"
                   + (f", {skipped} bad line(s) skipped" if skipped else ""), err=True)
    if not detach:
        view = watch_batch(engine, batch_id, timeout_s=timeout_s, quiet=as_json)
    view["submitted"] = sub
    _out(view, as_json, "\n".join(batch_lines(view)) if not detach or as_json else batch_id)
    sys.exit(EXIT_OK if detach else batch_exit(view))


def submit_chunks(engine, batch_id: str, items: list[dict[str, Any]], name: str,  # type: ignore[no-untyped-def]
                  quiet: bool = False) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    total = {"created": 0, "done": 0, "inProgress": 0, "retried": 0, "renewed": 0}
    view: dict[str, Any] = {}
    with Progress(TextColumn("submitting"), BarColumn(), MofNCompleteColumn(), console=console,
                  disable=quiet or not console.is_terminal, transient=True) as bar:
        task = bar.add_task("submit", total=len(items))
        for start in range(0, len(items), SUBMIT_CHUNK):
            chunk = items[start:start + SUBMIT_CHUNK]
            view = batches.submit_items(engine, batch_id, chunk, name=name)
            for k, v in view["submitted"].items():
                total[k] += v
            bar.update(task, advance=len(chunk))
    view["submitted"] = total
    return view


def watch_batch(engine, batch_id: str, *, timeout_s: float | None = None,  # type: ignore[no-untyped-def]
                quiet: bool = False) -> dict[str, Any]:
    """Progress bars (overall + one per status) until the batch is done."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    plain = not console.is_terminal
    last_plain = 0.0
    rows = ("succeeded", "running", "queued", "partial", "failed", "cancelled")
    with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), console=console,
                  disable=quiet or plain) as bar:
        overall = bar.add_task("finished", total=None, info="")
        tasks = {name: bar.add_task(name, total=None, info="") for name in rows}
        while True:
            view = batches.batch_view(engine, batch_id)
            total = view["total"] or None
            rate = f"{view['throughputPerMin']}/min" if view["throughputPerMin"] else ""
            eta = f"ETA {_duration(view['etaSeconds'])}" if view["etaSeconds"] is not None else ""
            bar.update(overall, total=total, completed=view["finished"],
                       info=f"{rate}  {eta}".strip())
            for name, task in tasks.items():
                bar.update(task, total=total, completed=view["counts"][name])
            now = time.monotonic()
            if plain and not quiet and (now - last_plain >= PLAIN_LOG_INTERVAL_S or view["done"]):
                click.echo(" ".join(batch_lines(view)), err=True)
                last_plain = now
            if view["done"] or (deadline is not None and now > deadline):
                return view
            time.sleep(WATCH_INTERVAL_S)


# -- status / report / retry / cancel ------------------------------------------------------------
@main.command()
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True)
def status(ident: str, as_json: bool) -> None:
    """Show a job (job_...) or a batch (bat_..., its name, or its file)."""
    engine = _engine()
    kind, ident = resolve(engine, ident)
    try:
        if kind == "batch":
            view = batches.batch_view(engine, ident)
            _out(view, as_json, "\n".join(batch_lines(view)))
            sys.exit(batch_exit(view))
        view = api.get_job(engine, ident)
    except api.NotFound as exc:
        fail(EXIT_NOT_FOUND, str(exc))
    _out(view, as_json, "\n".join([job_line(view), *job_images(view)] +
                                  [f"  {s['label']}: {s['failReason']}" for s in view["steps"] if s["failReason"]]))
    sys.exit(job_exit(view))


@main.command()
@click.argument("ident")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="write to this file instead of stdout")
@click.option("--json", "as_json", is_flag=True, help="same as --format json")
def report(ident: str, fmt: str, output: Path | None, as_json: bool) -> None:
    """One row per item of a batch: key, job id, status, prompt, image keys, reason."""
    engine = _engine()
    kind, batch_id = resolve(engine, ident)
    if kind != "batch":
        fail(EXIT_NOT_FOUND, f"no batch {ident}")
    try:
        rows = batches.report(engine, batch_id)
    except api.NotFound as exc:
        fail(EXIT_NOT_FOUND, str(exc))
    if as_json:
        fmt = "json"
    text = (batches.report_csv(rows) if fmt == "csv"
            else json.dumps({"batch": batch_id, "items": rows,
                             "spend": budget.batch_spend(engine.store, batch_id)},
                            ensure_ascii=False, indent=2) + "\n")
    if output:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(EXIT_INPUT, f"cannot write {output}: {exc}")
        click.echo(f"{len(rows)} rows written to {output}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("ident")
@click.option("--failed", is_flag=True, default=True,
              help="retry the failed steps of failed/partial jobs (the only mode; the default)")
@click.option("--json", "as_json", is_flag=True)
def retry(ident: str, failed: bool, as_json: bool) -> None:
    """Run the failed steps of a job, or of every failed/partial job of a batch, again.

    Says which failed steps a retry cannot help and why (a follow-up whose button was
    never offered...); exits 1 when there are failures but none could be retried."""
    engine = _engine()
    kind, ident = resolve(engine, ident)
    try:
        if kind == "batch":
            view = batches.retry_batch(engine, ident)
            r = view["retried"]
            lines = [f"{ident}: {r['steps']} step(s) of {r['jobs']} job(s) retried"]
            left, count = view["notRetried"], r["notRetried"]
        else:
            view = api.retry_job(engine, ident)
            lines = [f"{ident}: {view['retried']} step(s) retried", job_line(view)]
            left, count = [row | {"jobId": ident} for row in view["notRetried"]], len(view["notRetried"])
    except api.NotFound as exc:
        fail(EXIT_NOT_FOUND, str(exc))
    if count:
        lines.append(f"{count} failed step(s) cannot be retried:")
        lines += [f"  {row['jobId']}{' (' + row['key'] + ')' if row.get('key') else ''} "
                  f"{row['label']}: {row['reason']}" for row in left]
        if count > len(left):
            lines.append(f"  ... and {count - len(left)} more")
    _out(view, as_json, "\n".join(lines))
    retried = view["retried"]["steps"] if kind == "batch" else view["retried"]
    if count and not retried:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True)
def cancel(ident: str, as_json: bool) -> None:
    """Cancel what has not started of a job or of every job of a batch."""
    engine = _engine()
    kind, ident = resolve(engine, ident)
    try:
        if kind == "batch":
            view = batches.cancel_batch(engine, ident)
            _out(view, as_json, f"{ident}: {view['cancelled']} job(s) cancelled "
                                "(steps already running finish)")
            return
        view = api.cancel_job(engine, ident)
    except api.NotFound as exc:
        fail(EXIT_NOT_FOUND, str(exc))
    _out(view, as_json, job_line(view))


def _upstream_line(view: dict) -> str:
    w = view["window"]
    state = f"paused: {w['reason']}" if w["paused"] else view["health"]
    return (f"{view['name']:<16} {view['profile']:<17} {view['host']:<24} "
            f"{w['inUse']:>3}/{w['size']:g} (max {w['max']})  spend today {view['spendToday']:g}"
            f"  {state}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def upstreams(as_json: bool) -> None:
    """The fleet: each upstream's slots in use, window, health and spend today."""
    view = upstream_ops.list_upstreams(_engine())
    _out(view, as_json, "\n".join(_upstream_line(u) for u in view["upstreams"]))


@main.command()
@click.argument("name")
@click.option("--reason", default=None, help="shown with the pause (default: paused by an operator)")
@click.option("--json", "as_json", is_flag=True)
def pause(name: str, reason: str | None, as_json: bool) -> None:
    """Stop dispatching to upstream NAME (its queued root steps go to the others)."""
    try:
        view = upstream_ops.pause(_engine(), name, reason)
    except (api.NotFound, api.SpecError) as exc:
        fail(EXIT_NOT_FOUND if isinstance(exc, api.NotFound) else EXIT_INPUT, str(exc))
    _out(view, as_json, f"{name}: paused")


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def resume(name: str | None, as_json: bool) -> None:
    """Resume dispatch to upstream NAME after a pause (out of credit, auth failure); without
    NAME, every paused upstream."""
    engine = _engine()
    try:
        views = [upstream_ops.resume(engine, name)] if name else upstream_ops.resume_all(engine)
    except api.NotFound as exc:
        fail(EXIT_NOT_FOUND, str(exc))
    lines = [f"{v['name']}: dispatch resumed; window {v['window']['size']:g}/"
             f"{v['window']['max']}, {v['window']['inUse']} in use" for v in views]
    _out(views[0] if name else {"upstreams": views}, as_json, "\n".join(lines))


@main.command()
@click.option("--keep-running/--no-keep-running", default=None,
              help="leave everything up after the demo until Ctrl-C (default: only when run "
                   "from a terminal)")
@click.option("--speed", type=float, default=20.0, help="simulator speed factor")
def demo(keep_running: bool | None, speed: float) -> None:
    """Run the whole system locally on embedded defaults and a small demo batch."""
    from worker.dev.demo import run

    sys.exit(run(speed=speed, keep_running=keep_running))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              add_help_option=False)
@click.pass_context
def sim(ctx: click.Context) -> None:
    """Run the simulated upstream (see `mjflow sim --help`)."""
    sys.exit(sim_main(ctx.args) or 0)


if __name__ == "__main__":
    main()
