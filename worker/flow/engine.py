"""The composition root: one object that wires settings, Redis, the store, the fleet of
upstreams (each with its client, profile and window) and the sink together for the plain functions (submit, poll, store,
finish) that Celery tasks, the web app, the CLI and tests call.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import requests

from worker.flow import budget, receiver
from worker.flow.fleet import Fleet, Member
from worker.flow.tokens import hook_token
from worker.jobs.deadlines import Timing, timing_from
from worker.jobs.model import upstream_state
from worker.jobs.store import JobStore
from worker.keys import Keys
from worker.redis_conn import connect
from worker.settings import Settings, get_settings
from worker.storage import Sink, sink_from_url
from worker.storage.locate import Objects
from worker.upstream.models import is_upscale

CALLBACK_POLL_S = 60.0   # with callbacks expected, polling is only the safety net


class Enqueue(Protocol):
    """How follow-up work is handed to workers (Celery in production)."""

    def submit(self, step_id: str) -> None: ...
    def store(self, step_id: str) -> None: ...
    def cancel(self, step_id: str) -> None: ...
    def reconcile(self, step_id: str) -> None: ...
    def finish(self, job_id: str) -> None: ...
    def step_event(self, step_id: str) -> None: ...
    def deliver(self) -> None: ...


class Inline:
    """Runs follow-up work in this process (tests, the Hypothesis model, scripts)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.log: list[tuple[str, Any]] = []

    def submit(self, step_id: str) -> None:
        self.log.append(("submit", step_id))

    def store(self, step_id: str) -> None:
        self.log.append(("store", step_id))

    def cancel(self, step_id: str) -> None:
        self.log.append(("cancel", step_id))

    def reconcile(self, step_id: str) -> None:
        self.log.append(("reconcile", step_id))

    def finish(self, job_id: str) -> None:
        self.log.append(("finish", job_id))

    def step_event(self, step_id: str) -> None:
        self.log.append(("step_event", step_id))

    def deliver(self) -> None:
        self.log.append(("deliver", None))


@dataclass
class Engine:
    settings: Settings
    r: redis.Redis
    keys: Keys
    enqueue: Enqueue = field(default_factory=Inline)

    def __post_init__(self) -> None:
        self.fleet = Fleet(self.r, self.keys, self.settings)
        self.store = JobStore(self.r, self.keys, retention_s=self.settings.job_retention_s,
                              redrive_s=self.settings.redrive_s, profile_of=self.fleet.profile_of)
        # what follows each transition, wired once (see worker.jobs.machine)
        self.store.on_effect.update({
            "store_scheduled": self.enqueue.store,
            "modal_pending": self.enqueue.submit,
            "job_finished": self.enqueue.finish,
            "cancel_upstream": self.enqueue.cancel,
            "task_accepted": lambda step_id: budget.charge(self.store, self.fleet, step_id),
            "task_failed": lambda step_id: budget.refund(self.store, self.fleet, step_id),
        })
        if self.settings.step_events:
            self.store.on_effect["step_stored"] = self.enqueue.step_event

    def member(self, name: str | None) -> Member:
        """The fleet's upstream called ``name`` (``None``: a step recorded before the fleet)."""
        return self.fleet.get(name)

    @functools.cached_property
    def http(self) -> requests.Session:
        """A pooled session for downloads (images) and deliveries."""
        return requests.Session()

    @functools.cached_property
    def sink(self) -> Sink:
        return sink_from_url(self.settings.storage_url)

    @functools.cached_property
    def objects(self) -> Objects:
        """Image records → where each object is, its URL, whether it is still there."""
        return Objects(self.sink, presign_ttl_s=self.settings.presign_ttl_s)

    def images(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A step's image records as views show them: located, with their URLs."""
        return self.objects.show(records)

    def images_checked(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same, plus ``available`` (and why not) from a cached check of the sink."""
        return self.objects.show(records, check=True)

    def images_listed(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same without URLs (lists and reports)."""
        return self.objects.show(records, url=False)

    @property
    def callbacks_configured(self) -> bool:
        """Some upstream of the fleet is expected to call back (the receiver is probed)."""
        return any(self.callbacks_expected(m) for m in self.fleet)

    def callbacks_expected(self, member: Member) -> bool:
        return bool(self.settings.public_url and member.profile.callbacks_expected)

    def callbacks_on(self, member: Member) -> bool:
        """Expected from ``member``, and the receiver answered its last probe."""
        return self.callbacks_expected(member) and receiver.answers(self.r, self.keys)

    def poll_interval_s(self, member: Member) -> float:
        if self.settings.poll_interval_s:
            return self.settings.poll_interval_s
        if self.callbacks_on(member):
            return max(CALLBACK_POLL_S, member.poll_interval_s)
        return member.poll_interval_s

    def timing(self, member: Member | None, custom_id: str | None = None) -> Timing:
        """How long a step of ``member`` (None: an upstream no longer in the fleet, judged
        as the first one) may wait and run, and when to look at it again."""
        member = member or next(iter(self.fleet))
        deadline = (self.settings.upscale_deadline_s if is_upscale(custom_id)
                    else self.settings.step_deadline_s)
        return timing_from(self.settings, self.poll_interval_s(member), deadline,
                           mode=member.config.mode)

    def hook_url(self, member: Member, step_id: str, generation: int = 0) -> str | None:
        """Where the upstream calls back for this attempt of the step (None: no callbacks;
        sent while the receiver is down too, so callbacks resume by themselves)."""
        if not self.callbacks_expected(member):
            return None
        token = hook_token(self.settings.hook_secret or "", upstream_state(step_id, generation))
        return f"{self.settings.public_url}/hooks/mj/{step_id}/{token}"


def build_engine(settings: Settings | None = None, enqueue: Enqueue | None = None) -> Engine:
    settings = settings or get_settings()
    return Engine(settings, connect(settings), Keys(settings.key_prefix), enqueue or Inline())
