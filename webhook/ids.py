"""Ids in URLs are checked right after authentication, before any view runs: a
``<job_id>``, ``<batch_id>``, ``<step_id>``... outside the id alphabet (:mod:`worker.ids`)
is a 404, the same answer as an unknown id, and never reaches Redis. The callback
receiver checks its step id itself (every refusal there is counted and answered alike)."""
from __future__ import annotations

from flask import request
from werkzeug.exceptions import NotFound

from worker.ids import valid_id


def check_view_ids() -> None:
    """Raise 404 for a URL id outside the alphabet (call it from a blueprint's gate)."""
    for name, value in (request.view_args or {}).items():
        if name.endswith("_id") and not valid_id(str(value)):
            raise NotFound(f"no such {name.removesuffix('_id')} {str(value)[:100]!r}")
