"""The simulator's HTTP layer: ``create_app(sim) -> Flask``.

Upstream API routes live under ``/mj`` and, for every profile, under the mode
prefixes ``/mj-fast/mj``, ``/mj-relax/mj`` and ``/mj-turbo/mj`` (the prefix is
recorded as the task's mode). Optional routes are registered only when the
profile has them (else Flask's 404). ``/cdn/attachments/...`` serves signed
image URLs; ``/_sim/...`` is the admin API (:mod:`simulator.admin`).

Cross-cutting request handling happens once, in ``before_request``: request
counting, the dataeyes User-Agent wall, API-key auth, and the ``http_500``
fault. Handlers only parse fields, call the model and render its outcome.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Flask, Response, g, request, send_file

from . import answers
from . import profiles as p
from .admin import admin_blueprint
from .cdn import EXPIRED_BODY
from .images import ImageRecipe
from .inputs import MAX_NOTIFY_HOOK_CHARS, MAX_STATE_CHARS
from .models import Simulator
from .outcomes import Outcome, OutcomeKind, SubmitContext
from .profiles import MISSING_USER_AGENT, HttpAnswer

MODE_PREFIXES = {"mj-fast": "FAST", "mj-relax": "RELAX", "mj-turbo": "TURBO"}
MODE_CHOICES = ",".join(f'"{m}"' for m in MODE_PREFIXES)
ACCOUNT_MODES = frozenset(MODE_PREFIXES.values())
BOT_TYPES = {
    "MID_JOURNEY": "MID_JOURNEY",
    "NIJI_JOURNEY": "NIJI_JOURNEY",
    "mj": "MID_JOURNEY",
    "niji": "NIJI_JOURNEY",
}
UNAUTHENTICATED_ENDPOINTS = frozenset({"mj_image", "cdn"})
ADMIN_PREFIX = "/_sim"


class BadBody(Exception):
    """The request body is not a JSON object (→ HTTP 400 with a code-4 body)."""


def respond(ans: HttpAnswer) -> Response:
    """Turn a canned answer into a Flask response (JSON, text, or empty)."""
    body = answers.with_timestamp(ans.body)
    if body is None:
        resp = Response(b"", status=ans.status)
        if ans.content_type:
            resp.content_type = ans.content_type
        else:
            del resp.headers["Content-Type"]
        return resp
    if isinstance(body, str):
        return Response(
            body, status=ans.status, content_type=ans.content_type or "text/plain; charset=utf-8"
        )
    return Response(
        json.dumps(body, ensure_ascii=False), status=ans.status, content_type="application/json"
    )


def _json_body() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadBody("请求体不是合法的 JSON") from None
    if not isinstance(data, dict):
        raise BadBody("请求体必须是 JSON 对象")
    return data


def _api_key() -> str | None:
    auth = request.headers.get("Authorization", "").strip()
    if auth.lower().startswith("bearer "):
        auth = auth[7:].strip()
    if auth and auth != "midjourney-proxy":
        return auth
    return request.headers.get("mj-api-secret") or None


def _image_response(recipe: ImageRecipe) -> Response:
    """Render (outside the simulator lock) and send; large images stream from disk."""
    data, path = recipe.materialize()
    if path is not None:
        return send_file(path, mimetype=recipe.content_type, conditional=False, max_age=0)
    return Response(data or b"", mimetype=recipe.content_type)


def create_app(sim: Simulator) -> Flask:
    """A Flask app serving ``sim`` with its profile's routes and answers."""
    app = Flask("simulator")
    app.config["SIMULATOR"] = sim
    profile = sim.profile

    def ctx_from(body: dict[str, Any], mode: str | None) -> SubmitContext | Outcome:
        state, hook = body.get("state"), body.get("notifyHook")
        if state is not None and not isinstance(state, str):
            return Outcome(OutcomeKind.INVALID, message="state参数错误")
        if state and len(state) > MAX_STATE_CHARS:
            return Outcome(OutcomeKind.INVALID, message="State参数过长")
        if hook is not None and (not isinstance(hook, str) or len(hook) > MAX_NOTIFY_HOOK_CHARS):
            return Outcome(OutcomeKind.INVALID, message="notifyHook参数错误")
        bot = body.get("botType")
        if bot is not None and bot not in BOT_TYPES:
            return Outcome(OutcomeKind.INVALID, message="botType参数错误")
        run_mode = MODE_PREFIXES.get(mode or "")
        filt = body.get("accountFilter")
        if run_mode is None and isinstance(filt, dict) and isinstance(filt.get("modes"), list):
            run_mode = next((m for m in filt["modes"] if m in ACCOUNT_MODES), None)
        return SubmitContext(
            mode=run_mode,
            state=state,
            notify_hook=hook,
            bot_type=BOT_TYPES.get(bot) if bot else None,
        )

    def submit(fn: Any) -> Any:
        """Wrap a submit handler: parse body + context, apply hung_submit, render."""

        def view(mode: str | None = None) -> Response:
            body = _json_body()
            sim.record_body(fn.__name__, body)
            ctx = ctx_from(body, mode)
            out = ctx if isinstance(ctx, Outcome) else fn(body, ctx)
            hung_ms = sim.roll_hung_submit_ms()
            if hung_ms:
                time.sleep(hung_ms / 1000)
            return respond(answers.render_outcome(profile, out))

        view.__name__ = fn.__name__
        return view

    def add(rule: str, endpoint: str, view: Any, methods: list[str]) -> None:
        app.add_url_rule(f"/mj{rule}", endpoint, view, methods=methods, defaults={"mode": None})
        app.add_url_rule(f"/<any({MODE_CHOICES}):mode>/mj{rule}", endpoint, view, methods=methods)

    def has(route: str) -> bool:
        return route in profile.routes

    # --------------------------------------------------------------- hooks
    @app.before_request
    def _gate() -> Response | None:
        endpoint = request.url_rule.endpoint if request.url_rule else "unknown"
        sim.request_started(endpoint)
        g.sim_counted = True
        if request.path.startswith(ADMIN_PREFIX):
            return None
        if profile.requires_user_agent and not request.headers.get("User-Agent"):
            return respond(MISSING_USER_AGENT)
        if request.url_rule is None:
            return None
        if endpoint not in UNAUTHENTICATED_ENDPOINTS and not sim.check_key(_api_key()):
            return respond(profile.auth_failure)
        if sim.roll_http_500(endpoint):
            ans = profile.http_500
            if isinstance(ans.body, dict) and "path" in ans.body:
                ans = HttpAnswer(ans.status, {**ans.body, "path": request.path}, ans.content_type)
            return respond(ans)
        return None

    @app.teardown_request
    def _done(_exc: BaseException | None) -> None:
        if g.pop("sim_counted", False):
            sim.request_finished()

    @app.errorhandler(BadBody)
    def _bad_body(exc: BadBody) -> Response:
        return respond(answers.validation_error(profile, str(exc)))

    # --------------------------------------------------------------- submits
    def imagine(body: dict, ctx: SubmitContext) -> Outcome:
        arr = body.get("base64Array")
        if arr is None and body.get("base64"):
            arr = [body["base64"]]
        return sim.imagine(body.get("prompt"), ctx, base64_array=arr)

    def action(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.action(
            body.get("taskId"),
            body.get("customId"),
            ctx,
            enable_remix=body.get("enableRemix") is True,
        )

    def modal(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.modal(body.get("taskId"), body.get("prompt"), body.get("maskBase64"))

    def blend(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.blend(body.get("base64Array"), body.get("dimensions"), ctx)

    def describe(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.describe(body.get("base64"), body.get("link"), ctx)

    def shorten(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.shorten(body.get("prompt"), ctx)

    def change(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.change(body.get("taskId"), body.get("action"), body.get("index"), ctx)

    def simple_change(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.simple_change(body.get("content"), ctx)

    def swap_face(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.swap_face(
            body.get("sourceBase64") or body.get("sourceUrl"),
            body.get("targetBase64") or body.get("targetUrl"),
            ctx,
        )

    def upload(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.upload(body.get("base64Array"))

    def video(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.video(body, ctx)

    def edits(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.edits(body, ctx)

    def retexture(body: dict, ctx: SubmitContext) -> Outcome:
        return sim.edits(body, ctx, retexture=True)

    add("/submit/imagine", "submit_imagine", submit(imagine), ["POST"])
    optional = (
        (p.ROUTE_ACTION, "/submit/action", "submit_action", action),
        (p.ROUTE_MODAL, "/submit/modal", "submit_modal", modal),
        (p.ROUTE_VIDEO, "/submit/video", "submit_video", video),
        (p.ROUTE_EDITS, "/submit/edits", "submit_edits", edits),
        (p.ROUTE_RETEXTURE, "/submit/retexture", "submit_retexture", retexture),
        (p.ROUTE_BLEND, "/submit/blend", "submit_blend", blend),
        (p.ROUTE_DESCRIBE, "/submit/describe", "submit_describe", describe),
        (p.ROUTE_SHORTEN, "/submit/shorten", "submit_shorten", shorten),
        (p.ROUTE_CHANGE, "/submit/change", "submit_change", change),
        (p.ROUTE_SIMPLE_CHANGE, "/submit/simple-change", "submit_simple_change", simple_change),
        (p.ROUTE_SWAP_FACE, "/insight-face/swap", "insight_face_swap", swap_face),
        (p.ROUTE_UPLOAD, "/submit/upload-discord-images", "submit_upload", upload),
    )
    for route, rule, endpoint, fn in optional:
        if has(route):
            add(rule, endpoint, submit(fn), ["POST"])
    if has(p.ROUTE_EDITS) and profile.task_shape == "trueai":  # trueai's alias; not new-api
        add("/submit/edit", "submit_edit", submit(edits), ["POST"])

    # --------------------------------------------------------------- queries
    def fetch(task_id: str, mode: str | None = None) -> Response:
        view = sim.view(task_id)
        if view is None:
            return respond(profile.unknown_fetch)
        return respond(HttpAnswer(200, view))

    def list_by_condition(mode: str | None = None) -> Response:
        ids = _json_body().get("ids")
        ids = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
        return respond(HttpAnswer(200, sim.views(ids)))

    def task_list(mode: str | None = None) -> Response:
        return respond(HttpAnswer(200, sim.recent(profile.task_list_limit)))

    def cancel(task_id: str, mode: str | None = None) -> Response:
        if not sim.cancel(task_id):
            return respond(answers.not_found(profile, "任务不存在"))
        return respond(HttpAnswer(200, None))

    def image_seed(task_id: str, mode: str | None = None) -> Response:
        status, seed = sim.image_seed(task_id)
        if status == "not_found":
            return respond(answers.not_found(profile))
        if status == "no_hash":
            return respond(
                HttpAnswer(
                    400,
                    {
                        "code": 4,
                        "description": "任务未完成，没有 seed",
                        "result": None,
                        "properties": {},
                    },
                )
            )
        return respond(
            HttpAnswer(200, {"code": 1, "description": "成功", "result": seed, "properties": {}})
        )

    def mj_image(task_id: str, mode: str | None = None) -> Response:
        try:
            payload = sim.task_image(task_id)
        except PermissionError as exc:
            return respond(HttpAnswer(404, {"error": str(exc)}))
        if payload is None:
            return respond(HttpAnswer(400, {"error": "midjourney_task_not_found"}))
        return _image_response(payload)

    add("/task/<task_id>/fetch", "task_fetch", fetch, ["GET"])
    if has(p.ROUTE_LIST_BY_CONDITION):
        add("/task/list-by-condition", "task_list_by_condition", list_by_condition, ["POST"])
        add("/task/list-by-ids", "task_list_by_condition", list_by_condition, ["POST"])
    if has(p.ROUTE_TASK_LIST):
        add("/task/list", "task_list", task_list, ["GET"])
    if has(p.ROUTE_CANCEL):
        add("/task/<task_id>/cancel", "task_cancel", cancel, ["POST"])
    if has(p.ROUTE_IMAGE_SEED):
        add("/task/<task_id>/image-seed", "task_image_seed", image_seed, ["GET"])
    if has(p.ROUTE_IMAGE):
        add("/image/<task_id>", "mj_image", mj_image, ["GET"])

    @app.get("/cdn/attachments/<key>/<name>", endpoint="cdn")
    def cdn(key: str, name: str) -> Response:
        a = request.args
        payload = sim.cdn_image(key, name, a.get("ex", ""), a.get("is", ""), a.get("hm", ""))
        if payload is None:
            return Response(EXPIRED_BODY, status=404, content_type="text/plain; charset=utf-8")
        return _image_response(payload)

    app.register_blueprint(admin_blueprint(sim))
    return app
