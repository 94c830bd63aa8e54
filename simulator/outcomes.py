"""What a submit did, in upstream-neutral terms, and the common submit fields.

The state model returns an :class:`Outcome`; :mod:`simulator.answers` turns it
into the profile's HTTP status and body (code 1/21/22/23/9/24/25/3/4, envelopes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class OutcomeKind(str, Enum):
    ACCEPTED = "accepted"  # task created and running (code 1)
    QUEUED = "queued"  # task created, waiting for a slot (code 22)
    MODAL = "modal"  # MODAL task created; call /submit/modal (code 21)
    EXISTED = "existed"  # dataeyes: identical action already submitted (code 21)
    QUEUE_FULL = "queue_full"  # rejected: queue full (23 / 9)
    BALANCE = "balance"  # rejected: out of credit (balance_after fault)
    BANNED = "banned"  # rejected: banned word (24)
    INVALID = "invalid"  # validation error (4)
    NOT_FOUND = "not_found"  # parent / task missing (3)
    GATEWAY_REJECTED = "gateway_rejected"  # new-api's own 400 (task_no_found, not success)


@dataclass
class Outcome:
    """Result of one submit call."""

    kind: OutcomeKind
    task_id: str | None = None
    message: str = ""
    number_of_queues: int = 0
    result_list: list[str] | None = None  # upload-discord-images
    properties: dict[str, Any] = field(default_factory=dict)
    instance_id: str = ""
    gateway_keeps_21: bool = False  # Inpaint / CustomZoom modal under new-api

    @property
    def created(self) -> bool:
        return self.kind in {OutcomeKind.ACCEPTED, OutcomeKind.QUEUED, OutcomeKind.MODAL}


@dataclass
class SubmitContext:
    """Fields every submit carries (``BaseSubmitDTO`` plus routing hints)."""

    mode: str | None = None  # FAST / RELAX / TURBO
    state: str | None = None
    notify_hook: str | None = None
    bot_type: str | None = None
