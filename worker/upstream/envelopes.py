"""Reading upstream answer bodies: whatever envelope carried them, into one ``Body``.

Real upstreams answer with several shapes (reference §1.1, gateways §4):
``{code, description, result, properties}`` (midjourney-proxy ``SubmitResultVO``),
``{success:false, code, message}`` (trueai ``Result``), ``{"error": {message, type, code}}``
(OpenAI-style, new-api/one-hub middleware), ``{"error": "..."}`` (new-api image),
``{description, type, code}`` (new-api MJ handler), HTML error pages, plain text, empty
bodies and truncated JSON. ``parse_body`` never raises; ``outcomes.classify`` decides what
a ``Body`` means.
"""
from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.upstream.models import as_text

_QUEUED = re.compile(r"前面还有\s*(\d+)\s*个|(\d+)\s+(?:tasks?|jobs?)\s+ahead",
                     re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>|<h1[^>]*>(.*?)</h1>",
                         re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
_DETAIL_MAX_CHARS = 200


@dataclass
class Body:
    """The parts of a body that classification reads, whatever envelope carried them."""

    kind: str  # "empty" | "json" | "html" | "text" | "truncated"
    data: Any = None
    code: int | None = None
    code_text: str = ""       # a non-numeric code ("model_not_found") or error type
    detail: str = ""          # description / message, readable
    result: Any = None
    properties: dict[str, Any] = field(default_factory=dict)
    error_envelope: bool = False

    def mentions(self, markers: tuple[str, ...]) -> bool:
        haystack = f"{self.detail} {self.code_text}".lower()
        return any(marker in haystack for marker in markers)



def short(text: str) -> str:
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 1] + "…"


def as_code(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def _html_detail(text: str) -> str:
    match = _HTML_TITLE.search(text)
    if match:
        return short(_TAGS.sub(" ", match.group(1) or match.group(2) or ""))
    return short(_TAGS.sub(" ", text))


def parse_body(body: bytes | str | None, content_type: str | None) -> Body:
    if isinstance(body, (bytes, bytearray, memoryview)):
        text = bytes(body).decode("utf-8", errors="replace")
    else:
        text = body or ""
    text = text.lstrip("\ufeff").strip()
    if not text:
        return Body("empty")
    ctype = (content_type or "").lower()
    try:
        data = json.loads(text)
    except ValueError:
        if text[:1] in "{[\"" or ("json" in ctype and text[:1] != "<"):
            return Body("truncated", detail=short(text))
        if "html" in ctype or text[:1] == "<":
            return Body("html", detail=_html_detail(text))
        return Body("text", detail=short(text))
    parsed = Body("json", data=data)
    if isinstance(data, dict):
        _read_envelope(data, parsed)
    elif isinstance(data, str):
        parsed.detail = short(data)
    return parsed


def _read_envelope(data: dict[str, Any], parsed: Body) -> None:
    """Fill code/detail/result from any of the envelopes real upstreams use:
    ``{code, description, result, properties}`` (midjourney-proxy), ``{success:false, code,
    message}`` (trueai ``Result``), ``{"error": {message, type, code}}`` (OpenAI-style,
    new-api/one-hub middleware), ``{"error": "..."}`` (new-api image), MJ-style
    ``{description, type, code}`` (new-api MJ handler)."""
    error = data.get("error")
    if isinstance(error, dict):
        parsed.error_envelope = True
        parsed.code = as_code(error.get("code"))
        parsed.code_text = " ".join(
            as_text(error.get(k)) for k in ("code", "type") if error.get(k) not in (None, "")
            and as_code(error.get(k)) is None)
        parsed.detail = short(as_text(error.get("message")))
        return
    if isinstance(error, str) and "code" not in data:
        # new-api image {"error": "..."}; Spring's {"status", "error", "message", "path"}.
        parsed.error_envelope = True
        message = data.get("message")
        parsed.detail = short(message if isinstance(message, str) and message else error)
        return
    parsed.code = as_code(data.get("code"))
    if parsed.code is None and isinstance(data.get("code"), str):
        parsed.code_text = data["code"]
    if data.get("success") is False:
        parsed.error_envelope = True
    detail = data.get("description")
    if detail in (None, ""):
        detail = data.get("message", data.get("msg"))
    parsed.detail = short(as_text(detail)) if not isinstance(detail, (dict, list)) else \
        short(json.dumps(detail, ensure_ascii=False))
    if isinstance(data.get("type"), str):
        parsed.code_text = f"{parsed.code_text} {data['type']}".strip()
    parsed.result = data.get("result")
    properties = data.get("properties")
    parsed.properties = properties if isinstance(properties, dict) else {}


def task_id_of(result: Any) -> str | None:
    if isinstance(result, bool) or result is None:
        return None
    if isinstance(result, (int, float, str)):
        text = as_text(result).strip()
        return text or None
    if isinstance(result, dict):
        for key in ("id", "taskId", "task_id"):
            if result.get(key) not in (None, "") and not isinstance(result[key], (dict, list)):
                return as_text(result[key]).strip() or None
    return None


def read_queued_ahead(parsed: Body) -> int | None:
    value = parsed.properties.get("numberOfQueues", parsed.properties.get("number_of_queues"))
    number = as_code(value)
    if number is not None:
        return max(number, 0)
    match = _QUEUED.search(parsed.detail)
    if match:
        return int(match.group(1) or match.group(2))
    return None


def parse_retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = None
    for key, item in headers.items():
        if isinstance(key, str) and key.lower() == "retry-after":
            value = item
            break
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - time.time())
