"""Celery tasks: thin wrappers over plain functions, each safe to run twice."""
from __future__ import annotations

import functools
import logging
from typing import Any

from worker.celery_app import ROUTES, app
from worker.engine import Engine, build_engine

log = logging.getLogger("mjflow.tasks")


class CeleryEnqueue:
    """Hands follow-up work to Celery queues."""

    def _send(self, name: str, *args: Any) -> None:
        app.send_task(name, args=list(args), queue=ROUTES[name])

    def submit(self, step_id: str) -> None:
        self._send("mjflow.submit", step_id)

    def store(self, step_id: str) -> None:
        self._send("mjflow.store", step_id)

    def reconcile(self, step_id: str, snapshot: dict[str, Any], source: str) -> None:
        self._send("mjflow.reconcile", step_id, snapshot, source)

    def finish(self, job_id: str) -> None:
        self._send("mjflow.finish", job_id)

    def deliver(self) -> None:
        self._send("mjflow.deliver")


@functools.lru_cache(maxsize=1)
def engine() -> Engine:
    return build_engine(enqueue=CeleryEnqueue())


@app.task(name="mjflow.submit")
def submit(step_id: str) -> str:
    from worker.submit import submit_step

    return submit_step(engine(), step_id)


@app.task(name="mjflow.reconcile")
def reconcile(step_id: str, snapshot: dict[str, Any], source: str = "callback") -> str:
    from worker.callbacks import reconcile_callback

    return reconcile_callback(engine(), step_id, snapshot, source)


@app.task(name="mjflow.store")
def store(step_id: str) -> str:
    from worker.storing import store_step

    return store_step(engine(), step_id)


@app.task(name="mjflow.finish")
def finish(job_id: str) -> str:
    from worker.finishing import finish_job

    return finish_job(engine(), job_id)


@app.task(name="mjflow.deliver")
def deliver() -> int:
    from worker.delivery import deliver_due

    e = engine()
    return deliver_due(e.r, e.keys, settings=e.settings)


@app.task(name="mjflow.tick")
def tick() -> dict[str, int] | None:
    from worker.sweeps import tick as run_tick

    return run_tick(engine())


@app.task(name="mjflow.create_job", bind=True)
def create_job(self, spec: dict[str, Any], idempotency_key: str | None = None) -> str | None:  # type: ignore[no-untyped-def]
    """The Celery door (docs/api.md): the JSON spec of ``POST /v1/jobs``; returns the job id.

    A redelivered message makes no second job: the Celery task id is the default
    Idempotency-Key. An invalid spec is logged with its field paths and dropped.
    """
    from worker.api import SpecError
    from worker.api import create_job as create

    key = idempotency_key or (f"celery:{self.request.id}" if self.request.id else None)
    try:
        return create(engine(), spec, idempotency_key=key)["id"]
    except SpecError as exc:
        log.error("mjflow.create_job: invalid spec dropped: %s", exc)
        return None


@app.task(name="mjflow.create_batch")
def create_batch(items: list[Any], name: str | None = None,
                 batch_id: str | None = None) -> str | None:
    """The batch door: a list of specs (or prompts); safe to run twice (see worker.batches)."""
    from worker.api import SpecError
    from worker.api import create_batch as create

    try:
        return create(engine(), items, name=name, batch_id=batch_id)["id"]
    except SpecError as exc:
        log.error("mjflow.create_batch: invalid batch dropped: %s", exc)
        return None
