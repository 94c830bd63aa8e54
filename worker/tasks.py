"""Celery tasks: thin wrappers over plain functions, each safe to run twice."""
from __future__ import annotations

import functools
import logging
from typing import Any

from worker.batches import create_batch as create_many
from worker.celery_app import get_app
from worker.delivery import deliver_due
from worker.enqueue import CeleryEnqueue
from worker.errors import Conflict, NotFound, SpecError
from worker.flow.callbacks import reconcile_callback, reconcile_step
from worker.flow.cancelling import cancel_upstream
from worker.flow.engine import Engine, build_engine
from worker.flow.finishing import emit_step_event, finish_job
from worker.flow.storing import store_step
from worker.flow.submit import submit_step
from worker.flow.tick import tick as run_tick
from worker.job_ops import add_steps as add_to_job
from worker.job_ops import create_job as create_one

log = logging.getLogger("mjflow.tasks")
app = get_app()


@functools.lru_cache(maxsize=1)
def engine() -> Engine:
    return build_engine(enqueue=CeleryEnqueue())


@app.task(name="mjflow.submit")
def submit(step_id: str) -> str:
    return submit_step(engine(), step_id)


@app.task(name="mjflow.reconcile")
def reconcile(step_id: str, snapshot: dict[str, Any] | None = None, *_legacy: Any) -> str:
    # a snapshot (and an unread "source") only in messages of the previous release
    if snapshot is not None:
        return reconcile_callback(engine(), step_id, snapshot)
    return reconcile_step(engine(), step_id)


@app.task(name="mjflow.store")
def store(step_id: str) -> str:
    return store_step(engine(), step_id)


@app.task(name="mjflow.cancel_step")
def cancel_step(step_id: str) -> str:
    return cancel_upstream(engine(), step_id)


@app.task(name="mjflow.finish")
def finish(job_id: str) -> str:
    return finish_job(engine(), job_id)


@app.task(name="mjflow.step_event")
def step_event(step_id: str) -> str:
    return emit_step_event(engine(), step_id)


@app.task(name="mjflow.deliver")
def deliver() -> int:
    e = engine()
    return deliver_due(e.r, e.keys, settings=e.settings)


@app.task(name="mjflow.tick")
def tick() -> dict[str, int] | None:
    return run_tick(engine())


@app.task(name="mjflow.create_job", bind=True)
def create_job(self, spec: dict[str, Any], idempotency_key: str | None = None) -> str | None:  # type: ignore[no-untyped-def]
    """The Celery door (docs/api.md): the JSON spec of ``POST /v1/jobs``; returns the job id.

    A redelivered message makes no second job: the Celery task id is the default
    Idempotency-Key. An invalid spec is logged with its field paths and dropped.
    """
    key = idempotency_key or (f"celery:{self.request.id}" if self.request.id else None)
    try:
        return create_one(engine(), spec, idempotency_key=key)["id"]
    except SpecError as exc:
        log.error("mjflow.create_job: invalid spec dropped: %s", exc)
        return None


@app.task(name="mjflow.create_batch")
def create_batch(items: list[Any], name: str | None = None,
                 batch_id: str | None = None) -> str | None:
    """The batch door: a list of specs (or prompts); safe to run twice (see worker.batches)."""
    try:
        return create_many(engine(), items, name=name, batch_id=batch_id)["id"]
    except SpecError as exc:
        log.error("mjflow.create_batch: invalid batch dropped: %s", exc)
        return None


@app.task(name="mjflow.add_steps")
def add_steps(job_id: str, follow_up: dict[str, Any]) -> list[str] | None:
    """Act later (docs/api.md): a follow-up (``{"step", "button", "then", ...}``) under a step
    of an existing job; returns the new step ids. Invalid or impossible ones are logged and
    dropped. A redelivered message adds the follow-up twice: send it once (acks are late,
    so only a killed worker redelivers)."""
    try:
        return add_to_job(engine(), job_id, follow_up)["added"]
    except (SpecError, NotFound, Conflict) as exc:
        log.error("mjflow.add_steps: follow-up for %s dropped: %s", job_id, exc)
        return None
