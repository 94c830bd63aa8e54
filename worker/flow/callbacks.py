"""A callback's snapshot, after the receiver accepted it: confirm terminal states with
one fetch (``MJFLOW_CONFIRM_TERMINAL_CALLBACKS``), then the one reconcile path (whose
transitions hand out what follows: the store, a modal's input, the job's finish)."""
from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from worker.errors import MjflowError
from worker.flow.engine import Engine
from worker.jobs.reconcile import reconcile
from worker.upstream import Task

log = logging.getLogger("mjflow.callback")


def reconcile_callback(engine: Engine, step_id: str, snapshot: dict[str, Any]) -> str:
    try:
        task = Task.model_validate(snapshot)
    except ValidationError:
        return "invalid"
    if task.is_terminal and engine.settings.confirm_terminal_callbacks:
        try:
            confirmed = engine.client.fetch(task.id)
        except MjflowError as exc:
            log.warning("could not confirm terminal callback for step %s: %s", step_id, exc)
            confirmed = None
        if confirmed is None or confirmed.id != task.id:
            engine.store.poll_at(step_id, time.time())       # poll soon
            return "unconfirmed"
        # the upstream's own copy decides, its ``state`` included: a task is only ever
        # adopted by the step whose state the upstream recorded with it
        task = confirmed
    brief = engine.store.brief(step_id)
    result = reconcile(engine.store, step_id, task, engine.timing(brief.custom_id if brief else None))
    engine.store.bump("callbacks", f"reconciled_{result.split(':')[0]}")
    return result
