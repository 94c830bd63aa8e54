"""``mjflow submit`` (one job, any root action) and ``mjflow act`` (a follow-up added to an
existing job later), thin over :mod:`worker.api`.

Local files become data URLs: ``--image FILE`` goes where the action takes its images
(image prompts for IMAGINE, the images of BLEND and UPLOAD, the picture of DESCRIBE, EDITS
and RETEXTURE, the first and last frame of VIDEO, source then target of SWAP_FACE);
``--sref/--oref/--cref FILE`` are appended to the prompt and uploaded before the submit.
``--spec FILE`` (or ``-`` for stdin) gives a whole JSON spec; the options given override it.
"""
from __future__ import annotations

import base64
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

import click

from worker import api
from worker.cli_support import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    _engine,
    _out,
    fail,
    job_exit,
    job_images,
    job_line,
    wait_for_job,
    warn_if_no_callbacks,
)

ACTIONS = ["IMAGINE", "BLEND", "DESCRIBE", "SHORTEN", "SWAP_FACE", "UPLOAD", "ACTION", "VIDEO",
           "EDITS", "RETEXTURE"]
#: where each action takes the --image files (in order)
IMAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "IMAGINE": ("base64Array[]",), "BLEND": ("base64Array[]",), "UPLOAD": ("base64Array[]",),
    "DESCRIBE": ("base64",), "EDITS": ("image",), "RETEXTURE": ("image",),
    "VIDEO": ("image", "endImage"), "SWAP_FACE": ("sourceBase64", "targetBase64"),
}


def data_url(path: Path) -> str:
    """A local image as a ``data:image/...;base64,`` URL."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(EXIT_INPUT, f"cannot read {path}: {exc}")
    kind = mimetypes.guess_type(path.name)[0] or "image/png"
    if not kind.startswith("image/"):
        fail(EXIT_INPUT, f"{path}: not an image file ({kind})")
    return f"data:{kind};base64,{base64.b64encode(raw).decode()}"


def read_spec(source: str | None) -> dict[str, Any]:
    if source is None:
        return {}
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        spec = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(EXIT_INPUT, f"cannot read the spec {source}: {exc}")
    if not isinstance(spec, dict):
        fail(EXIT_INPUT, f"the spec {source} must be a JSON object")
    return spec


def place_images(spec: dict[str, Any], action: str, files: tuple[Path, ...]) -> None:
    fields = IMAGE_FIELDS.get(action)
    if not files:
        return
    if fields is None:
        fail(EXIT_INPUT, f"--image: action {action} takes no images")
    urls = [data_url(f) for f in files]
    if fields == ("base64Array[]",):
        spec["base64Array"] = list(spec.get("base64Array") or []) + urls
        return
    if len(urls) > len(fields):
        fail(EXIT_INPUT, f"--image: action {action} takes at most {len(fields)} image(s) "
                         f"({', '.join(fields)})")
    spec.update(zip(fields, urls))


def build_spec(prompt: str | None, opts: dict[str, Any]) -> dict[str, Any]:
    """The job spec from ``--spec`` and the options (options win)."""
    spec = read_spec(opts["spec_file"])
    if prompt:
        spec["prompt"] = prompt
    action = opts["action"] or spec.get("action") or "IMAGINE"
    if opts["action"]:
        spec["action"] = action
    refs = [f"--{kind} {data_url(f)}" for kind in ("sref", "oref", "cref")
            for f in opts[kind]]
    if refs:
        spec["prompt"] = " ".join([spec.get("prompt") or "", *refs]).strip()
    place_images(spec, action, opts["images"])
    simple = {"mode": opts["mode"], "botType": opts["bot_type"], "callbackUrl": opts["callback_url"],
              "taskId": opts["task_id"], "button": opts["button"]}
    spec.update({k: v for k, v in simple.items() if v})
    if opts["then"]:
        spec["then"] = list(opts["then"])
    if opts["seed"]:
        spec["seed"] = True
    if opts["split_grid"]:
        spec["splitGrid"] = True
    if opts["priority"] is not None:
        spec["priority"] = opts["priority"]
    return spec


def finish(engine, view: dict[str, Any], wait: bool, timeout_s: float, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    view.pop("replayed", None)
    if not wait:
        _out(view, as_json, view["id"])
        return
    try:
        view = wait_for_job(engine, view["id"], timeout_s, quiet=as_json)
    except KeyboardInterrupt:
        fail(EXIT_INTERRUPTED, f"interrupted; job {view['id']} goes on in the workers")
    extra = [f"  {s['label']}: {u}" for s in view["steps"] for u in s.get("uploads") or []]
    extra += [f"  {s['label']} seed: {s['seed']}" for s in view["steps"] if s.get("seed")]
    extra += [f"  {s['label']}: {s['failReason']}" for s in view["steps"] if s["failReason"]]
    _out(view, as_json, "\n".join([job_line(view), *job_images(view), *extra]))
    sys.exit(job_exit(view))


@click.command()
@click.argument("prompt", required=False)
@click.option("--action", type=click.Choice(ACTIONS, case_sensitive=False),
              callback=lambda _c, _p, v: v.upper() if v else v, help="root action (IMAGINE)")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a local image, sent as a data URL where the action takes images (repeatable)")
@click.option("--sref", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a local style reference: uploaded, its URL put after --sref (repeatable)")
@click.option("--oref", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a local omni reference (uploaded, as --sref)")
@click.option("--cref", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a local character reference (uploaded, as --sref)")
@click.option("--task-id", help="ACTION: the upstream task whose button to click")
@click.option("--button", help="ACTION: the button (U3, 'Vary (Subtle)', ...)")
@click.option("--then", "then", multiple=True, help="follow-up button (U1, V2, 'Zoom Out 2x'...)")
@click.option("--bot-type", type=click.Choice(["MID_JOURNEY", "NIJI_JOURNEY"]))
@click.option("--mode", type=click.Choice(["FAST", "RELAX", "TURBO"]))
@click.option("--seed", is_flag=True, help="fetch the image seed of every step")
@click.option("--spec", "spec_file", help="a JSON job spec file, or - for stdin")
@click.option("--split-grid", is_flag=True)
@click.option("--callback-url")
@click.option("--priority", type=click.IntRange(0, 9), default=None)
@click.option("--idempotency-key", help="the same key and spec give the same job")
@click.option("--wait", is_flag=True, help="show progress until the job finishes")
@click.option("--timeout", "timeout_s", type=float, default=1800.0)
@click.option("--json", "as_json", is_flag=True)
def submit(prompt: str | None, idempotency_key: str | None, wait: bool, timeout_s: float,
           as_json: bool, **opts: Any) -> None:
    """Submit one job (any action, with follow-ups) and print its id."""
    spec = build_spec(prompt, opts)
    engine = _engine()
    warn_if_no_callbacks(engine)
    try:
        view = api.create_job(engine, spec, idempotency_key=idempotency_key)
    except (api.SpecError, api.Conflict) as exc:
        fail(EXIT_INPUT, str(exc))
    finish(engine, view, wait, timeout_s, as_json)


@click.command()
@click.argument("job_id")
@click.argument("step")
@click.argument("button")
@click.option("--then", "then", multiple=True, help="its own follow-ups (repeatable)")
@click.option("--prompt", help="for a button that opens a modal (Custom Zoom, remix)")
@click.option("--seed", is_flag=True, help="fetch the new step's image seed")
@click.option("--wait", is_flag=True, help="show progress until the job finishes again")
@click.option("--timeout", "timeout_s", type=float, default=1800.0)
@click.option("--json", "as_json", is_flag=True)
def act(job_id: str, step: str, button: str, then: tuple[str, ...], prompt: str | None,
        seed: bool, wait: bool, timeout_s: float, as_json: bool) -> None:
    """Add a follow-up to STEP (its id, its label, or root) of an existing job, even one
    that finished long ago: `mjflow act job_... IMAGINE U3`."""
    body: dict[str, Any] = {"step": step, "button": button, "then": list(then)}
    if prompt:
        body["prompt"] = prompt
    if seed:
        body["seed"] = True
    engine = _engine()
    try:
        view = api.add_steps(engine, job_id, body)
    except api.NotFound as exc:
        fail(4, str(exc))
    except (api.SpecError, api.Conflict) as exc:
        fail(EXIT_INPUT, str(exc))
    finish(engine, view, wait, timeout_s, as_json)
