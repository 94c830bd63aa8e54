"""Storing a succeeded step's images, then marking the step succeeded (or failed).

The step sits in ``storing`` (and in ``{p}:storing``) until this finishes; a retryable
failure (S3 down, image host timing out) only re-schedules it with backoff, so an
outage loses nothing. Keys are deterministic, so a second run overwrites the same objects.
"""
from __future__ import annotations

import logging
from typing import Any

from worker.errors import MjflowError, PermanentError, RetryableError
from worker.flow.engine import Engine
from worker.jobs import machine
from worker.jobs.model import Step, StepStatus
from worker.jobs.store import Txn
from worker.storage import StoreRequest, store_step_images
from worker.storage.media import VideoRequest, store_full_size, store_video_step
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
        _finish(engine, job.id, step_id, S.SUCCEEDED, [], None, _seed(engine, step))
        return "stored"
    client = engine.member(step.upstream).client

    def refresh() -> str | None:
        task = client.fetch(step.task_id or "")
        return client.image_url_for(task) if task else None

    summary = step.task or {}
    try:
        url = client.image_url_for(Task(id=step.task_id or "", imageUrl=step.image_url))
    except PermanentError as exc:
        if not summary.get("videos"):
            _finish(engine, job.id, step_id, S.FAILED, [], f"no image to store: {exc}")
            return "failed"
        url = ""
    full_size = summary.get("imageUrls") or []
    split = bool(job.spec.get("splitGrid")) and summary.get("action") != "UPSCALE" \
        and step.label not in ("DESCRIBE", "SHORTEN") and not summary.get("video")
    req = StoreRequest(
        job_id=job.id, step_index=step.index, label=step.label, task_id=step.task_id or "",
        prompt=job.spec.get("prompt") or "", image_url=url,
        split_grid=split and len(full_size) != 4,
        refresh_url=refresh, headers={"User-Agent": client.profile.user_agent},
        allowed_hosts=tuple(client.allowed_image_hosts),
    )
    try:
        if summary.get("video"):
            images = store_video_step(engine.sink, engine.http, VideoRequest(
                req, _clips(summary, url), lambda: _fresh_clips(engine, step)),
                settings=engine.settings)
        else:
            images = store_step_images(engine.sink, engine.http, req, settings=engine.settings)
            if split and len(full_size) == 4:
                images += store_full_size(engine.sink, engine.http, req, full_size,
                                          settings=engine.settings)
    except RetryableError as exc:
        delay = engine.store.reschedule_store(step_id, STORE_BACKOFF_S)
        engine.store.bump("storage", "retryable_failures")
        log.warning("store of step %s failed (retry in %.0fs): %s", step_id, delay, exc)
        return "retry"
    except PermanentError as exc:
        engine.store.bump("storage", "permanent_failures")
        what = "the video" if summary.get("video") else "the image"
        _finish(engine, job.id, step_id, S.FAILED, [], f"storing {what} failed: {exc}")
        return "failed"
    engine.store.bump("storage", "bytes", sum(i.bytes for i in images))
    engine.store.bump("storage", "images", len(images))
    _finish(engine, job.id, step_id, S.SUCCEEDED, [i.to_dict() for i in images], None,
            _seed(engine, step))
    return "stored"


def _clips(summary: dict[str, Any], image_url: str) -> list[tuple[str, str | None]]:
    """The clips to store: ``videoUrls``/``videoUrl``, else the task's ``imageUrl``, which
    is the MP4 itself on trueai's Discord accounts."""
    clips = [(str(u), str(t) if t else None) for u, t in summary.get("videos") or []]
    return clips or [(image_url, None)]


def _fresh_clips(engine: Engine, step: Step) -> list[tuple[str, str | None]]:
    client = engine.member(step.upstream).client
    task = client.fetch(step.task_id or "")
    if task is None:
        return []
    return task.videos or [(client.image_url_for(task), None)]


def _seed(engine: Engine, step: Step) -> dict[str, Any]:
    """The image seed (``seed: true``), fetched once the task succeeded; a failure to get
    it is recorded, not fatal."""
    if not step.options.get("seed") or not step.task_id:
        return {}
    try:
        seed = engine.member(step.upstream).client.image_seed(step.task_id)
    except MjflowError as exc:
        return {"seedError": str(exc)}
    return {"seed": seed} if seed else {"seedError": "the upstream gave no seed"}


def _no_image(spec: dict, step) -> bool:  # type: ignore[no-untyped-def]
    """DESCRIBE and SHORTEN roots produce text, not images."""
    return step.parent is None and spec.get("action") in ("DESCRIBE", "SHORTEN")


def _finish(engine: Engine, job_id: str, step_id: str, to: StepStatus, images: list[dict],
            reason: str | None, extra: dict[str, Any] | None = None) -> None:
    def fn(tx: Txn) -> None:
        step = tx.steps[step_id]
        if step.status != S.STORING:
            return
        step.images = images
        step.task = {**step.task, **(extra or {})}
        if machine.move(tx, step, to, reason=reason):
            tx.effect("stored" if to == S.SUCCEEDED else "store_failed")

    engine.store.mutate(job_id, fn)
