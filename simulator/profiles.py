"""The simulated upstream profiles, as data.

Each profile is one frozen :class:`Profile`. Behaviour that differs between
upstreams (answer codes, HTTP statuses, error envelopes, task JSON shape,
callbacks, optional routes) is a field here, never an ``if profile == ...``
chain elsewhere. Sources: ``/work/shared/reference/upstream-midjourney-proxy.md``
(§1, §2, §3, §4), ``upstream-gateways.md`` (§1-§5) and the provider seed docs.

Profiles
--------
``midjourney-proxy``
    novicezk [J] plus the "plus" features: queue full = 23 with ``result: null``,
    unknown fetch = HTTP 200 empty body, bad key = 401 empty body.
``trueai``
    trueai-org [T] HEAD: queue full = 9, unknown fetch = 204, missing parent in
    /action,/modal,/image-seed = HTTP 404 + code 3, bad key = 403 ``未登录``,
    ``{"success":false,"code":-1,...}`` envelope for logic errors, task list,
    cancel, image-seed, face swap, upload-discord-images; no /change.
``newapi``
    a new-api reseller (seed 000): deletes notifyHook, serves fetch from its own
    DB refreshed every 15 s (scaled by speed), rewrites 21/22 to 1 (except
    Inpaint/CustomZoom modals), rewrites imageUrl to ``{base}/mj/image/{id}``,
    MJ-style ``{"description","type","code"}`` 400s and OpenAI-style 401s.
``uniapi``
    UniAPI (seed 001): a trueai-like upstream exposing /mj-fast, /mj-relax,
    /mj-turbo; queue full = 23 *with* a result id; honours notifyHook; has
    /change and /simple-change.
``novicezk``
    the open-source novicezk build v2.6.x: no ``buttons`` in the task JSON, no
    /action, /modal, /shorten, upload, seed or cancel; U1-U4/V1-V4/reroll through
    /change and /simple-change.

trueai also has ``/submit/video`` (+ extend), ``/submit/edits`` (alias ``/edit``) and
``/submit/retexture``, Animate buttons on upscales, the V8 button set for ``--v 8``
prompts, and ``imageUrls`` (four full-size images) on grids; newapi relays video and
edits (not retexture), names edits ``EDITS`` and refuses the Animate/Extend buttons as
``unknown_action`` (``upstream-video-edits.md``).

``dataeyes``
    DataEyes (seed 002): User-Agent mandatory (else 403 ``error code: 1010``),
    placeholder ``www.yourdomain.com/mj/image/{id}`` imageUrl, bytes only via
    ``GET /mj/image/{id}``, no list-by-condition, no callbacks, 21 = "任务已存在"
    for a repeated identical action, queued answers are code 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_PROFILE = "midjourney-proxy"

# Optional routes (the always-present ones are imagine and fetch).
ROUTE_ACTION = "action"
ROUTE_MODAL = "modal"
ROUTE_VIDEO = "video"
ROUTE_EDITS = "edits"
ROUTE_RETEXTURE = "retexture"
ROUTE_BLEND = "blend"
ROUTE_DESCRIBE = "describe"
ROUTE_SHORTEN = "shorten"
ROUTE_CHANGE = "change"
ROUTE_SIMPLE_CHANGE = "simple_change"
ROUTE_SWAP_FACE = "swap_face"
ROUTE_UPLOAD = "upload"
ROUTE_LIST_BY_CONDITION = "list_by_condition"
ROUTE_TASK_LIST = "task_list"
ROUTE_CANCEL = "cancel"
ROUTE_IMAGE_SEED = "image_seed"
ROUTE_IMAGE = "image"

TaskShape = Literal["proxy", "trueai", "gateway"]
ImageUrlStyle = Literal["cdn", "gateway", "placeholder"]
DescriptionStyle = Literal["command", "submit_success", "accepted"]


@dataclass(frozen=True)
class HttpAnswer:
    """A canned HTTP answer: ``body`` dict/list → JSON, str → text/plain, None → empty.

    A dict body holding ``"timestamp": None`` gets the current time filled in.
    """

    status: int
    body: Any = None
    content_type: str | None = None


OPENAI_BAD_KEY = HttpAnswer(
    401, {"error": {"message": "无效的令牌", "type": "new_api_error", "code": ""}}
)
TRUEAI_ENVELOPE_FAIL: dict[str, Any] = {
    "success": False,
    "code": -1,
    "message": "",
    "timestamp": None,
}


def trueai_envelope(message: str) -> dict[str, Any]:
    """trueai's ``Result`` envelope for logic errors (``CustomLogicExceptionFilterAttribute``)."""
    return {**TRUEAI_ENVELOPE_FAIL, "message": message}


@dataclass(frozen=True)
class Profile:
    """Everything that differs between simulated upstreams."""

    name: str
    summary: str
    # --- submit answers -------------------------------------------------------------
    queue_full_code: int = 23
    queue_full_description: str = "队列已满，请稍后尝试"
    queue_full_keeps_task: bool = False  # answer carries a result id (task stored as FAILURE)
    queued_code: int = 22
    queued_description: str = "排队中，前面还有{n}个任务"
    rewrite_modal_to_success: bool = False  # new-api: 21 → 1 except Inpaint / CustomZoom
    existed_on_repeat_action: bool = False  # dataeyes: same parent+customId → 21 + existing id
    missing_parent_status: int = 200  # HTTP status with code 3 for a missing parent
    balance_answer: HttpAnswer = HttpAnswer(
        200, {"code": 25, "description": "余额不足", "result": None, "properties": {}}
    )
    auth_failure: HttpAnswer = HttpAnswer(401, None)
    unknown_fetch: HttpAnswer = HttpAnswer(200, None)
    http_500: HttpAnswer = HttpAnswer(
        500,
        {"timestamp": None, "status": 500, "error": "Internal Server Error", "path": ""},
    )
    gateway_errors: bool = False  # new-api's own 400 checks (task_no_found, not_success)
    requires_user_agent: bool = False
    channel_id_property: bool = False  # also answer ``discordChannelId``
    # --- task store and callbacks -----------------------------------------------------
    strips_notify_hook: bool = False
    sends_callbacks: bool = True
    gateway_refresh_s: float | None = None  # new-api poll interval (divided by speed)
    gateway_timeout_s: float | None = None  # new-api forced FAILURE age (divided by speed)
    # --- task JSON ---------------------------------------------------------------------
    task_shape: TaskShape = "proxy"
    description_style: DescriptionStyle = "command"
    image_url_style: ImageUrlStyle = "cdn"
    placeholder_host: str = "www.yourdomain.com"
    times_zero: bool = False  # 0 instead of null before start/finish
    fill_blank_on_success: bool = False  # trueai FinishTask: failReason "" and state ""
    # --- routes ------------------------------------------------------------------------
    routes: frozenset[str] = field(default_factory=frozenset)
    task_list_limit: int | None = None
    # --- newer surface -------------------------------------------------------------------
    buttons_in_json: bool = True  # novicezk: the task JSON has no ``buttons``
    animate_buttons: bool = False  # Animate (High/Low motion) after an image upscale
    gateway_refuses_video_buttons: bool = False  # new-api: unknown_action before upstream
    full_size_urls: bool = False  # trueai: ``imageUrls`` = the four images of a grid
    action_names: dict[str, str] = field(default_factory=dict)  # new-api: EDIT → EDITS


_COMMON_ROUTES = frozenset({ROUTE_BLEND, ROUTE_DESCRIBE, ROUTE_SHORTEN, ROUTE_ACTION,
                            ROUTE_MODAL})

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="midjourney-proxy",
            summary="novicezk midjourney-proxy (+plus): 23 queue full, empty 200 on unknown fetch",
            routes=_COMMON_ROUTES
            | {
                ROUTE_CHANGE,
                ROUTE_SIMPLE_CHANGE,
                ROUTE_SWAP_FACE,
                ROUTE_LIST_BY_CONDITION,
                ROUTE_TASK_LIST,
                ROUTE_IMAGE_SEED,
            },
        ),
        Profile(
            name="trueai",
            summary="trueai-org midjourney-proxy: 9 queue full, 204 unknown fetch, 404 parents",
            queue_full_code=9,
            queue_full_description="提交失败，队列已满，请稍后重试",
            missing_parent_status=404,
            balance_answer=HttpAnswer(200, trueai_envelope("余额不足")),
            auth_failure=HttpAnswer(403, "未登录", "text/plain; charset=utf-8"),
            unknown_fetch=HttpAnswer(204, None),
            http_500=HttpAnswer(500, trueai_envelope("操作失败")),
            channel_id_property=True,
            task_shape="trueai",
            description_style="submit_success",
            fill_blank_on_success=True,
            routes=_COMMON_ROUTES
            | {
                ROUTE_SWAP_FACE,
                ROUTE_UPLOAD,
                ROUTE_LIST_BY_CONDITION,
                ROUTE_TASK_LIST,
                ROUTE_CANCEL,
                ROUTE_IMAGE_SEED,
                ROUTE_VIDEO,
                ROUTE_EDITS,
                ROUTE_RETEXTURE,
            },
            task_list_limit=100,
            animate_buttons=True,
            full_size_urls=True,
        ),
        Profile(
            name="newapi",
            summary="new-api reseller: no callbacks, 15 s stale fetch, /mj/image rewrite",
            queued_code=1,
            rewrite_modal_to_success=True,
            balance_answer=HttpAnswer(
                400, {"description": "quota_not_enough ", "type": "upstream_error", "code": 4}
            ),
            auth_failure=OPENAI_BAD_KEY,
            unknown_fetch=HttpAnswer(
                400, {"description": "task_no_found ", "type": "upstream_error", "code": 4}
            ),
            http_500=HttpAnswer(
                500, {"error": {"message": "internal error", "type": "new_api_error", "code": ""}}
            ),
            gateway_errors=True,
            strips_notify_hook=True,
            sends_callbacks=False,
            gateway_refresh_s=15.0,
            gateway_timeout_s=3600.0,
            task_shape="gateway",
            description_style="accepted",
            image_url_style="gateway",
            times_zero=True,
            routes=_COMMON_ROUTES
            | {
                ROUTE_CHANGE,
                ROUTE_SWAP_FACE,
                ROUTE_UPLOAD,
                ROUTE_LIST_BY_CONDITION,
                ROUTE_IMAGE_SEED,
                ROUTE_IMAGE,
                ROUTE_VIDEO,
                ROUTE_EDITS,
            },
            animate_buttons=True,  # relayed from the upstream's task...
            gateway_refuses_video_buttons=True,  # ...but refused when clicked
            action_names={"EDIT": "EDITS"},
        ),
        Profile(
            name="uniapi",
            summary="UniAPI: /mj-fast|relax|turbo prefixes, 23 queue full with id, callbacks",
            queue_full_description="队列已满,请稍后尝试",
            queue_full_keeps_task=True,
            queued_description="排队中,前面还有{n}个任务",
            auth_failure=HttpAnswer(
                401, {"error": {"message": "无效的令牌", "type": "uniapi_error", "code": ""}}
            ),
            channel_id_property=True,
            task_shape="trueai",
            description_style="submit_success",
            fill_blank_on_success=True,
            routes=_COMMON_ROUTES
            | {
                ROUTE_CHANGE,
                ROUTE_SIMPLE_CHANGE,
                ROUTE_SWAP_FACE,
                ROUTE_UPLOAD,
                ROUTE_LIST_BY_CONDITION,
                ROUTE_IMAGE_SEED,
            },
        ),
        Profile(
            name="dataeyes",
            summary="DataEyes: User-Agent required, placeholder imageUrl, /mj/image bytes",
            queued_code=1,
            queued_description="排队中,前面还有{n}个任务",
            existed_on_repeat_action=True,
            auth_failure=OPENAI_BAD_KEY,
            http_500=HttpAnswer(500, "error code: 500", "text/plain; charset=utf-8"),
            requires_user_agent=True,
            channel_id_property=True,
            strips_notify_hook=True,
            sends_callbacks=False,
            task_shape="gateway",
            description_style="accepted",
            image_url_style="placeholder",
            times_zero=True,
            routes=_COMMON_ROUTES | {ROUTE_IMAGE},
        ),
        Profile(
            name="novicezk",
            summary="novicezk open-source v2.6: no buttons, follow-ups via /change",
            routes=frozenset(
                {
                    ROUTE_BLEND,
                    ROUTE_DESCRIBE,
                    ROUTE_CHANGE,
                    ROUTE_SIMPLE_CHANGE,
                    ROUTE_LIST_BY_CONDITION,
                    ROUTE_TASK_LIST,
                }
            ),
            buttons_in_json=False,
        ),
    )
}

MISSING_USER_AGENT = HttpAnswer(403, "error code: 1010", "text/plain; charset=utf-8")


def get_profile(name: str | Profile) -> Profile:
    """Return the named profile (or the profile itself); ``KeyError`` lists the valid names."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
