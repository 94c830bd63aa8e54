"""Retention: finished jobs are kept ``MJFLOW_JOB_RETENTION_S`` and then purged from Redis
(their images and manifest stay in storage)."""
from __future__ import annotations

from worker.delivery import purge_job_deliveries
from worker.flow.engine import Engine


def purge_job(engine: Engine, job_id: str) -> None:
    k = engine.keys
    loaded = engine.store.load(job_id)
    pipe = engine.r.pipeline(transaction=True)
    if loaded:
        job, steps = loaded
        for s in steps:
            pipe.delete(k.step(s.id), k.step_seen(s.id))
            pipe.hdel(k.inbox(), s.id)
            pipe.hdel(k.inbox_rank(), s.id)
            pipe.zrem(k.inbox_dirty(), s.id)
            pipe.zrem(k.confirm(), s.id)
            pipe.zrem(k.late(), s.id)
            if s.task_id:
                pipe.delete(k.task(s.task_id))
        if job.batch:
            pipe.zrem(k.batch_jobs(job.batch), job_id)
    pipe.delete(k.job(job_id), k.job_steps(job_id), k.job_events(job_id), k.job_spend(job_id))
    pipe.zrem(k.jobs(), job_id)
    pipe.zrem(k.retention(), job_id)
    pipe.srem(k.jobs_live(), job_id)
    pipe.execute()
    purge_job_deliveries(engine.r, k, job_id)
