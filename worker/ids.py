"""The id alphabet: what a job, step, batch or delivery id may look like.

Ids come from :func:`worker.jobs.store.new_id` (``job_<hex>``, ``stp_<hex>``...) or, for
batches, from the caller (``A-Z a-z 0-9 _ -``, up to 100 characters). Anything else (a
``:`` above all, which would address another Redis key: ``job:<id>:steps``) is refused
at the door with the same 404 as an unknown id, before it reaches Redis.
"""
from __future__ import annotations

import re

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")


def valid_id(value: str | None) -> bool:
    """Is ``value`` made of the id alphabet only (and 1 to 100 characters long)?"""
    return bool(value) and ID_RE.fullmatch(value) is not None  # type: ignore[arg-type]
