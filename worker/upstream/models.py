"""Pydantic models of the midjourney-proxy task JSON, tolerant of what real upstreams send.

Field names are the JSON's own camelCase names, so ``Task.model_validate(json)`` and
``task.model_dump()`` round-trip upstream JSON; unknown fields are kept (``extra="allow"``).

Tolerated variations (seen in midjourney-proxy, trueai, new-api resellers, UniAPI, DataEyes):

- ``id`` as a JSON number (``1320098173412546``) → ``"1320098173412546"``;
- ``status`` ``""`` (new-api before its first poll) or a trueai enum number (5 → ``"SUCCESS"``);
- ``progress`` ``""`` / ``null`` / ``"93%"`` / ``93``;
- times ``null``, ``0`` or ``""`` (→ ``None``), floats and numeric or ISO strings (→ epoch ms);
- ``buttons: null`` → ``[]``; ``properties: null`` → ``{}``; snake_case property keys.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

#: trueai serializes its enums as strings, but its numeric values are documented
#: (``Midjourney.Base/Models/Enums.cs``); accept them too.
_STATUS_BY_NUMBER = {0: "NOT_START", 1: "SUBMITTED", 3: "IN_PROGRESS", 4: "FAILURE",
                     5: "SUCCESS", 6: "MODAL", 7: "CANCEL"}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


class TaskStatus(str, Enum):
    """Task lifecycle: NOT_START → SUBMITTED → IN_PROGRESS → SUCCESS | FAILURE (MODAL before
    NOT_START for actions that wait for ``/mj/submit/modal``; CANCEL is documented, never set)."""

    NOT_START = "NOT_START"
    SUBMITTED = "SUBMITTED"
    MODAL = "MODAL"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCEL = "CANCEL"


TERMINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.CANCEL})


UPSCALE_MARKER = "upsample::"      # customId of U1..U4 (MJ::JOB::upsample::1::<hash>)


def is_upscale(custom_id: str | None) -> bool:
    """Whether a button's customId makes an upscale (a single image, not a grid)."""
    return bool(custom_id) and UPSCALE_MARKER in custom_id


def percent(text: str | None) -> int:
    """A progress text (``"45%"``, ``"45.5"``) as 0..100; unparseable is 0."""
    match = _PERCENT.search(text or "")
    return max(0, min(100, int(float(match.group(1))))) if match else 0


def as_text(value: Any) -> str:
    """A JSON scalar as text: numbers without a trailing ``.0``, ``None`` as ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _optional_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return as_text(value)
    return str(value)


def _epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds from a number, a numeric string or an ISO-8601 string; 0 → None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = int(value)
        except (OverflowError, ValueError):  # inf, nan
            return None
        return number or None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return int(float(text)) or None
        except (OverflowError, ValueError):
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return None


class Button(BaseModel):
    """One button of a finished task; ``customId`` is sent verbatim to ``/mj/submit/action``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    customId: str = ""
    emoji: str = ""
    label: str = ""
    style: int | None = None
    type: int | None = None

    @field_validator("customId", "emoji", "label", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return as_text(value)

    @field_validator("style", "type", mode="before")
    @classmethod
    def _small_int(cls, value: Any) -> int | None:
        if value is None or isinstance(value, bool):
            return None
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return None


class Task(BaseModel):
    """A midjourney-proxy task as returned by fetch, list-by-condition and callbacks."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = ""
    action: str | None = None
    status: str = ""
    progress: str = ""
    prompt: str | None = None
    promptEn: str | None = None
    description: str | None = None
    state: str | None = None
    customId: str | None = None
    botType: str | None = None
    submitTime: int | None = None
    startTime: int | None = None
    finishTime: int | None = None
    imageUrl: str | None = None
    imageUrls: list[Any] | None = None
    videoUrl: str | None = None
    videoUrls: list[Any] | None = None
    failReason: str | None = None
    buttons: list[Button] = []
    properties: dict[str, Any] = {}

    # --- tolerant parsing ------------------------------------------------------------

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> str:
        return as_text(value).strip()

    @field_validator("status", mode="before")
    @classmethod
    def _status_text(cls, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return _STATUS_BY_NUMBER.get(value, str(value))
        return as_text(value).strip()

    @field_validator("progress", mode="before")
    @classmethod
    def _progress_text(cls, value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{as_text(value)}%"
        return as_text(value)

    @field_validator("action", "prompt", "promptEn", "description", "state", "customId",
                     "botType", "imageUrl", "failReason", "videoUrl", mode="before")
    @classmethod
    def _text_or_none(cls, value: Any) -> str | None:
        return _optional_text(value)

    @field_validator("submitTime", "startTime", "finishTime", mode="before")
    @classmethod
    def _times(cls, value: Any) -> int | None:
        return _epoch_ms(value)

    @field_validator("imageUrls", "videoUrls", mode="before")
    @classmethod
    def _image_urls(cls, value: Any) -> list[Any] | None:
        if value is None or isinstance(value, list):
            return value
        return [value]

    @field_validator("buttons", mode="before")
    @classmethod
    def _buttons(cls, value: Any) -> list[Any]:
        if not isinstance(value, list):
            return []
        return [item for item in value if isinstance(item, dict)]

    @field_validator("properties", mode="before")
    @classmethod
    def _properties(cls, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    # --- derived views ----------------------------------------------------------------

    @property
    def task_status(self) -> TaskStatus | None:
        """The status as an enum; ``None`` for ``""`` (new-api before its first poll) or an
        unknown value."""
        try:
            return TaskStatus(self.status.upper())
        except ValueError:
            return None

    @property
    def is_terminal(self) -> bool:
        return self.task_status in TERMINAL_STATUSES

    @property
    def progress_pct(self) -> int:
        """Progress as 0..100; SUCCESS is always 100, unparseable progress is 0."""
        if self.task_status is TaskStatus.SUCCESS:
            return 100
        return percent(self.progress)

    def prop(self, name: str, default: Any = None) -> Any:
        """A ``properties`` value by camelCase name, also found under its snake_case key."""
        if name in self.properties:
            return self.properties[name]
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        return self.properties.get(snake, default)

    @property
    def final_prompt(self) -> str | None:
        value = self.prop("finalPrompt")
        return None if value in (None, "") else as_text(value)

    @property
    def message_hash(self) -> str | None:
        """The Midjourney job UUID: ``properties.messageHash``, else taken from a button's
        customId or the image file name (new-api trims ``properties`` to finalPrompt)."""
        value = self.prop("messageHash")
        if value not in (None, ""):
            return as_text(value)
        for button in self.buttons:
            match = _UUID.search(button.customId)
            if match:
                return match.group(0)
        match = _UUID.search(self.imageUrl or "")
        return match.group(0) if match else None

    @property
    def image_urls(self) -> list[str]:
        """``imageUrls`` as plain URLs (trueai sends ``[{url, thumbnail}]``)."""
        urls: list[str] = []
        for item in self.imageUrls or []:
            if isinstance(item, str) and item:
                urls.append(item)
            elif isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
                urls.append(item["url"])
        return urls

    @property
    def videos(self) -> list[tuple[str, str | None]]:
        """The task's video clips as ``(url, thumbnail)``: ``videoUrls`` (trueai sends
        ``[{url, thumbnail}]``, new-api ``[{url}]``), else ``videoUrl``."""
        clips: list[tuple[str, str | None]] = []
        for item in self.videoUrls or []:
            if isinstance(item, str) and item:
                clips.append((item, None))
            elif isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
                thumb = item.get("thumbnail")
                clips.append((item["url"], thumb if isinstance(thumb, str) and thumb else None))
        if not clips and self.videoUrl:
            clips.append((self.videoUrl, None))
        return clips

    @property
    def is_video(self) -> bool:
        """A VIDEO task (its ``imageUrl`` may be the MP4 itself) or one carrying clips."""
        return (self.action or "").upper() == "VIDEO" or bool(self.videos)

    def button(self, label: str) -> Button | None:
        """The first button with this label (``"U1"``) or customId fragment."""
        for candidate in self.buttons:
            if candidate.label == label or (label and label in candidate.customId):
                return candidate
        return None
