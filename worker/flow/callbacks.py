"""A callback's snapshot, after the receiver accepted it: confirm terminal states with
one fetch (``MJFLOW_CONFIRM_TERMINAL_CALLBACKS``), then the one reconcile path."""
from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from worker.errors import MjflowError
from worker.flow.engine import Engine
from worker.flow.polling import after_poll
from worker.jobs.reconcile import reconcile
from worker.upstream import Task

log = logging.getLogger("mjflow.callback")


def reconcile_callback(engine: Engine, step_id: str, snapshot: dict[str, Any],
                       source: str = "callback") -> str:
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
            engine.r.zadd(engine.keys.poll(), {step_id: time.time()}, xx=True)   # poll soon
            return "unconfirmed"
        if not confirmed.state and task.state:
            confirmed.state = task.state
        task = confirmed
    step = engine.store.get_step(step_id)
    custom_id = step.custom_id if step else None
    result = reconcile(engine.store, step_id, task, engine.timing(custom_id))
    after_poll(engine, step_id, result)
    engine.store.bump("callbacks", f"reconciled_{result.split(':')[0]}")
    return result
