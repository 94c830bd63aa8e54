"""Hands follow-up work to the Celery queues (the production :class:`~worker.flow.engine.Enqueue`)."""
from __future__ import annotations

from typing import Any

from worker.celery_app import ROUTES, get_app


class CeleryEnqueue:
    """Hands follow-up work to Celery queues."""

    def _send(self, name: str, *args: Any) -> None:
        get_app().send_task(name, args=list(args), queue=ROUTES[name])

    def submit(self, step_id: str) -> None:
        self._send("mjflow.submit", step_id)

    def store(self, step_id: str) -> None:
        self._send("mjflow.store", step_id)

    def cancel(self, step_id: str) -> None:
        self._send("mjflow.cancel_step", step_id)

    def reconcile(self, step_id: str) -> None:
        """Reconcile the snapshot the receiver keeps for the step (``worker.jobs.inbox``)."""
        self._send("mjflow.reconcile", step_id)

    def finish(self, job_id: str) -> None:
        self._send("mjflow.finish", job_id)

    def step_event(self, step_id: str) -> None:
        self._send("mjflow.step_event", step_id)

    def deliver(self) -> None:
        self._send("mjflow.deliver")
