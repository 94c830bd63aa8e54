"""Reading the upstream's answers: a bounded body (``Reply``), and task JSON into
:class:`~worker.upstream.models.Task` (items that are not tasks are skipped, logged)."""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from pydantic import ValidationError

from worker.errors import BadUpstreamAnswer
from worker.upstream.models import Task

log = logging.getLogger("mjflow.upstream")
#: Largest answer body read into memory (a list of 100 tasks is well under 1 MiB).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
UNHAPPY = object()   # an accept function did not recognise the reply: classify it


@dataclass(frozen=True)
class Reply:
    status: int
    content: bytes
    content_type: str | None
    headers: Mapping[str, str]
    too_large: bool = False

    def json(self) -> Any:
        """The parsed body, or ``UNHAPPY`` when it is not JSON."""
        try:
            return json.loads(self.content.decode("utf-8", errors="replace").lstrip("\ufeff"))
        except ValueError:
            return UNHAPPY


def read_reply(response: requests.Response) -> Reply:
    chunks: list[bytes] = []
    total = 0
    too_large = False
    try:
        for chunk in response.iter_content(64 * 1024):
            total += len(chunk)
            if total > MAX_ANSWER_BYTES:
                too_large = True
                break
            chunks.append(chunk)
    finally:
        response.close()
    return Reply(response.status_code, b"".join(chunks),
                  response.headers.get("Content-Type"), dict(response.headers), too_large)


def path_segment(task_id: str) -> str:
    """A task id as one URL path segment."""
    return quote(str(task_id).strip(), safe="")


def looks_like_task(data: Mapping[str, Any]) -> bool:
    return data.get("id") not in (None, "") and not isinstance(data.get("id"), (dict, list)) \
        and "error" not in data


def parse_task(data: Mapping[str, Any], endpoint: str) -> Task:
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        raise BadUpstreamAnswer(f"{endpoint}: task JSON not understood: "
                                f"{exc.errors()[0].get('msg', exc)}") from None


def parse_tasks(items: list[Any], endpoint: str) -> list[Task]:
    tasks = []
    for item in items:
        if isinstance(item, dict) and looks_like_task(item):
            tasks.append(parse_task(item, endpoint))
        else:
            log.warning("upstream %s: skipped an item that is not a task (%s)", endpoint,
                        type(item).__name__)
    return tasks
