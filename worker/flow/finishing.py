"""When a job finishes: write its manifest beside its images and queue its signed event;
when a step is stored (with ``MJFLOW_STEP_EVENTS``): queue its event.

Runs from ``{p}:finishing`` until done; both effects are idempotent (the manifest key is
fixed, the delivery id is derived from the job and its finish time).
"""
from __future__ import annotations

import logging

from worker.delivery import notify_job, notify_step
from worker.flow.engine import Engine
from worker.jobs.views import job_view, load_view
from worker.storage import build_manifest, write_manifest

log = logging.getLogger("mjflow.finish")


def finish_job(engine: Engine, job_id: str) -> str:
    loaded = engine.store.load(job_id)
    if loaded is None:
        engine.r.zrem(engine.keys.finishing(), job_id)
        return "unknown-job"
    job, steps = loaded
    view = job_view(job, steps, engine.images)
    manifest = build_manifest(view, view["steps"])
    manifest["spec"] = {k: v for k, v in job.spec.items()
                        if k not in ("base64Array", "base64", "sourceBase64", "targetBase64")}
    where = write_manifest(engine.sink, job_id, manifest)
    engine.store.set_manifest(job_id, where["key"], where["uri"])
    if view.get("callbackUrl"):
        notify_job(engine.r, engine.keys, view)
        engine.enqueue.deliver()
    engine.r.zrem(engine.keys.finishing(), job_id)
    log.info("job %s finished %s; manifest %s", job_id, view["status"], where["uri"])
    return "finished"


def emit_step_event(engine: Engine, step_id: str) -> str:
    """A stored step's signed ``step.succeeded`` event (``MJFLOW_STEP_EVENTS``)."""
    owner = engine.store.job_of(step_id)
    view = load_view(engine.store, owner, engine.images) if owner else None
    if view is None:
        return "unknown-step"
    if view.get("callbackUrl"):
        notify_step(engine.r, engine.keys, view, step_id, settings=engine.settings)
        engine.enqueue.deliver()
    return "step-event"
