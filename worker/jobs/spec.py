"""The job spec: what a user asks for (one root upstream task plus a tree of follow-ups).

The same JSON is accepted by ``POST /v1/jobs``, the Celery task ``mjflow.create_job``,
the CLI and :func:`worker.api.create_job`. Unknown fields are rejected.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.errors import SpecError
from worker.jobs.chains import impossible_label

RootAction = Literal["IMAGINE", "BLEND", "DESCRIBE", "SHORTEN", "SWAP_FACE"]
MAX_PROMPT_CHARS = 8000
MAX_DEPTH = 6
MAX_STEPS = 40
DATA_URL_RE = re.compile(r"^data:(image/[a-zA-Z0-9.+-]+);base64,(.+)$", re.DOTALL)
IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


def check_data_url(value: str, max_bytes: int) -> str:
    """Validate a ``data:image/...;base64,`` URL: decodable, an image, within the size limit."""
    match = DATA_URL_RE.match(value.strip())
    if not match:
        raise ValueError("must be a data URL like 'data:image/png;base64,...'")
    payload = match.group(2)
    if len(payload) * 3 // 4 > max_bytes:
        raise ValueError(f"image larger than the {max_bytes // (1024 * 1024)} MB limit")
    try:
        raw = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("base64 data is not decodable") from None
    if len(raw) > max_bytes:
        raise ValueError(f"image larger than the {max_bytes // (1024 * 1024)} MB limit")
    is_webp = raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"
    if not is_webp and not any(raw.startswith(m) for m in IMAGE_MAGIC):
        raise ValueError("data is not a PNG, JPEG, GIF or WEBP image")
    return value.strip()


class FollowUp(BaseModel):
    """One follow-up click on the parent's buttons, with its own follow-ups."""

    model_config = ConfigDict(extra="forbid")

    button: str = Field(min_length=1, max_length=100,
                        description="button label (U1, V2, 🔄, 'Zoom Out 2x'...) or customId kind")
    then: list[FollowUpItem] = Field(default_factory=list)
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    mask: str | None = Field(default=None, description="data URL of the Vary (Region) mask")
    enableRemix: bool | None = None


FollowUpItem = str | FollowUp
FollowUp.model_rebuild()


def normalize_then(items: list[FollowUpItem]) -> list[FollowUp]:
    return [FollowUp(button=i) if isinstance(i, str) else i for i in items]


class JobSpec(BaseModel):
    """A job as submitted. Field names follow the upstream API (camelCase)."""

    model_config = ConfigDict(extra="forbid")

    action: RootAction = "IMAGINE"
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    base64Array: list[str] | None = Field(default=None, max_length=5)
    base64: str | None = None
    link: str | None = Field(default=None, max_length=2000)
    sourceBase64: str | None = None
    targetBase64: str | None = None
    dimensions: Literal["PORTRAIT", "SQUARE", "LANDSCAPE"] | None = None
    botType: Literal["MID_JOURNEY", "NIJI_JOURNEY"] | None = None
    mode: Literal["FAST", "RELAX", "TURBO"] | None = None
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

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        import json

        if len(json.dumps(value, ensure_ascii=False)) > 16_384:
            raise ValueError("metadata larger than 16 KB")
        return value

    @model_validator(mode="after")
    def _by_action(self) -> JobSpec:
        a = self.action
        if a in ("IMAGINE", "SHORTEN") and not (self.prompt and self.prompt.strip()):
            raise ValueError(f"prompt is required for {a}")
        if a == "BLEND" and not (self.base64Array and 2 <= len(self.base64Array) <= 5):
            raise ValueError("BLEND needs base64Array with 2 to 5 images")
        if a == "DESCRIBE" and not (self.base64 or self.link):
            raise ValueError("DESCRIBE needs base64 or link")
        if a == "SWAP_FACE" and not (self.sourceBase64 and self.targetBase64):
            raise ValueError("SWAP_FACE needs sourceBase64 and targetBase64")
        if self.link is not None and not re.match(r"^https?://", self.link):
            raise ValueError("link must be an http(s) URL")
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

    def check_images(self, max_bytes: int) -> None:
        """Validate every embedded image (raises ValueError naming the field)."""
        for name in ("base64", "sourceBase64", "targetBase64"):
            value = getattr(self, name)
            if value:
                try:
                    check_data_url(value, max_bytes)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        for i, value in enumerate(self.base64Array or []):
            try:
                check_data_url(value, max_bytes)
            except ValueError as exc:
                raise ValueError(f"base64Array[{i}]: {exc}") from None
        for path, follow in _walk(normalize_then(self.then), "then"):
            if follow.mask:
                try:
                    check_data_url(follow.mask, max_bytes)
                except ValueError as exc:
                    raise ValueError(f"{path}.mask: {exc}") from None


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


MAX_JSON_DEPTH = 64          # a spec nested deeper is refused (metadata included)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "FollowUp", "function-after[_by_action(), JobSpec]"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _too_deep(data: Any, limit: int) -> str | None:
    """The path of a value nested deeper than ``limit`` (iteratively: no recursion), or None."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            return path
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def parse_spec(data: Any, *, max_image_bytes: int, prefix: str = "") -> JobSpec:
    """Validate a job spec; raises SpecError listing every problem with its field path."""
    if not isinstance(data, dict):
        raise SpecError([{"path": prefix or "body", "message": "must be a JSON object"}])
    too_deep = _too_deep(data, MAX_JSON_DEPTH)
    if too_deep is not None:
        path = f"{prefix}{'.' if prefix and too_deep else ''}{too_deep}" or "body"
        raise SpecError([{"path": path, "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}])
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError([{"path": prefix or "body",
                          "message": "text contains an unpaired surrogate (not valid Unicode)"}]) from None
    except (TypeError, ValueError, RecursionError):
        raise SpecError([{"path": prefix or "body", "message": "must be plain JSON"}]) from None
    try:
        spec = JobSpec.model_validate(data)
    except RecursionError:
        raise SpecError([{"path": prefix or "body", "message": "nested too deeply"}]) from None
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            path = _loc(tuple(err["loc"]))
            if prefix and path == "body":
                path = ""
            errors.append({"path": f"{prefix}{'.' if prefix and path else ''}{path}",
                           "message": err["msg"].removeprefix("Value error, ")})
        raise SpecError(errors) from None
    labels = spec.label_errors()
    if labels:
        raise SpecError([{"path": f"{prefix}{'.' if prefix else ''}{path}", "message": msg}
                         for path, msg in labels])
    try:
        spec.check_images(max_image_bytes)
    except ValueError as exc:
        path, _, msg = str(exc).partition(": ")
        raise SpecError([{"path": f"{prefix}{'.' if prefix else ''}{path}", "message": msg}]) from None
    return spec
