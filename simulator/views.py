"""Task JSON as each profile serialises it (camelCase, nulls included).

* ``upstream_view``: what midjourney-proxy / trueai / uniapi answer (and post to
  notifyHook). imageUrl is a signed CDN URL: a preview while IN_PROGRESS, the
  final image on SUCCESS.
* ``gateway_view``: the trimmed new-api DTO (reference §3.4, gateways §5), built
  from an upstream view: ``customId``/``botType``/``maskBase64`` empty,
  properties cut to ``{finalPrompt, finalZhPrompt}``, times 0 instead of null,
  imageUrl rewritten to ``{base}/mj/image/{id}`` (newapi) or the placeholder
  host (dataeyes).
"""

from __future__ import annotations

import re
import time
from typing import Any

from .cdn import UrlSigner
from .profiles import Profile
from .tasks import SimTask, Status

PREVIEW_PREFIX = "preview_"
GATEWAY_FAILURE_PROGRESS = "100%"  # new-api's refund sets failed rows to 100 %


def _slug(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text.lower())[:6]
    return "_".join(words) or "image"


VIDEO_KINDS = frozenset({"video", "video_clip"})


def final_image_name(task: SimTask) -> str:
    job = task.properties.get("messageHash") or task.id
    if task.produces in VIDEO_KINDS:  # on Discord the attachment is the MP4 itself
        return f"simuser_{_slug(task.prompt)}_{job}_0.mp4"
    return f"simuser_{_slug(task.prompt)}_{job}.png"


def preview_image_name(task: SimTask) -> str:
    return f"{PREVIEW_PREFIX}{task.progress.rstrip('%') or '0'}.png"


def image_url(task: SimTask, base: str, signer: UrlSigner, now_ms: int) -> str | None:
    """Signed CDN URL of the task's current image, or ``None`` if it has none yet."""
    if not task.has_image or task.image is None:
        return None
    name = final_image_name(task) if task.status == Status.SUCCESS else preview_image_name(task)
    return signer.sign(base, task.id, name, now_ms)


def _description(task: SimTask, profile: Profile) -> str:
    if profile.description_style == "submit_success":
        return "Submit success"
    return task.description


def upstream_view(
    task: SimTask, profile: Profile, base: str, signer: UrlSigner, now_ms: int
) -> dict[str, Any]:
    """The upstream task JSON (midjourney-proxy shape, trueai extras when configured)."""
    success = task.status == Status.SUCCESS
    fill = profile.fill_blank_on_success and success
    view: dict[str, Any] = {
        "id": task.id,
        "action": task.action,
        "customId": task.custom_id,
        "botType": task.bot_type,
        "prompt": task.prompt,
        "promptEn": task.prompt_en,
        "description": _description(task, profile),
        "state": "" if fill and task.state is None else task.state,
        "submitTime": task.submit_time_ms,
        "startTime": task.start_time_ms,
        "finishTime": task.finish_time_ms,
        "imageUrl": image_url(task, base, signer, now_ms),
        "status": task.status.value,
        "progress": task.progress,
        "failReason": "" if fill and task.fail_reason is None else task.fail_reason,
        "buttons": list(task.buttons),
        "properties": dict(task.properties),
    }
    if profile.task_shape == "trueai":
        view["mode"] = task.mode
        view["parentId"] = task.parent_id
        view["imageUrls"] = None
        if success and profile.full_size_urls and task.produces == "grid" and task.image:
            view["imageUrls"] = [
                {"url": signer.sign(base, task.id, f"full_{n}.png", now_ms), "thumbnail": None}
                for n in range(1, 5)
            ]
    if profile.task_shape in ("trueai", "gateway"):
        view.update(_video_fields(task, view["imageUrl"] if success else None, base, signer, now_ms))
    if not profile.buttons_in_json:
        del view["buttons"]
    return view


def _video_fields(
    task: SimTask, final_url: str | None, base: str, signer: UrlSigner, now_ms: int
) -> dict[str, Any]:
    """``videoUrl``/``videoUrls`` of a finished video (trueai with its CDN fill)."""
    if task.produces not in VIDEO_KINDS or final_url is None:
        return {"videoUrl": None, "videoUrls": None}
    clips = [
        {
            "url": signer.sign(base, task.id, f"clip_{n}.mp4", now_ms),
            "thumbnail": signer.sign(base, task.id, f"thumb_{n}.png", now_ms),
        }
        for n in range(1, max(1, task.clips) + 1)
    ]
    return {"videoUrl": final_url, "videoUrls": clips}


def initial_gateway_row(task: SimTask) -> dict[str, Any]:
    """new-api's own row before its first poll of upstream (gateways §5)."""
    return {
        "id": task.id,
        "action": task.action,
        "prompt": task.prompt,
        "promptEn": "",
        "state": task.state,
        "submitTime": task.gateway_submit_ms,
        "startTime": 0,
        "finishTime": 0,
        "imageUrl": "",
        "status": "",
        "progress": "0%",
        "failReason": "",
        "buttons": None,
        "properties": None,
    }


def gateway_view(
    row: dict[str, Any], task: SimTask, profile: Profile, base: str, now_ns: int | None = None
) -> dict[str, Any]:
    """Trim an upstream view (or an initial row) to the new-api DTO."""
    props = row.get("properties")
    upstream_url = row.get("imageUrl") or ""
    status = row.get("status") or ""
    if upstream_url:
        if profile.image_url_style == "placeholder":
            url = f"{profile.placeholder_host}/mj/image/{task.id}"
        else:
            url = f"{base.rstrip('/')}/mj/image/{task.id}"
            if status != Status.SUCCESS.value:
                url += f"?rand={now_ns or time.time_ns()}"
    else:
        url = ""
    progress = row.get("progress") or ""
    if status == Status.FAILURE.value and profile.gateway_refresh_s is not None:
        progress = GATEWAY_FAILURE_PROGRESS
    action = row.get("action") or task.action
    clips = [{"url": c["url"]} for c in row.get("videoUrls") or [] if c.get("url")]
    return {
        "id": task.id,
        "action": profile.action_names.get(action, action),
        "customId": "",
        "botType": "",
        "prompt": row.get("prompt") or task.prompt,
        "promptEn": row.get("promptEn") or "",
        "description": task.gateway_description or "提交成功",
        "state": row.get("state") or "",
        "submitTime": row.get("submitTime") or 0,
        "startTime": row.get("startTime") or 0,
        "finishTime": row.get("finishTime") or 0,
        "imageUrl": url,
        "videoUrl": row.get("videoUrl") or "",
        "videoUrls": clips or None,
        "status": status,
        "progress": progress,
        "failReason": row.get("failReason") or "",
        "buttons": row.get("buttons"),
        "maskBase64": "",
        "properties": None
        if props is None
        else {"finalPrompt": props.get("finalPrompt", ""), "finalZhPrompt": ""},
    }
