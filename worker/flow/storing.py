"""Storing a succeeded step's images, then marking the step succeeded (or failed).

The step sits in ``storing`` (and in ``{p}:storing``) until this finishes; a retryable
failure (S3 down, image host timing out) only re-schedules it with backoff, so an
outage loses nothing. Keys are deterministic, so a second run overwrites the same objects.
"""
from __future__ import annotations

import logging

from worker.errors import PermanentError, RetryableError
from worker.flow.engine import Engine
from worker.jobs import machine
from worker.jobs.model import StepStatus
from worker.jobs.store import Txn
from worker.storage import StoreRequest, store_step_images
from worker.upstream import Task

log = logging.getLogger("mjflow.store")
S = StepStatus
STORE_BACKOFF_S = (2.0, 5.0, 15.0, 30.0, 60.0)


def store_step(engine: Engine, step_id: str, now: float | None = None) -> str:
    job_id = engine.store.job_of(step_id)
    loaded = engine.store.load(job_id) if job_id else None
    if loaded is None:
        return "unknown-step"
    job, steps = loaded
    step = next((s for s in steps if s.id == step_id), None)
    if step is None or step.status != S.STORING:
        return "not-storing"
    if _no_image(job.spec, step):
        _finish(engine, job.id, step_id, S.SUCCEEDED, [], None)
        return "stored"
    client = engine.client

    def refresh() -> str | None:
        task = client.fetch(step.task_id or "")
        return client.image_url_for(task) if task else None

    try:
        url = client.image_url_for(Task(id=step.task_id or "", imageUrl=step.image_url))
    except PermanentError as exc:
        _finish(engine, job.id, step_id, S.FAILED, [], f"no image to store: {exc}")
        return "failed"
    req = StoreRequest(
        job_id=job.id, step_index=step.index, label=step.label, task_id=step.task_id or "",
        prompt=job.spec.get("prompt") or "", image_url=url,
        split_grid=bool(job.spec.get("splitGrid")) and step.task.get("action") != "UPSCALE"
        and step.label not in ("DESCRIBE", "SHORTEN"),
        refresh_url=refresh, headers={"User-Agent": client.profile.user_agent},
        allowed_hosts=tuple(client.allowed_image_hosts),
    )
    try:
        images = store_step_images(engine.sink, engine.http, req, settings=engine.settings)
    except RetryableError as exc:
        delay = engine.store.reschedule_store(step_id, STORE_BACKOFF_S)
        engine.store.bump("storage", "retryable_failures")
        log.warning("store of step %s failed (retry in %.0fs): %s", step_id, delay, exc)
        return "retry"
    except PermanentError as exc:
        engine.store.bump("storage", "permanent_failures")
        _finish(engine, job.id, step_id, S.FAILED, [], f"storing the image failed: {exc}")
        return "failed"
    engine.store.bump("storage", "bytes", sum(i.bytes for i in images))
    engine.store.bump("storage", "images", len(images))
    _finish(engine, job.id, step_id, S.SUCCEEDED, [i.to_dict() for i in images], None)
    return "stored"


def _no_image(spec: dict, step) -> bool:  # type: ignore[no-untyped-def]
    """DESCRIBE and SHORTEN roots produce text, not images."""
    return step.parent is None and spec.get("action") in ("DESCRIBE", "SHORTEN")


def _finish(engine: Engine, job_id: str, step_id: str, to: StepStatus, images: list[dict],
            reason: str | None) -> None:
    def fn(tx: Txn) -> None:
        step = tx.steps[step_id]
        if step.status != S.STORING:
            return
        step.images = images
        if machine.move(tx, step, to, reason=reason):
            tx.effect("stored" if to == S.SUCCEEDED else "store_failed")

    engine.store.mutate(job_id, fn)
