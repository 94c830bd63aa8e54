"""The composition root: one object that wires settings, Redis, the store, the upstream
client, the window and the sink together for the plain functions (submit, poll, store,
finish) that Celery tasks, the web app, the CLI and tests call.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import requests

from worker.flow.window import Window
from worker.jobs.reconcile import Timing
from worker.jobs.store import JobStore
from worker.keys import Keys
from worker.redis_conn import connect
from worker.settings import Settings, get_settings
from worker.storage import sink_from_url
from worker.upstream import Profile, UpstreamClient, get_profile

CALLBACK_POLL_S = 60.0   # with callbacks expected, polling is only the safety net
UPSCALE_ACTIONS = ("upsample::",)


class Enqueue(Protocol):
    """How follow-up work is handed to workers (Celery in production)."""

    def submit(self, step_id: str) -> None: ...
    def store(self, step_id: str) -> None: ...
    def reconcile(self, step_id: str, snapshot: dict[str, Any], source: str) -> None: ...
    def finish(self, job_id: str) -> None: ...
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

    def reconcile(self, step_id: str, snapshot: dict[str, Any], source: str) -> None:
        self.log.append(("reconcile", step_id))

    def finish(self, job_id: str) -> None:
        self.log.append(("finish", job_id))

    def deliver(self) -> None:
        self.log.append(("deliver", None))


def hook_token(secret: str, step_id: str) -> str:
    return hmac.new(secret.encode(), step_id.encode(), hashlib.sha256).hexdigest()[:40]


def verify_hook_token(settings: Settings, step_id: str, token: str) -> bool:
    """Constant-time check against the current and the previous secret (any text: a
    non-ASCII token from the URL is compared as bytes, never an error)."""
    ok = False
    sent = token.encode("utf-8", "surrogateescape")
    for secret in (settings.hook_secret, settings.hook_secret_previous):
        if secret:
            ok |= hmac.compare_digest(hook_token(secret, step_id).encode(), sent)
    return ok


@dataclass
class Engine:
    settings: Settings
    r: redis.Redis
    keys: Keys
    enqueue: Enqueue = field(default_factory=Inline)

    def __post_init__(self) -> None:
        self.store = JobStore(self.r, self.keys, retention_s=self.settings.job_retention_s,
                              redrive_s=self.settings.redrive_s)
        self.store.on_effect["job_finished"] = self.enqueue.finish
        self.window = Window(self.r, self.keys, self.settings.max_in_flight)

    @property
    def profile(self) -> Profile:
        return get_profile(self.settings.upstream_profile)

    @functools.cached_property
    def client(self) -> UpstreamClient:
        return UpstreamClient.from_settings(self.settings)

    @functools.cached_property
    def http(self) -> requests.Session:
        """A pooled session for downloads (images) and deliveries."""
        return requests.Session()

    @functools.cached_property
    def sink(self):  # type: ignore[no-untyped-def]

        return sink_from_url(self.settings.storage_url)

    @property
    def callbacks_on(self) -> bool:
        return bool(self.settings.public_url and self.profile.callbacks_expected)

    def poll_interval_s(self) -> float:
        if self.settings.poll_interval_s:
            return self.settings.poll_interval_s
        if self.callbacks_on:
            return max(CALLBACK_POLL_S, self.profile.poll_interval_s)
        return self.profile.poll_interval_s

    def timing(self, custom_id: str | None = None) -> Timing:
        is_upscale = bool(custom_id) and any(a in custom_id for a in UPSCALE_ACTIONS)
        deadline = self.settings.upscale_deadline_s if is_upscale else self.settings.step_deadline_s
        return Timing(poll_in_s=self.poll_interval_s(), deadline_s=deadline)

    def hook_url(self, step_id: str) -> str | None:
        if not self.callbacks_on:
            return None
        token = hook_token(self.settings.hook_secret or "", step_id)
        return f"{self.settings.public_url}/hooks/mj/{step_id}/{token}"


def build_engine(settings: Settings | None = None, enqueue: Enqueue | None = None) -> Engine:
    settings = settings or get_settings()
    return Engine(settings, connect(settings), Keys(settings.key_prefix), enqueue or Inline())
