"""The running engine of the simulator (mixed into :class:`~simulator.models.Simulator`).

Moves tasks through their plans (:func:`simulator.tasks.build_plan`), frees and
fills running slots, finalises SUCCESS (buttons, messageHash, finalPrompt),
runs new-api's periodic poll, and schedules callbacks with the callback faults
(drop, duplicate, delay, reorder). Everything here runs under the simulator's
lock, called from the scheduler thread or from a submit.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

from . import buttons as btn
from .inputs import describe_prompts, numbered, shorten_analysis, shorten_prompts
from .tasks import FAIL_REASONS, SimTask, Status, build_plan, duration_ms

if TYPE_CHECKING:
    import random

    from .callbacks import CallbackDispatcher
    from .faults import Faults
    from .profiles import Profile
    from .stats import Stats
    from .tasks import Clock

REORDER_HOLD_MS = 300  # reorder_callbacks: max hold of a non-terminal callback
GATEWAY_TIMEOUT_REASON = "上游任务超时（超过1小时）"


class EngineMixin:
    """Scheduler-side state transitions and callback scheduling."""

    if TYPE_CHECKING:
        profile: Profile
        speed: float
        core_size: int
        clock: Clock
        _lock: threading.RLock
        _cond: threading.Condition
        _faults: Faults
        _rng: random.Random
        _tasks: dict[str, SimTask]
        _stats: Stats
        _accounts: list[Any]
        _epoch: int
        _next_gateway_poll_ms: int | None
        _dispatcher: CallbackDispatcher

        def _upstream(self, t: SimTask, now: int) -> dict[str, Any]: ...

    # ------------------------------------------------------------------ internals: running
    def _pump(self, now: int) -> None:
        """Start waiting tasks while running slots are free."""
        for acct in self._accounts:
            while acct.waiting and len(acct.running) < self.core_size:
                task = self._tasks.get(acct.waiting[0])
                if task is not None and task.status == Status.NOT_START and self._held(task, now):
                    break                     # a RELAX queue: the head (and all behind) waits
                tid = acct.waiting.popleft()
                if task is None or task.status != Status.NOT_START:
                    continue
                acct.running.add(tid)
                self._start(task, now)
        running = sum(len(a.running) for a in self._accounts)
        self._stats.peak_running = max(self._stats.peak_running, running)

    def _held(self, task: SimTask, now: int) -> bool:
        """A RELAX task still waits its turn (``relax_queue_s``, real seconds)."""
        hold_ms = int(self._faults.relax_queue_s * 1000)
        return task.mode == "RELAX" and hold_ms > 0 and now < task.submit_time_ms + hold_ms

    def _start(self, task: SimTask, now: int) -> None:
        f = self._faults
        fail_reason = task.forced_fail
        if fail_reason is not None:
            task.will_fail = True
        elif f.fail > 0 and self._rng.random() < f.fail:
            fail_reason = self._rng.choice(FAIL_REASONS)
            task.will_fail = True
            self._stats.faults["fail"] += 1
        elif f.stuck > 0 and self._rng.random() < f.stuck:
            task.stuck = True
            self._stats.faults["stuck"] += 1
        timeout_ms = None if f.stuck_timeout_s is None else int(f.stuck_timeout_s * 1000)
        task.plan = build_plan(
            task.action,
            now,
            duration_ms(task.action, self.speed),
            stuck=task.stuck,
            fail_reason=fail_reason,
            stuck_progress=f.stuck_progress,
            stuck_timeout_ms=timeout_ms,
        )
        task.plan_index = 0
        task.start_time_ms = now
        self._advance(task, now)

    def _advance(self, task: SimTask, now: int) -> None:
        while task.plan_index < len(task.plan) and not task.terminal:
            step = task.plan[task.plan_index]
            if step.at_ms > now:
                return
            task.plan_index += 1
            self._set_state(task, step.status, step.progress, now, fail_reason=step.fail_reason)
            if task.terminal:
                self._release(task)

    def _release(self, task: SimTask) -> None:
        acct = self._accounts[task.account]
        acct.running.discard(task.id)
        if task.id in acct.waiting:
            acct.waiting.remove(task.id)

    def _set_state(
        self, task: SimTask, status: Status, progress: str, now: int, fail_reason: str | None = None
    ) -> None:
        task.status, task.progress = status, progress
        if status == Status.IN_PROGRESS and progress != "0%" and task.produces == "grid":
            task.has_image = task.image is not None
        if status == Status.SUCCESS:
            self._succeed(task, now)
        elif status == Status.FAILURE:
            task.fail_reason = fail_reason
            task.finish_time_ms = now
        task.record(now, "state", status=status.value, progress=progress)
        self._notify(task, now)
        self._cond.notify_all()

    def _succeed(self, task: SimTask, now: int) -> None:
        job = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        task.finish_time_ms = now
        task.has_image = task.image is not None
        if task.produces == "describe":
            task.choices = describe_prompts(f"{task.image.seed if task.image else ''}|{task.id}")
            task.prompt = task.prompt_en = task.final_prompt = numbered(task.choices)
            task.buttons = btn.describe_buttons()
        elif task.produces == "shorten":
            task.choices = shorten_prompts(task.prompt)
            task.final_prompt = shorten_analysis(task.prompt, task.choices)
            task.buttons = btn.shorten_buttons(job)
        elif task.produces in ("upscale", "upscale_hd"):
            task.buttons = btn.upscale_buttons(
                job,
                include_2x=task.produces == "upscale",
                v8=btn.is_v8_prompt(task.prompt),
                animate=self.profile.animate_buttons,
            )
        elif task.produces == "video":
            task.buttons = btn.video_buttons(job, max(1, task.clips))
        elif task.produces == "video_clip":
            task.buttons = btn.clip_buttons(job)
        elif task.produces == "grid":
            task.buttons = btn.grid_buttons(job)
        task.properties.update(
            {
                "discordInstanceId": self._accounts[task.account].instance_id,
                "finalPrompt": task.final_prompt or task.prompt,
                "messageHash": job,
                "messageId": str(self._rng.getrandbits(60)),
                "progressMessageId": str(self._rng.getrandbits(60)),
                "flags": 0,
            }
        )
        if self.profile.channel_id_property:
            task.properties["discordChannelId"] = task.properties["discordInstanceId"]

    def _tick_locked(self, now: int) -> int | None:
        """Apply due plan steps and gateway polls; return the next due time (ms)."""
        for acct in self._accounts:
            for tid in list(acct.running):
                task = self._tasks.get(tid)
                if task is None:
                    acct.running.discard(tid)
                    continue
                self._advance(task, now)
        self._pump(now)
        due: int | None = None
        for acct in self._accounts:
            for tid in acct.running:
                t = self._tasks[tid]
                if t.plan_index < len(t.plan):
                    at = t.plan[t.plan_index].at_ms
                    due = at if due is None else min(due, at)
        refresh_s = self.profile.gateway_refresh_s
        if refresh_s is not None:
            interval_ms = max(1, int(refresh_s * 1000 / self.speed))
            if self._next_gateway_poll_ms is None:
                self._next_gateway_poll_ms = now + interval_ms
            if now >= self._next_gateway_poll_ms:
                self._gateway_poll(now)
                self._next_gateway_poll_ms = now + interval_ms
            due = (
                self._next_gateway_poll_ms if due is None else min(due, self._next_gateway_poll_ms)
            )
        return due

    def _gateway_poll(self, now: int) -> None:
        """new-api's poller: copy upstream state into its rows (not for finished rows)."""
        timeout_ms = int((self.profile.gateway_timeout_s or 0) * 1000 / self.speed)
        for t in self._tasks.values():
            row = t.gateway_row
            if row is not None and row.get("progress") == "100%":
                continue
            if row is not None and row.get("status") == Status.FAILURE.value:
                continue
            row = self._upstream(t, now)
            if timeout_ms and now - t.gateway_submit_ms > timeout_ms and not t.terminal:
                row.update(
                    status=Status.FAILURE.value, progress="100%", failReason=GATEWAY_TIMEOUT_REASON
                )
            t.gateway_row = row
            t.record(now, "gateway_poll", status=row["status"], progress=row["progress"])

    # ------------------------------------------------------------------ internals: callbacks
    def _notify(self, task: SimTask, now: int) -> None:
        if not self.profile.sends_callbacks or not task.notify_hook:
            return
        if task.status in (Status.NOT_START, Status.MODAL):
            return
        f = self._faults
        meta = {
            "epoch": self._epoch,
            "task_id": task.id,
            "status": task.status.value,
            "progress": task.progress,
        }
        if f.drop_callbacks > 0 and self._rng.random() < f.drop_callbacks:
            self._stats.callbacks["dropped"] += 1
            task.record(now, "callback_dropped", status=task.status.value, progress=task.progress)
            return
        copies = 1
        if f.duplicate_callbacks > 0 and self._rng.random() < f.duplicate_callbacks:
            copies = 2
            self._stats.callbacks["duplicated"] += 1
        payload = self._upstream(task, now)
        for copy in range(copies):
            delay_ms = self._rng.randint(0, f.delay_callbacks_ms) if f.delay_callbacks_ms else 0
            if f.reorder_callbacks and not task.terminal:
                delay_ms += self._rng.randint(REORDER_HOLD_MS // 3, REORDER_HOLD_MS)
            self._stats.callbacks["scheduled"] += 1
            self._dispatcher.submit(task.notify_hook, payload, delay_ms, {**meta, "copy": copy})

    def _on_callback_result(
        self, meta: dict[str, Any], ok: bool, status: int | None, error: str | None
    ) -> None:
        with self._lock:
            if meta.get("epoch") != self._epoch:
                return
            self._stats.callbacks["sent"] += 1
            self._stats.callbacks["delivered" if ok else "failed"] += 1
            t = self._tasks.get(meta["task_id"])
            if t is not None:
                t.record(
                    self.clock.now_ms(),
                    "callback",
                    status=meta["status"],
                    progress=meta["progress"],
                    ok=ok,
                    httpStatus=status,
                    error=error,
                )
