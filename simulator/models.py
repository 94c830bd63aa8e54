"""The simulator's state model (moto-style: no HTTP here).

:class:`Simulator` holds the tasks, the per-account running slots and queues,
the clock, the fault knobs, the stats and a scheduler thread that moves tasks
through their lifecycle and sends callbacks. Every public method is
thread-safe: one re-entrant lock guards all state.

Concurrency (reference §6.1): each account runs ``core_size`` tasks and keeps
``queue_size`` waiting (``NOT_START``); a submit beyond that gets the profile's
queue-full answer. MODAL tasks hold no slot until ``/submit/modal``.

The submit operations live in :mod:`simulator.submits` and the running engine
(plans, slots, callbacks, new-api polls) in :mod:`simulator.engine`; both are
mixins of :class:`Simulator` sharing its state and lock.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .callbacks import CallbackDispatcher
from .cdn import DEFAULT_URL_TTL_S, UrlSigner, split_url
from .engine import EngineMixin
from .faults import Faults
from .images import ImageRecipe, ImageSpec
from .profiles import DEFAULT_PROFILE, Profile, get_profile
from .stats import Stats
from .submits import SubmitsMixin
from .tasks import Clock, IdGenerator, SimTask, Status
from .video import mp4_bytes
from .views import (
    PREVIEW_PREFIX,
    gateway_view,
    initial_gateway_row,
    preview_image_name,
    upstream_view,
)

DEFAULT_CORE_SIZE = 3
DEFAULT_QUEUE_SIZE = 10
DEFAULT_ACCOUNTS = 1
DEFAULT_PUBLIC_BASE = "http://127.0.0.1"
SCHEDULER_MAX_SLEEP_S = 0.25
CANCEL_REASON = "取消任务"
ROOT_BASE_INSTANCE_ID = 1118138338562560102
BODIES_KEPT = 500


@dataclass
class Account:
    """One Discord account: running slots and a FIFO of waiting task ids."""

    instance_id: str
    running: set[str] = field(default_factory=set)
    waiting: deque[str] = field(default_factory=deque)

    @property
    def load(self) -> int:
        return len(self.running) + len(self.waiting)


class Simulator(SubmitsMixin, EngineMixin):
    """A midjourney-proxy-compatible upstream, in memory."""

    def __init__(
        self,
        profile: str | Profile = DEFAULT_PROFILE,
        *,
        speed: float = 1.0,
        faults: Faults | dict[str, Any] | None = None,
        api_key: str = "",
        core_size: int = DEFAULT_CORE_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        accounts: int = DEFAULT_ACCOUNTS,
        url_ttl_s: float | None = None,
        public_base: str | None = None,
        clock: Clock | None = None,
        autostart: bool = True,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.profile = get_profile(profile)
        self.speed = float(speed)
        self.api_key = api_key
        self.core_size = core_size
        self.queue_size = queue_size
        self.public_base = public_base
        self.clock = clock or Clock()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._faults = faults if isinstance(faults, Faults) else Faults.model_validate(faults or {})
        self._rng = random.Random(self._faults.seed)
        self._list_calls = 0
        self.signer = UrlSigner(url_ttl_s if url_ttl_s is not None else DEFAULT_URL_TTL_S / speed)
        self._ids = IdGenerator()
        self._accounts = [Account(str(ROOT_BASE_INSTANCE_ID + i)) for i in range(max(1, accounts))]
        self._tasks: dict[str, SimTask] = {}
        self._uploads: dict[str, bytes] = {}
        self._bodies: deque[tuple[str, dict[str, Any]]] = deque(maxlen=BODIES_KEPT)
        self._stats = Stats()
        self._epoch = 0
        self._accepted_since_balance = 0
        self._next_gateway_poll_ms: int | None = None
        self._closed = False
        self._dispatcher = CallbackDispatcher(self._on_callback_result)
        self._thread: threading.Thread | None = None
        if autostart:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the scheduler thread (done by the constructor unless ``autostart=False``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mjsim-scheduler", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the scheduler and the callback pool."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._dispatcher.close()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = self.clock.now_ms()
                due = self._tick_locked(now)
                wait_s = SCHEDULER_MAX_SLEEP_S if due is None else (due - now) / 1000
                self._cond.wait(max(0.0, min(wait_s, SCHEDULER_MAX_SLEEP_S)))

    def tick(self) -> None:
        """Apply everything due now (the scheduler does this; handy with ``autostart=False``)."""
        with self._lock:
            self._tick_locked(self.clock.now_ms())

    def advance_clock(self, seconds: float) -> None:
        """Move the simulated clock forward (tasks, URL expiry, gateway polls)."""
        self.clock.advance(seconds)
        with self._cond:
            self._tick_locked(self.clock.now_ms())
            self._cond.notify_all()

    # ------------------------------------------------------------------ faults / admin
    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def set_faults(self, patch: Faults | dict[str, Any], *, replace: bool = False) -> Faults:
        """Merge ``patch`` into the faults (or replace them); returns the new faults."""
        with self._lock:
            if isinstance(patch, Faults):
                new = patch
            elif replace:
                new = Faults.model_validate(patch)
            else:
                new = self._faults.merged(patch)
            if new.seed != self._faults.seed or (replace and new.seed is not None):
                self._rng = random.Random(new.seed)
            if new.balance_after != self._faults.balance_after:
                self._accepted_since_balance = 0
            self._faults = new
            return new

    def reset(self, *, faults: bool = False) -> None:
        """Forget all tasks, uploads and stats; also reset faults if ``faults``."""
        with self._cond:
            self._epoch += 1
            self._tasks.clear()
            self._uploads.clear()
            self._bodies.clear()
            for acct in self._accounts:
                acct.running.clear()
                acct.waiting.clear()
            self._stats = Stats()
            self._accepted_since_balance = 0
            self._next_gateway_poll_ms = None
            self._dispatcher.clear()
            if faults:
                self._faults = Faults()
                self._rng = random.Random(None)
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """Counters as served by ``GET /_sim/stats``."""
        with self._lock:
            by_status = Counter(t.status.value for t in self._tasks.values())
            running = sum(len(a.running) for a in self._accounts)
            waiting = sum(len(a.waiting) for a in self._accounts)
            return self._stats.as_dict(dict(by_status), running, waiting)

    def timeline(self, task_id: str) -> dict[str, Any] | None:
        """A task's recorded events (state changes, callbacks), or ``None``."""
        with self._lock:
            t = self._tasks.get(task_id)
            if t is None:
                return None
            return {
                "id": t.id,
                "action": t.action,
                "mode": t.mode,
                "state": t.state,
                "status": t.status.value,
                "progress": t.progress,
                "notifyHook": t.notify_hook,
                "parentId": t.parent_id,
                "stuck": t.stuck,
                "willFail": t.will_fail,
                "account": self._accounts[t.account].instance_id,
                "events": list(t.events),
            }

    def get_task(self, task_id: str) -> SimTask | None:
        """The live task record (read it under no assumptions; it keeps changing)."""
        with self._lock:
            return self._tasks.get(task_id)

    def wait_for(
        self, task_id: str, statuses: set[str] | None = None, timeout_s: float = 10.0
    ) -> str | None:
        """Block until the *upstream* status is in ``statuses`` (default terminal); returns it."""
        wanted = statuses or {Status.SUCCESS.value, Status.FAILURE.value}
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                t = self._tasks.get(task_id)
                if t is not None and t.status.value in wanted:
                    return t.status.value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.05))

    # ------------------------------------------------------------------ HTTP-side hooks
    def request_started(self, route: str) -> None:
        with self._lock:
            self._stats.requests[route] += 1
            self._stats.in_flight += 1
            self._stats.peak_in_flight = max(self._stats.peak_in_flight, self._stats.in_flight)

    def request_finished(self) -> None:
        with self._lock:
            self._stats.in_flight = max(0, self._stats.in_flight - 1)

    def roll_http_500(self, endpoint: str = "") -> bool:
        """Decide whether this request answers 500 (``http_500`` fault; for a submit
        endpoint also ``http_500_submits``)."""
        with self._lock:
            f = self._faults
            for knob, p in (("http_500", f.http_500),
                            ("http_500_submits", f.http_500_submits
                             if endpoint.startswith("submit_") else 0.0)):
                if p > 0 and self._rng.random() < p:
                    self._stats.faults[knob] += 1
                    return True
            return False

    def roll_hung_submit_ms(self) -> int:
        """Delay to add before answering a submit (``hung_submit`` fault), 0 for none."""
        with self._lock:
            f = self._faults
            if f.hung_submit > 0 and f.hung_submit_ms > 0 and self._rng.random() < f.hung_submit:
                self._stats.faults["hung_submit"] += 1
                return f.hung_submit_ms
            return 0

    def record_body(self, endpoint: str, body: dict[str, Any]) -> None:
        """Keep a submit's body (data URLs cut short) for tests: ``GET /_sim/requests``."""
        kept = {k: (v[:48] + "…" if isinstance(v, str) and v.startswith("data:") else v)
                for k, v in body.items()}
        with self._lock:
            self._bodies.append((endpoint, kept))

    def submitted_bodies(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [{"endpoint": e, "body": b} for e, b in self._bodies
                    if endpoint is None or e == endpoint]

    def check_key(self, key: str | None) -> bool:
        """True if no key is configured or ``key`` matches it."""
        return not self.api_key or key == self.api_key

    # ------------------------------------------------------------------ queries
    def view(self, task_id: str) -> dict[str, Any] | None:
        """The task JSON as the profile answers ``/task/{id}/fetch`` (None = unknown)."""
        with self._lock:
            t = self._tasks.get(task_id)
            return None if t is None else self._render(t)

    def views(self, ids: list[str]) -> list[dict[str, Any]]:
        """``list-by-condition``: known ids only, de-duplicated, in request order."""
        with self._lock:
            self._list_calls += 1
            every = self._faults.omit_from_lists_every
            if every and self._list_calls % every == 0:
                return []
            seen: set[str] = set()
            out = []
            for i in ids:
                i = i.strip() if isinstance(i, str) else ""
                if i and i not in seen and i in self._tasks:
                    seen.add(i)
                    out.append(self._render(self._tasks[i]))
            return out

    def recent(self, limit: int | None) -> list[dict[str, Any]]:
        """Tasks newest first (``/task/list``)."""
        with self._lock:
            tasks = sorted(self._tasks.values(), key=lambda t: t.id, reverse=True)
            return [self._render(t) for t in tasks[:limit]]

    def upstream_task(self, task_id: str) -> dict[str, Any] | None:
        """The upstream JSON regardless of the profile's gateway layer (tests, benchmarks)."""
        with self._lock:
            t = self._tasks.get(task_id)
            return None if t is None else self._upstream(t, self.clock.now_ms())

    def cancel(self, task_id: str) -> bool:
        """trueai cancel: a non-terminal task becomes FAILURE ``取消任务``."""
        with self._lock:
            t = self._tasks.get(task_id)
            if t is None:
                return False
            if not t.terminal:
                now = self.clock.now_ms()
                self._release(t)
                self._set_state(t, Status.FAILURE, "", now, fail_reason=CANCEL_REASON)
                self._pump(now)
            return True

    def image_seed(self, task_id: str) -> tuple[str, str | None]:
        """(``"ok"``, seed) | (``"not_found"``, None) | (``"no_hash"``, None)."""
        with self._lock:
            t = self._tasks.get(task_id)
            if t is None:
                return "not_found", None
            h = t.properties.get("messageHash")
            if not h:
                return "no_hash", None
            return "ok", str(int(uuid.UUID(h).int % 4294967295))

    def task_image(self, task_id: str) -> ImageRecipe | None:
        """Bytes behind ``GET /mj/image/{id}`` (None = unknown or no image yet).

        newapi streams the upstream URL it stored at its last poll, so that URL
        may have expired (then :class:`PermissionError`).
        """
        with self._lock:
            t = self._tasks.get(task_id)
            if t is None:
                return None
            now = self.clock.now_ms()
            if self.profile.gateway_refresh_s is not None:
                row = t.gateway_row or {}
                parts = split_url(row.get("imageUrl") or "")
                if parts is None:
                    return None
                if not self.signer.verify(
                    parts.key, parts.name, parts.ex, parts.is_, parts.hm, now
                ):
                    raise PermissionError("This content is no longer available.")
                return self._payload_for(t, parts.name)
            if not t.has_image or t.image is None:
                return None
            name = "final.png" if t.status == Status.SUCCESS else preview_image_name(t)
            return self._payload_for(t, name)

    def cdn_image(self, key: str, name: str, ex: str, is_: str, hm: str) -> ImageRecipe | None:
        """Bytes behind a signed ``/cdn/attachments/...`` URL (None = refused)."""
        with self._lock:
            if not self.signer.verify(key, name, ex, is_, hm, self.clock.now_ms()):
                return None
            if key in self._uploads:
                return ImageRecipe(data=self._uploads[key])
            t = self._tasks.get(key)
            return None if t is None or t.image is None else self._payload_for(t, name)

    # ------------------------------------------------------------------ internals: views
    def _base(self) -> str:
        return self.public_base or DEFAULT_PUBLIC_BASE

    def _upstream(self, t: SimTask, now: int) -> dict[str, Any]:
        return upstream_view(t, self.profile, self._base(), self.signer, now)

    def _render(self, t: SimTask) -> dict[str, Any]:
        now = self.clock.now_ms()
        if self.profile.task_shape != "gateway":
            return self._upstream(t, now)
        if self.profile.gateway_refresh_s is not None:
            row = t.gateway_row if t.gateway_row is not None else initial_gateway_row(t)
        else:
            row = self._upstream(t, now)
        return gateway_view(row, t, self.profile, self._base())

    def _payload_for(self, t: SimTask, name: str) -> ImageRecipe | None:
        if name.endswith(".mp4"):
            return ImageRecipe(data=mp4_bytes(f"{t.id}|{name}"), content_type="video/mp4")
        if t.image is None:
            return None
        if name.startswith("full_"):  # trueai imageUrls: one image of the grid, full size
            n = int(name[len("full_") :].removesuffix(".png") or 1)
            spec = t.image
            return ImageRecipe(
                ImageSpec("upscale", spec.seed, spec.width, spec.height, index=n, parent=spec)
            )
        if name.startswith(PREVIEW_PREFIX):
            pct = name[len(PREVIEW_PREFIX) :].removesuffix(".png")
            return ImageRecipe(t.image, preview=f"{pct}%")
        return ImageRecipe(t.image, large_bytes=self._faults.large_image_bytes)
