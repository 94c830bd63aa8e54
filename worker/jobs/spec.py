"""The job spec: what a user asks for (one root upstream task plus a tree of follow-ups).

The same JSON is accepted by ``POST /v1/jobs``, the Celery task ``mjflow.create_job``,
the CLI, batch lines and :func:`worker.api.create_job`. Unknown fields are rejected; what
the configured upstream cannot do is refused too (:mod:`worker.jobs.fit`), naming it.

Root actions: IMAGINE, BLEND, DESCRIBE, SHORTEN, SWAP_FACE (the seeds), UPLOAD (hosted
URLs of local images), ACTION (a button of an upstream task mjflow did not create),
VIDEO, EDITS and RETEXTURE (trueai's newer surface, relayed in part by new-api).
"""
from __future__ import annotations

import json
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from worker.jobs.chains import impossible_label
from worker.jobs.spec_images import check_data_url, prompt_data_urls, prompt_text

RootAction = Literal["IMAGINE", "BLEND", "DESCRIBE", "SHORTEN", "SWAP_FACE", "UPLOAD", "ACTION",
                     "VIDEO", "EDITS", "RETEXTURE"]
Mode = Literal["FAST", "RELAX", "TURBO"]
UPSTREAM_NAME_RE = re.compile(r"^[a-z0-9-]{1,32}$")
MAX_PROMPT_CHARS = 8000
#: a prompt may carry data URLs (``--sref data:...``) that are uploaded before the submit;
#: MAX_PROMPT_CHARS applies to its text without them
MAX_PROMPT_WITH_IMAGES_CHARS = 48 * 1024 * 1024
MAX_DEPTH = 6
MAX_STEPS = 40
EXTEND = "extend"
#: labels/kinds of the buttons that make a video (trueai's Animate and Extend)
VIDEO_BUTTON_RE = re.compile(r"^(animate|extend)\b|animate_(high|low)", re.IGNORECASE)
URL_RE = re.compile(r"^https?://[^\s/]+")
TASK_ID_RE = r"^[A-Za-z0-9_.:-]{1,64}$"


class AccountFilter(BaseModel):
    """Which upstream account runs a new task (seed 000 ``accountFilter``; trueai)."""

    model_config = ConfigDict(extra="forbid")

    channelId: str | None = Field(default=None, max_length=100)
    instanceId: str | None = Field(default=None, max_length=100)
    remark: str | None = Field(default=None, max_length=200,
                               description="text the account's remark contains")
    remix: bool | None = Field(default=None, description="the account has remix mode on")
    remixAutoConsidered: bool | None = Field(default=None,
                                             description="remix auto-submit setting")
    modes: list[Mode] | None = Field(default=None, min_length=1, max_length=3,
                                     description="speed modes in order of preference")

    @field_validator("modes")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each mode at most once")
        return value


def is_video_button(name: str) -> bool:
    """Whether a follow-up names a button that makes a video (Animate, Extend)."""
    return bool(VIDEO_BUTTON_RE.search(name.strip()))


def is_image_ref(value: str) -> bool:
    return bool(URL_RE.match(value)) or value.startswith("data:")


class FollowUp(BaseModel):
    """One follow-up click on the parent's buttons, with its own follow-ups."""

    model_config = ConfigDict(extra="forbid")

    button: str = Field(min_length=1, max_length=100,
                        description="button label (U1, V2, 🔄, 'Zoom Out 2x'...) or customId kind")
    then: list[FollowUpItem] = Field(default_factory=list)
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    mask: str | None = Field(default=None, description="data URL of the Vary (Region) mask")
    enableRemix: bool | None = None
    chooseSameChannel: bool | None = Field(
        default=None, description="run on an account of the parent's channel")
    seed: bool | None = Field(default=None, description="fetch the image seed after SUCCESS")
    index: int | None = Field(default=None, ge=0, le=3,
                              description="extend: the clip to extend, 0-based (default 0)")
    motion: Literal["low", "high"] | None = Field(default=None, description="extend: motion")

    @model_validator(mode="after")
    def _extend_fields(self) -> FollowUp:
        if self.button.strip().lower() != EXTEND and (self.index is not None or self.motion):
            field = "index" if self.index is not None else "motion"
            raise ValueError(f"{field}: goes with an 'extend' follow-up only")
        return self


FollowUpItem = str | FollowUp
FollowUp.model_rebuild()


def normalize_then(items: list[FollowUpItem]) -> list[FollowUp]:
    return [FollowUp(button=i) if isinstance(i, str) else i for i in items]


class JobSpec(BaseModel):
    """A job as submitted. Field names follow the upstream API (camelCase)."""

    model_config = ConfigDict(extra="forbid")

    action: RootAction = "IMAGINE"
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_WITH_IMAGES_CHARS,
                               description="image references (--sref, --oref, --cref, image "
                               "prompts) may be data URLs: they are uploaded first")
    base64Array: list[str] | None = Field(default=None, max_length=5)
    base64: str | None = None
    link: str | None = Field(default=None, max_length=2000)
    language: str | None = Field(default=None, pattern=r"^[A-Za-z_-]{2,10}$",
                                 description="DESCRIBE: language of the result (zh, zh_cn)")
    sourceBase64: str | None = None
    targetBase64: str | None = None
    sourceUrl: str | None = Field(default=None, max_length=2000)
    targetUrl: str | None = Field(default=None, max_length=2000)
    image: str | None = Field(default=None, description="VIDEO first frame / EDITS, RETEXTURE "
                              "picture: an http(s) URL or a data URL")
    endImage: str | None = Field(default=None, description="VIDEO last frame (URL or data URL)")
    motion: Literal["low", "high"] | None = None
    loop: bool | None = None
    videoType: Literal["vid_1.1_i2v_480", "vid_1.1_i2v_720"] | None = None
    batchSize: Literal[1, 2, 4] | None = None
    taskId: str | None = Field(default=None, pattern=TASK_ID_RE,
                               description="ACTION: the upstream task whose button is clicked")
    button: str | None = Field(default=None, min_length=1, max_length=100,
                               description="ACTION: the button (label, emoji or customId kind)")
    customId: str | None = Field(default=None, min_length=1, max_length=300,
                                 description="ACTION: the button's customId, verbatim")
    dimensions: Literal["PORTRAIT", "SQUARE", "LANDSCAPE"] | None = None
    botType: Literal["MID_JOURNEY", "NIJI_JOURNEY"] | None = None
    mode: Mode | None = None
    accountFilter: AccountFilter | None = None
    upstream: list[str] | None = Field(
        default=None, max_length=64,
        description="run on this upstream of the fleet (a name), or on one of these (a list)")
    maxCost: float | None = Field(default=None, ge=0, le=1e12,
                                  description="stop dispatching the job's steps once its "
                                  "accepted tasks cost this much (the upstreams' costs)")
    seed: bool = Field(default=False, description="fetch the image seed of every step")
    then: list[FollowUpItem] = Field(default_factory=list)
    splitGrid: bool = False
    priority: int = Field(default=5, ge=0, le=9)
    callbackUrl: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    key: str | None = Field(default=None, max_length=200,
                            description="item key inside a batch (resume skips finished keys)")

    @field_validator("callbackUrl")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ValueError("must be an http(s) URL (bad port)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or any(
                c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must be an http(s) URL with a host and no spaces")
        return value

    @field_validator("upstream", mode="before")
    @classmethod
    def _upstream(cls, value: object) -> object:
        names = [value] if isinstance(value, str) else value
        if isinstance(names, list):
            for name in names:
                if not isinstance(name, str) or not UPSTREAM_NAME_RE.match(name):
                    raise ValueError("upstream names are 1-32 of a-z, 0-9 and '-'")
            return list(dict.fromkeys(names)) or None
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, ensure_ascii=False)) > 16_384:
            raise ValueError("metadata larger than 16 KB")
        return value

    @model_validator(mode="after")
    def _by_action(self) -> JobSpec:
        a = self.action
        needs_prompt = ("IMAGINE", "SHORTEN", "VIDEO", "EDITS", "RETEXTURE")
        if a in needs_prompt and not (self.prompt and self.prompt.strip()):
            raise ValueError(f"prompt is required for {a}")
        if len(prompt_text(self.prompt)) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt: at most {MAX_PROMPT_CHARS} characters (images aside)")
        if prompt_data_urls(self.prompt) and a != "IMAGINE":
            raise ValueError("prompt: data URLs (uploaded references) go with IMAGINE only; "
                             "give an http(s) URL")
        if a == "BLEND" and not (self.base64Array and 2 <= len(self.base64Array) <= 5):
            raise ValueError("BLEND needs base64Array with 2 to 5 images")
        if a == "UPLOAD" and not self.base64Array:
            raise ValueError("base64Array: UPLOAD needs 1 to 5 images")
        if a == "DESCRIBE" and not (self.base64 or self.link):
            raise ValueError("DESCRIBE needs base64 or link")
        if a == "SWAP_FACE" and not ((self.sourceBase64 or self.sourceUrl)
                                     and (self.targetBase64 or self.targetUrl)):
            raise ValueError("SWAP_FACE needs sourceBase64 (or sourceUrl) and targetBase64 "
                             "(or targetUrl)")
        if a in ("VIDEO", "EDITS", "RETEXTURE") and not self.image:
            what = "the first frame" if a == "VIDEO" else "the picture to edit"
            raise ValueError(f"image: {a} needs an image ({what})")
        if a == "ACTION" and not self.taskId:
            raise ValueError("taskId: ACTION needs the upstream task whose button to click")
        if a == "ACTION" and not (self.button or self.customId):
            raise ValueError("button: ACTION needs a button (or its customId)")
        extra = next((f for f in ("taskId", "button", "customId") if getattr(self, f)), None)
        if a != "ACTION" and extra:
            raise ValueError(f"{extra}: goes with action ACTION only")
        if a == "UPLOAD" and self.then:
            raise ValueError("then: UPLOAD makes no task, so it takes no follow-ups")
        if self.language is not None and a != "DESCRIBE":
            raise ValueError("language: goes with action DESCRIBE only")
        video_only = [f for f in ("endImage", "motion", "loop", "videoType", "batchSize")
                      if getattr(self, f) is not None]
        if video_only and a != "VIDEO":
            raise ValueError(f"{video_only[0]}: goes with action VIDEO only")
        for name in ("link", "sourceUrl", "targetUrl"):
            value = getattr(self, name)
            if value is not None and not URL_RE.match(value):
                raise ValueError(f"{name} must be an http(s) URL")
        for name in ("image", "endImage"):
            value = getattr(self, name)
            if value is not None and not is_image_ref(value):
                raise ValueError(f"{name} must be an http(s) URL or a data URL")
        if self.accountFilter is not None and a in ("VIDEO", "ACTION"):
            why = ("/mj/submit/video takes no account filter" if a == "VIDEO"
                   else "a button runs on the account of its task")
            raise ValueError(f"accountFilter: not with action {a} ({why})")
        if self.mode and self.accountFilter and self.accountFilter.modes:
            raise ValueError("mode: give mode or accountFilter.modes, not both")
        _check_extends(normalize_then(self.then), "then", a == "VIDEO")
        count = _count(normalize_then(self.then), 1)
        if count > MAX_STEPS:
            raise ValueError(f"too many follow-up steps ({count}, at most {MAX_STEPS})")
        return self

    def label_errors(self) -> list[tuple[str, str]]:
        """(path, message) for every follow-up naming a button that can never exist."""
        out = []
        for path, follow in _walk(normalize_then(self.then), "then"):
            reason = impossible_label(follow.button)
            if reason:
                out.append((path if isinstance(_at(self.then, path), str) else f"{path}.button",
                            reason))
        return out

    def images(self) -> list[str]:
        out = list(self.base64Array or [])
        out += [v for v in (self.base64, self.sourceBase64, self.targetBase64) if v]
        return out

    @property
    def modes(self) -> list[str]:
        """The speed modes, in order of preference ([] for the upstream's default)."""
        if self.accountFilter and self.accountFilter.modes:
            return list(self.accountFilter.modes)
        return [self.mode] if self.mode else []

    def wants_seed(self) -> bool:
        return self.seed or any(f.seed for _, f in _walk(normalize_then(self.then), "then"))

    def check_images(self, max_bytes: int, limit_owner: str = "") -> None:
        """Validate every embedded image (raises ValueError naming the field)."""
        def check(path: str, value: str) -> None:
            try:
                check_data_url(value, max_bytes, limit_owner)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None

        for name in ("base64", "sourceBase64", "targetBase64"):
            if getattr(self, name):
                check(name, getattr(self, name))
        for name in ("image", "endImage"):
            value = getattr(self, name)
            if value and value.startswith("data:"):
                check(name, value)
        for i, value in enumerate(self.base64Array or []):
            check(f"base64Array[{i}]", value)
        for value in prompt_data_urls(self.prompt):
            check("prompt", value)
        for path, follow in _walk(normalize_then(self.then), "then"):
            if follow.mask:
                check(f"{path}.mask", follow.mask)


def _check_extends(items: list[FollowUp], path: str, parent_is_video: bool) -> None:
    """An ``extend`` follows a video: the VIDEO root, another extend, or an Animate click."""
    for i, item in enumerate(items):
        is_extend = item.button.strip().lower() == EXTEND
        if is_extend and not parent_is_video:
            raise ValueError(f"{path}[{i}].button: 'extend' follows a video step (action VIDEO, "
                             "an Animate button or another extend)")
        _check_extends(normalize_then(item.then), f"{path}[{i}].then",
                       is_extend or is_video_button(item.button))


def _count(items: list[FollowUp], depth: int) -> int:
    if depth > MAX_DEPTH and items:
        raise ValueError(f"follow-ups nested deeper than {MAX_DEPTH} levels")
    return sum(1 + _count(normalize_then(i.then), depth + 1) for i in items)


def _at(items: list[FollowUpItem], path: str) -> FollowUpItem:
    """The item of ``then`` at ``path`` (``then[1].then[0]``) as it was given."""
    item: Any = None
    for index in re.findall(r"\[(\d+)\]", path):
        item = items[int(index)]
        items = item.then if isinstance(item, FollowUp) else []
    return item


def _walk(items: list[FollowUp], path: str):
    for i, item in enumerate(items):
        yield f"{path}[{i}]", item
        yield from _walk(normalize_then(item.then), f"{path}[{i}].then")
