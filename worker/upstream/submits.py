"""The typed submit methods of ``UpstreamClient`` (one per midjourney-proxy submit).

Each builds the camelCase body its endpoint takes, refuses obviously invalid input
locally (``REJECTED``, nothing sent) and hands the body to ``submit(name, payload)``,
which adds state, notifyHook and the speed mode, sends once and classifies the answer.
``None`` arguments are omitted from the body.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.upstream.outcomes import Answer, Outcome

BLEND_DIMENSIONS = frozenset({"PORTRAIT", "SQUARE", "LANDSCAPE"})
CHANGE_ACTIONS = frozenset({"UPSCALE", "VARIATION", "REROLL"})
#: a job's root action -> the submit endpoint and the spec fields its body takes
ROOT_REQUESTS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "IMAGINE": ("imagine", ("prompt", "base64Array", "botType", "accountFilter")),
    "BLEND": ("blend", ("base64Array", "dimensions", "botType", "accountFilter")),
    "DESCRIBE": ("describe", ("base64", "link", "botType", "language", "accountFilter")),
    "SHORTEN": ("shorten", ("prompt", "botType", "accountFilter")),
    "SWAP_FACE": ("swap-face", ("sourceBase64", "targetBase64", "sourceUrl", "targetUrl",
                                "accountFilter")),
    "VIDEO": ("video", ("prompt", "image", "endImage", "motion", "loop", "videoType",
                        "batchSize")),
    "EDITS": ("edits", ("prompt", "image", "accountFilter")),
    "RETEXTURE": ("retexture", ("prompt", "image", "accountFilter")),
    "UPLOAD": ("upload-discord-images", ("base64Array",)),
}
#: the keys seed 000 lists for upload-discord-images' ``filter``
UPLOAD_FILTER_KEYS = ("channelId", "instanceId", "remark")
Request = tuple[str, dict[str, Any]]       # (endpoint name, body without state/notifyHook)


def root_request(action: str, spec: Mapping[str, Any], *,
                 upload_filter_field: str = "accountFilter") -> Request:
    """The submit for a job's first step, from the job spec (camelCase, as the seeds name
    the fields); fields the endpoint does not take are left out. ``upload_filter_field``
    is what the profile calls the account filter of upload-discord-images."""
    path, fields = ROOT_REQUESTS[action]
    body = {f: spec[f] for f in fields if spec.get(f) is not None}
    if action == "BLEND":
        body.setdefault("dimensions", "SQUARE")
    if action == "UPLOAD" and spec.get("accountFilter"):
        body.update(upload_filter(spec["accountFilter"], upload_filter_field))
    return path, body


def upload_filter(account_filter: Mapping[str, Any], field: str) -> dict[str, Any]:
    """The account filter of an upload, under the profile's name for it (seed 000's
    ``filter`` takes channelId, instanceId and remark only)."""
    if field == "filter":
        picked = {k: account_filter[k] for k in UPLOAD_FILTER_KEYS if k in account_filter}
        return {"filter": picked} if picked else {}
    return {"accountFilter": dict(account_filter)}


def action_request(task_id: str, custom_id: str, *, enable_remix: bool | None = None,
                   choose_same_channel: bool | None = None) -> Request:
    """A button click on a finished task (U1, V2, 🔄, zoom, pan...)."""
    return "action", {"taskId": str(task_id), "customId": custom_id,
                      "enableRemix": enable_remix, "chooseSameChannel": choose_same_channel}


def change_request(task_id: str, action: str, index: int | None = None) -> Request:
    """U1–U4 / V1–V4 / reroll where the upstream has no buttons (novicezk ``/change``)."""
    return "change", {"taskId": str(task_id), "action": action,
                      "index": None if action == "REROLL" else index}


def extend_request(task_id: str, *, prompt: str, index: int = 0,
                   motion: str | None = None) -> Request:
    """Extend one clip (``index`` 0-based) of a finished VIDEO task (trueai §2.4)."""
    return "video", {"action": "extend", "taskId": str(task_id), "index": index,
                     "prompt": prompt, "motion": motion}


def modal_request(task_id: str, *, prompt: str | None = None,
                  mask_base64: str | None = None) -> Request:
    """The input a MODAL task waits for (a prompt; a mask for Vary (Region))."""
    return "modal", {"taskId": str(task_id), "prompt": prompt, "maskBase64": mask_base64}


class SubmitMethods:
    """Mixin: typed wrappers over ``submit``; never retried, never raise for upstream
    behaviour."""

    def submit(self, path: str, payload: Mapping[str, Any], *, state: str | None = None,
               notify_hook: str | None = None, modes: Sequence[str] | None = None) -> Answer:
        raise NotImplementedError

    def imagine(self, prompt: str, *, base64_array: Sequence[str] | None = None,
                bot_type: str | None = None, modes: Sequence[str] | None = None,
                state: str | None = None, notify_hook: str | None = None,
                account_filter: Mapping[str, Any] | None = None) -> Answer:
        if not prompt or not prompt.strip():
            return _refused("imagine needs a prompt")
        return self.submit("imagine", {
            "prompt": prompt, "base64Array": _list(base64_array), "botType": bot_type,
            "accountFilter": _dict(account_filter),
        }, state=state, notify_hook=notify_hook, modes=modes)

    def blend(self, base64_array: Sequence[str], dimensions: str = "SQUARE", *,
              bot_type: str | None = None, modes: Sequence[str] | None = None,
              state: str | None = None, notify_hook: str | None = None,
              account_filter: Mapping[str, Any] | None = None) -> Answer:
        if not 2 <= len(base64_array) <= 5:
            return _refused(f"blend needs 2 to 5 images, got {len(base64_array)}")
        if dimensions.upper() not in BLEND_DIMENSIONS:
            return _refused(f"blend dimensions must be one of {sorted(BLEND_DIMENSIONS)}")
        return self.submit("blend", {
            "base64Array": list(base64_array), "dimensions": dimensions.upper(),
            "botType": bot_type, "accountFilter": _dict(account_filter),
        }, state=state, notify_hook=notify_hook, modes=modes)

    def describe(self, base64: str | None = None, link: str | None = None, *,
                 bot_type: str | None = None, language: str | None = None,
                 modes: Sequence[str] | None = None, state: str | None = None,
                 notify_hook: str | None = None,
                 account_filter: Mapping[str, Any] | None = None) -> Answer:
        if not base64 and not link:
            return _refused("describe needs base64 or link")
        return self.submit("describe", {
            "base64": base64, "link": link, "botType": bot_type, "language": language,
            "accountFilter": _dict(account_filter),
        }, state=state, notify_hook=notify_hook, modes=modes)

    def shorten(self, prompt: str, *, bot_type: str | None = None,
                modes: Sequence[str] | None = None, state: str | None = None,
                notify_hook: str | None = None,
                account_filter: Mapping[str, Any] | None = None) -> Answer:
        if not prompt or not prompt.strip():
            return _refused("shorten needs a prompt")
        return self.submit("shorten", {
            "prompt": prompt, "botType": bot_type, "accountFilter": _dict(account_filter),
        }, state=state, notify_hook=notify_hook, modes=modes)

    def action(self, task_id: str, custom_id: str, *, enable_remix: bool | None = None,
               choose_same_channel: bool | None = None, state: str | None = None,
               notify_hook: str | None = None) -> Answer:
        if not task_id or not custom_id:
            return _refused("action needs taskId and customId")
        return self.submit(*action_request(task_id, custom_id, enable_remix=enable_remix,
                                           choose_same_channel=choose_same_channel),
                           state=state, notify_hook=notify_hook)

    def modal(self, task_id: str, *, prompt: str | None = None, mask_base64: str | None = None,
              state: str | None = None, notify_hook: str | None = None) -> Answer:
        """Confirm a MODAL task (the id ``action`` answered with NEEDS_MODAL); the answer
        carries the same task id."""
        if not task_id:
            return _refused("modal needs the MODAL task id")
        return self.submit(*modal_request(task_id, prompt=prompt, mask_base64=mask_base64),
                           state=state, notify_hook=notify_hook)

    def change(self, task_id: str, action: str, index: int | None = None, *,
               state: str | None = None, notify_hook: str | None = None) -> Answer:
        action = action.upper()
        if action not in CHANGE_ACTIONS:
            return _refused(f"change action must be one of {sorted(CHANGE_ACTIONS)}")
        if action != "REROLL" and index not in (1, 2, 3, 4):
            return _refused(f"{action} needs an index 1..4")
        return self.submit(*change_request(task_id, action, index), state=state,
                           notify_hook=notify_hook)

    def simple_change(self, content: str, *, state: str | None = None,
                      notify_hook: str | None = None) -> Answer:
        if not content or not content.strip():
            return _refused("simple-change needs content like '<taskId> U1'")
        return self.submit("simple-change", {"content": content}, state=state,
                           notify_hook=notify_hook)

    def swap_face(self, source_base64: str, target_base64: str, *,
                  modes: Sequence[str] | None = None, state: str | None = None,
                  notify_hook: str | None = None,
                  account_filter: Mapping[str, Any] | None = None) -> Answer:
        if not source_base64 or not target_base64:
            return _refused("swap-face needs sourceBase64 and targetBase64")
        return self.submit("swap-face", {
            "sourceBase64": source_base64, "targetBase64": target_base64,
            "accountFilter": _dict(account_filter),
        }, state=state, notify_hook=notify_hook, modes=modes)

    def upload_discord_images(self, base64_array: Sequence[str], *,
                              account_filter: Mapping[str, Any] | None = None,
                              modes: Sequence[str] | None = None) -> Answer:
        """Upload images; an ACCEPTED answer's ``result`` is the list of URLs. The filter
        goes under the profile's name for it (``filter`` on new-api)."""
        if not base64_array:
            return _refused("upload-discord-images needs at least one image")
        field = getattr(getattr(self, "profile", None), "upload_filter_field", "accountFilter")
        return self.submit(*root_request("UPLOAD", {
            "base64Array": list(base64_array), "accountFilter": _dict(account_filter),
        }, upload_filter_field=field), modes=modes)

    def video(self, prompt: str, image: str | None = None, *, end_image: str | None = None,
              motion: str | None = None, loop: bool | None = None,
              video_type: str | None = None, batch_size: int | None = None,
              state: str | None = None, notify_hook: str | None = None) -> Answer:
        """``/mj/submit/video``: image to video (the first frame is an URL or data URL)."""
        if not prompt or not prompt.strip():
            return _refused("video needs a prompt")
        return self.submit(*root_request("VIDEO", {
            "prompt": prompt, "image": image, "endImage": end_image, "motion": motion,
            "loop": loop, "videoType": video_type, "batchSize": batch_size,
        }), state=state, notify_hook=notify_hook)

    def video_extend(self, task_id: str, prompt: str, *, index: int = 0,
                     motion: str | None = None, state: str | None = None,
                     notify_hook: str | None = None) -> Answer:
        if not task_id or not prompt or not 0 <= index <= 3:
            return _refused("extend needs the VIDEO task id, a prompt and an index 0..3")
        return self.submit(*extend_request(task_id, prompt=prompt, index=index, motion=motion),
                           state=state, notify_hook=notify_hook)

    def edits(self, prompt: str, image: str, *, retexture: bool = False,
              modes: Sequence[str] | None = None, state: str | None = None,
              notify_hook: str | None = None,
              account_filter: Mapping[str, Any] | None = None) -> Answer:
        """``/mj/submit/edits`` (or ``/retexture``): a prompt and the picture to edit."""
        if not prompt or not image:
            return _refused("edits and retexture need a prompt and an image")
        return self.submit(*root_request("RETEXTURE" if retexture else "EDITS", {
            "prompt": prompt, "image": image, "accountFilter": _dict(account_filter),
        }), state=state, notify_hook=notify_hook, modes=modes)


def _refused(message: str) -> Answer:
    """A submit refused before sending (the same outcome the upstream's code 4 gives)."""
    return Answer(Outcome.REJECTED, message)


def _list(values: Sequence[str] | None) -> list[str] | None:
    return list(values) if values else None


def _dict(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(values) if values else None
