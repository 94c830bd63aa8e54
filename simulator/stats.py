"""Counters the simulator keeps for tests and benchmarks (``GET /_sim/stats``).

Not thread-safe on its own: the :class:`~simulator.models.Simulator` mutates it
under its single lock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Mutable counters; :meth:`as_dict` is the JSON served by the admin API."""

    submissions: Counter[str] = field(default_factory=Counter)  # created tasks by action
    answers: Counter[str] = field(default_factory=Counter)  # submit outcome kinds
    requests: Counter[str] = field(default_factory=Counter)  # route name → count
    callbacks: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)  # fault knob → times it fired
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    state_index: dict[str, list[str]] = field(default_factory=dict)
    action_index: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    queue_full_answers: int = 0
    peak_running: int = 0
    peak_in_flight: int = 0
    in_flight: int = 0

    def note_root_state(self, state: str | None, task_id: str) -> None:
        """Record a new root task; the same non-empty ``state`` twice is a duplicate."""
        if not state:
            return
        ids = self.state_index.setdefault(state, [])
        ids.append(task_id)
        if len(ids) > 1:
            self.duplicates.append({"kind": "state", "state": state, "taskIds": list(ids)})

    def note_action(self, parent_id: str, custom_id: str, task_id: str) -> None:
        """Record a button click; the same parent + customId twice is a duplicate."""
        ids = self.action_index.setdefault((parent_id, custom_id), [])
        ids.append(task_id)
        if len(ids) > 1:
            self.duplicates.append(
                {
                    "kind": "action",
                    "parentId": parent_id,
                    "customId": custom_id,
                    "taskIds": list(ids),
                }
            )

    def as_dict(
        self, tasks_by_status: dict[str, int], running: int, waiting: int
    ) -> dict[str, Any]:
        cb = self.callbacks
        return {
            "submissions": dict(self.submissions),
            "answers": dict(self.answers),
            "duplicate_submissions": {
                "count": len(self.duplicates),
                "items": list(self.duplicates),
            },
            "callbacks": {
                k: cb.get(k, 0)
                for k in ("scheduled", "sent", "delivered", "dropped", "duplicated", "failed")
            },
            "requests": dict(self.requests),
            "faults": dict(self.faults),
            "peak_running": self.peak_running,
            "peak_in_flight": self.peak_in_flight,
            "in_flight": self.in_flight,
            "running": running,
            "waiting": waiting,
            "queue_full_answers": self.queue_full_answers,
            "tasks": tasks_by_status,
        }
