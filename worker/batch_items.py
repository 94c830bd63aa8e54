"""Batch items: turning JSONL text or a JSON list into validated specs with keys.

A line (or list item) is a job spec (a JSON object, optionally with a ``key``) or a prompt
(plain text or a JSON string). An item without a key gets ``line-<n>:<digest>``: ``n`` its
1-based line or position, ``digest`` a hash of the item, so the same file always gives the
same keys (:mod:`worker.batches` relies on that to resume).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from worker.errors import SpecError
from worker.jobs.parse import Fits, parse_spec

MAX_NAME_CHARS = 200
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


# -- ids and keys ----------------------------------------------------------------------------
def batch_id_for(name: str) -> str:
    """The batch id of a name: the same name always resumes the same batch."""
    return "bat_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


def item_digest(item: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in item.items() if k != "key"})).hexdigest()[:16]


def default_key(number: int, item: dict[str, Any]) -> str:
    return f"line-{number}:{item_digest(item)}"


# -- input ----------------------------------------------------------------------------------
def read_jsonl(text: str) -> tuple[list[tuple[int, Any]], list[dict[str, Any]]]:
    """Split JSONL text into ``(line number, value)`` pairs; blank lines are skipped.

    A line is a JSON object (a spec), a JSON string, or plain text (both taken as the
    prompt). A line that starts like JSON but does not parse is an error.
    """
    entries: list[tuple[int, Any]] = []
    errors: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        raw = line.strip()
        if not raw:
            continue
        add_line(number, raw, entries, errors)
    return entries, errors


def add_line(number: int, raw: str, entries: list[tuple[int, Any]],
             errors: list[dict[str, Any]]) -> None:
    """Append one stripped, non-blank JSONL line to ``entries`` (or its error to ``errors``)."""
    if raw[0] in "{[\"":
        try:
            entries.append((number, loads_strict(raw)))
        except (ValueError, RecursionError) as exc:
            errors.append({"path": f"lines[{number}]", "line": number,
                           "message": f"malformed JSON: {exc}"})
        return
    entries.append((number, raw))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(raw: str | bytes) -> Any:
    """``json.loads`` without NaN/Infinity (they would not round-trip)."""
    return json.loads(raw, parse_constant=_reject_constant)


def prepare(entries: Iterable[tuple[int, Any]], *, max_image_bytes: int,
            then: list[Any] | None = None, path: str = "items",
            zero_based: bool = True, fits: Fits | None = None
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Turn raw items into validated spec dicts with keys; returns ``(items, errors)``.

    Strings become ``{"prompt": ...}``; ``then`` is the default follow-up list for items
    without their own. Every error names the item (``items[3].prompt`` or ``lines[4]...``)
    and, for JSONL, its line number.
    """
    items: list[dict[str, Any]] = []
    numbers: list[int] = []
    errors: list[dict[str, Any]] = []
    for number, raw in entries:
        where = f"{path}[{number - 1 if zero_based else number}]"
        extra = {} if zero_based else {"line": number}
        if isinstance(raw, str):
            item: dict[str, Any] = {"prompt": raw}
        elif isinstance(raw, dict):
            item = dict(raw)
        else:
            errors.append({"path": where, "message": "must be a JSON object (a job spec) or a "
                           "string (a prompt)", **extra})
            continue
        if then and "then" not in item:
            item["then"] = list(then)
        try:
            parse_spec(item, max_image_bytes=max_image_bytes, prefix=where, fits=fits)
        except SpecError as exc:
            errors.extend({**e, **extra} for e in exc.errors)
            continue
        if item.get("key") is None:
            item["key"] = default_key(number, item)   # after validation: plain, bounded JSON
        items.append(item)
        numbers.append(number)
    return _unique_keys(items, numbers, errors, path=path, zero_based=zero_based)


def _unique_keys(items: list[dict[str, Any]], numbers: list[int], errors: list[dict[str, Any]],
                 *, path: str, zero_based: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the first item of each key; every later one is an error naming both places
    (``lines 3 and 7`` / ``items[2] and items[6]``), and is left out."""
    first: dict[str, int] = {}
    kept: list[dict[str, Any]] = []
    for item, number in zip(items, numbers):
        key = item["key"]
        if key not in first:
            first[key] = number
            kept.append(item)
            continue
        if zero_based:
            where, places = f"{path}[{number - 1}]", f"items[{first[key] - 1}] and [{number - 1}]"
            extra: dict[str, Any] = {}
        else:
            where, places = f"{path}[{number}]", f"lines {first[key]} and {number}"
            extra = {"line": number}
        errors.append({"path": f"{where}.key", "message": f"key {key!r} is used by more than one "
                       f"item ({places}); keys name items, so each must be unique", **extra})
    return kept, errors


def check_name(name: str | None) -> None:
    if name is not None and not (0 < len(name) <= MAX_NAME_CHARS):
        raise SpecError([{"path": "name", "message": f"must be 1 to {MAX_NAME_CHARS} characters"}])


def check_batch_id(batch_id: str) -> None:
    if not BATCH_ID_RE.match(batch_id):
        raise SpecError([{"path": "batchId",
                          "message": "must be 1 to 100 characters of A-Z a-z 0-9 _ -"}])
