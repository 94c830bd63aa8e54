"""``parse_spec``: a job spec from untrusted JSON, every problem reported with its field path
(``then[1].button``, ``base64Array[0]``), and what the upstream's profile cannot do refused."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from worker.errors import SpecError
from worker.jobs.fit import Problem
from worker.jobs.spec import JobSpec

#: what the upstreams can do with a spec: its problems as (path, message), ``[]`` if none
Fits = Callable[[JobSpec], list[Problem]]

MAX_JSON_DEPTH = 64          # a spec nested deeper is refused (metadata included)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "FollowUp") or str(part).startswith("function-after["):
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


def parse_spec(data: Any, *, max_image_bytes: int, prefix: str = "",
               fits: Fits | None = None) -> JobSpec:
    """Validate a job spec; raises SpecError listing every problem with its field path.
    With ``fits`` (what the upstreams can do: ``worker.upstreams.fits``), what they cannot
    do is refused as well (naming the profile), and images must fit its limit."""
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
        raise SpecError(errors_of(exc, prefix)) from None
    problems: list[Problem] = []
    try:
        spec.check_images(max_image_bytes, "")
    except ValueError as exc:
        path, _, msg = str(exc).partition(": ")
        problems.append((path, msg))
    problems += spec.label_errors()
    if fits is not None:
        problems += fits(spec)
    if problems:
        raise SpecError([{"path": _join(prefix, path), "message": msg} for path, msg in problems])
    return spec


FIELD_MESSAGE_RE = re.compile(r"^([A-Za-z][\w.\[\]]*): (.+)$", re.DOTALL)


def _join(prefix: str, path: str) -> str:
    return f"{prefix}{'.' if prefix and path else ''}{path}" or "body"



def errors_of(exc: ValidationError, prefix: str) -> list[dict[str, str]]:
    """pydantic's errors as ``{path, message}`` (a model-level message that starts with a
    field name, ``prompt: ...``, is put on that field)."""
    errors = []
    for err in exc.errors(include_url=False):
        path = _loc(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        named = FIELD_MESSAGE_RE.match(message)
        if path == "body" and named:
            path, message = named.group(1), named.group(2)
        if prefix and path == "body":
            path = ""
        errors.append({"path": _join(prefix, path), "message": message})
    return errors
