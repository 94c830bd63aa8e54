"""When a job finishes: write its manifest beside its images and queue its signed event.

Runs from ``{p}:finishing`` until done; both effects are idempotent (the manifest key is
fixed, the delivery id is derived from the job and its finish time).
"""
from __future__ import annotations

import logging

from worker.delivery import notify_job, notify_step
from worker.flow.engine import Engine
from worker.jobs.views import job_view
from worker.storage import build_manifest, write_manifest

log = logging.getLogger("mjflow.finish")


def job_view_by_id(engine: Engine, job_id: str, *, urls: bool = True) -> dict | None:
    loaded = engine.store.load(job_id)
    if loaded is None:
        return None
    job, steps = loaded
    url_for = None
    if urls:
        ttl = engine.settings.presign_ttl_s
        url_for = lambda key: engine.sink.url(key, ttl)
    return job_view(job, steps, url_for)


def finish_job(engine: Engine, job_id: str) -> str:
    if job_id.startswith("step:"):
        step_id = job_id.removeprefix("step:")
        owner = engine.store.job_of(step_id)
        view = job_view_by_id(engine, owner) if owner else None
        if view:
            notify_step(engine.r, engine.keys, view, step_id, settings=engine.settings)
        return "step-event"
    loaded = engine.store.load(job_id)
    if loaded is None:
        engine.r.zrem(engine.keys.finishing(), job_id)
        return "unknown-job"
    job, steps = loaded
    ttl = engine.settings.presign_ttl_s
    view = job_view(job, steps, lambda key: engine.sink.url(key, ttl))
    manifest = build_manifest(view, view["steps"])
    manifest["spec"] = {k: v for k, v in job.spec.items()
                        if k not in ("base64Array", "base64", "sourceBase64", "targetBase64")}
    key = write_manifest(engine.sink, job_id, manifest)
    engine.r.hset(engine.keys.job(job_id), "manifest", key)
    if view.get("callbackUrl"):
        notify_job(engine.r, engine.keys, view)
        engine.enqueue.deliver()
    engine.r.zrem(engine.keys.finishing(), job_id)
    log.info("job %s finished %s; manifest %s", job_id, view["status"], key)
    return "finished"
