"""The plain functions behind every front door (HTTP, Celery, CLI, Python).

    from worker.api import submit, wait
    job = submit({"prompt": "a lighthouse", "then": ["U1"]})   # workers do the rest
    job = wait(job["id"])                                       # optional

    # or with an engine of your own (tests, scripts):
    from worker.api import create_job
    from worker.flow.engine import build_engine
    job = create_job(build_engine(), {"prompt": "a lighthouse", "then": ["U1"]})

Batches (:mod:`worker.batches`) are re-exported here: ``create_batch``, ``get_batch``,
``list_batches``, ``batch_report``, ``retry_batch``, ``cancel_batch``.

Errors: :class:`SpecError` (invalid spec, carries field paths), :class:`Conflict`
(an Idempotency-Key reused with another body), :class:`NotFound`.
"""
from __future__ import annotations

import functools
import time
from typing import Any

from worker import batches
from worker.enqueue import CeleryEnqueue
from worker.errors import Conflict, NotFound, SpecError
from worker.flow.engine import Engine, build_engine
from worker.job_ops import (
    add_steps,
    cancel_job,
    create_job,
    get_job,
    list_jobs,
    replay_deliveries,
    retry_job,
)
from worker.jobs.model import StepStatus
from worker.jobs.parse import parse_spec


# -- for services that import mjflow -------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def default_engine() -> Engine:
    """The engine of this process, from ``MJFLOW_*`` settings; work goes to Celery."""
    return build_engine(enqueue=CeleryEnqueue())


def submit(spec: dict[str, Any], *, idempotency_key: str | None = None,
           engine: Engine | None = None) -> dict[str, Any]:
    """Create a job from a spec (the JSON of ``POST /v1/jobs``); returns the job view.

    Raises :class:`SpecError` (``.errors`` lists ``{path, message}``) or :class:`Conflict`.
    The Celery workers do the work; the caller does not wait.
    """
    return create_job(engine or default_engine(), spec, idempotency_key=idempotency_key)


def wait(job_id: str, *, timeout_s: float = 1800.0, poll_s: float = 1.0,
         engine: Engine | None = None) -> dict[str, Any]:
    """Poll until the job finishes (or ``timeout_s`` passes); returns the last view."""
    engine = engine or default_engine()
    deadline = time.monotonic() + timeout_s
    while True:
        view = get_job(engine, job_id)
        if view["finishedAt"] or time.monotonic() >= deadline:
            return view
        time.sleep(poll_s)


def create_batch(engine: Engine, items: list[Any], name: str | None = None,
                 batch_id: str | None = None, **kw: Any) -> dict[str, Any]:
    """See :func:`worker.batches.create_batch`."""
    return batches.create_batch(engine, items, name=name, batch_id=batch_id, **kw)


def get_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    return batches.get_batch(engine, batch_id)


def list_batches(engine: Engine, **kw: Any) -> dict[str, Any]:
    return batches.list_batches(engine, **kw)


def batch_report(engine: Engine, batch_id: str) -> list[dict[str, Any]]:
    return batches.report(engine, batch_id)


def retry_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    return batches.retry_batch(engine, batch_id)


def cancel_batch(engine: Engine, batch_id: str) -> dict[str, Any]:
    return batches.cancel_batch(engine, batch_id)


__all__ = [
    "Conflict",
    "add_steps",
    "NotFound",
    "SpecError",
    "StepStatus",
    "batch_report",
    "cancel_batch",
    "cancel_job",
    "create_batch",
    "create_job",
    "get_batch",
    "get_job",
    "list_batches",
    "list_jobs",
    "replay_deliveries",
    "parse_spec",
    "retry_batch",
    "retry_job",
    "submit",
    "wait",
]
