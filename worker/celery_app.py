"""The Celery app, built from settings in one small factory.

JSON only, acks late, reject on worker lost, prefetch 1, results ignored, and a
visibility timeout longer than any task may run (tasks are short: waiting lives in
Redis sorted sets, never in countdowns or ETAs). Nothing is built at import time:
:func:`get_app` builds the app on first use.
"""
from __future__ import annotations

import functools

from celery import Celery

from worker.beat import WhenDue
from worker.logs import connect_celery_signals
from worker.redis_conn import broker_ssl, broker_url, sentinel_transport_options
from worker.redisurl import is_sentinel
from worker.settings import Settings, get_settings

QUEUES = ("mjflow.submit", "mjflow.reconcile", "mjflow.store", "mjflow.deliver",
          "mjflow.tick", "mjflow.api")
VISIBILITY_TIMEOUT_S = 900
TASK_TIME_LIMIT_S = 300   # well under the visibility timeout
ROUTES = {
    "mjflow.submit": "mjflow.submit",
    "mjflow.reconcile": "mjflow.reconcile",
    "mjflow.store": "mjflow.store",
    "mjflow.finish": "mjflow.deliver",
    "mjflow.step_event": "mjflow.deliver",
    "mjflow.deliver": "mjflow.deliver",
    "mjflow.tick": "mjflow.tick",
    "mjflow.create_job": "mjflow.api",
    "mjflow.create_batch": "mjflow.api",
    "mjflow.add_steps": "mjflow.api",
    "mjflow.cancel_step": "mjflow.submit",
}


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S,
                 "global_keyprefix": f"{settings.key_prefix}:celery:"}
    if is_sentinel(settings.broker):
        transport |= sentinel_transport_options(settings)
    app = Celery("mjflow", broker=broker_url(settings), include=["worker.tasks"])
    if is_sentinel(settings.broker) and broker_ssl(settings):
        app.conf.broker_use_ssl = broker_ssl(settings)
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True, result_backend=None,
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_time_limit=TASK_TIME_LIMIT_S, task_soft_time_limit=TASK_TIME_LIMIT_S - 30,
        task_routes={name: {"queue": q} for name, q in ROUTES.items()},
        task_default_queue="mjflow.api",
        worker_max_tasks_per_child=2000,
        worker_hijack_root_logger=False,
        beat_schedule={"tick": {"task": "mjflow.tick", "schedule": WhenDue(settings.tick_interval_s),
                                "options": {"expires": max(5.0, settings.tick_interval_s * 5)}}},
        timezone="UTC",
    )
    return app


@functools.cache
def get_app() -> Celery:
    """The process's Celery app, built on first use from ``MJFLOW_*`` settings."""
    settings = get_settings()
    app = make_celery(settings)
    connect_celery_signals(settings)
    return app


def __getattr__(name: str) -> Celery:
    # ``celery -A worker.celery_app`` and ``from worker.celery_app import app`` build it here,
    # so importing this module costs nothing and reads no settings
    if name == "app":
        return get_app()
    raise AttributeError(name)
