"""Submit operations of the simulator (mixed into :class:`~simulator.models.Simulator`).

Each public method validates its fields like midjourney-proxy does (code 4
messages), applies the submit-time faults (balance, banned words, queue-full
bursts), checks capacity and creates the task. It returns an
:class:`~simulator.outcomes.Outcome`; the HTTP layer renders it per profile.
All state is read and written under the simulator's lock.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

from . import buttons as btn
from .images import BLEND_SIZES_PX, ImageSpec
from .inputs import decode_data_url, find_banned_word, is_http_url
from .outcomes import Outcome, OutcomeKind, SubmitContext
from .submits_media import MediaSubmitsMixin
from .tasks import SimTask, Status

if TYPE_CHECKING:
    import random

    from .cdn import UrlSigner
    from .faults import Faults
    from .profiles import Profile
    from .stats import Stats
    from .tasks import Clock, IdGenerator

CHANGE_PARENT_ACTIONS = frozenset({"IMAGINE", "VARIATION", "REROLL", "BLEND"})


class SubmitsMixin(MediaSubmitsMixin):
    """``/submit/*`` and ``/insight-face/swap`` as methods."""

    if TYPE_CHECKING:
        profile: Profile
        core_size: int
        queue_size: int
        clock: Clock
        signer: UrlSigner
        _lock: threading.RLock
        _cond: threading.Condition
        _faults: Faults
        _rng: random.Random
        _ids: IdGenerator
        _tasks: dict[str, SimTask]
        _uploads: dict[str, bytes]
        _stats: Stats
        _accounts: list[Any]
        _accepted_since_balance: int

        def _pump(self, now: int) -> None: ...
        def _base(self) -> str: ...

    # ------------------------------------------------------------------ submits
    def imagine(
        self, prompt: Any, ctx: SubmitContext | None = None, *, base64_array: Any = None
    ) -> Outcome:
        """``/submit/imagine``."""
        ctx = ctx or SubmitContext()
        if not isinstance(prompt, str) or not prompt.strip():
            return self._answer(Outcome(OutcomeKind.INVALID, message="prompt不能为空"))
        if base64_array is not None and (
            not isinstance(base64_array, list)
            or any(decode_data_url(b) is None for b in base64_array)
        ):
            return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
        prompt = prompt.strip()
        with self._lock:
            refused = self._precheck(prompt)
            if refused:
                return self._answer(refused)
            task = self._new_task("IMAGINE", ctx, prompt=prompt, command=f"/imagine {prompt}")
            task.image = ImageSpec("grid", f"{prompt}|{task.id}")
            return self._answer(self._admit(task, root=True))

    def shorten(self, prompt: Any, ctx: SubmitContext | None = None) -> Outcome:
        """``/submit/shorten``: a SHORTEN task whose result lists 5 shortened prompts."""
        ctx = ctx or SubmitContext()
        if not isinstance(prompt, str) or not prompt.strip():
            return self._answer(Outcome(OutcomeKind.INVALID, message="prompt不能为空"))
        with self._lock:
            refused = self._precheck(None)
            if refused:
                return self._answer(refused)
            task = self._new_task(
                "SHORTEN", ctx, prompt=prompt.strip(), command=f"/shorten {prompt}"
            )
            task.produces = "shorten"
            return self._answer(self._admit(task, root=True))

    def describe(
        self, base64: Any = None, link: Any = None, ctx: SubmitContext | None = None
    ) -> Outcome:
        """``/submit/describe`` with a data-URL ``base64`` or an http(s) ``link``."""
        ctx = ctx or SubmitContext()
        if base64:
            data = decode_data_url(base64)
            if data is None:
                return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
            seed = hashlib.sha256(data).hexdigest()
        elif link:
            if not is_http_url(link):
                return self._answer(Outcome(OutcomeKind.INVALID, message="链接格式错误"))
            seed = str(link)
        else:
            return self._answer(Outcome(OutcomeKind.INVALID, message="base64不能为空"))
        with self._lock:
            refused = self._precheck(None)
            if refused:
                return self._answer(refused)
            task = self._new_task("DESCRIBE", ctx, prompt="", command="")
            task.description = f"/describe {task.id}.png"
            task.produces = "describe"
            task.image = ImageSpec("single", seed, label="?")
            return self._answer(self._admit(task, root=True))

    def blend(
        self, base64_array: Any, dimensions: Any = None, ctx: SubmitContext | None = None
    ) -> Outcome:
        """``/submit/blend``: 2..5 data-URLs, dimensions PORTRAIT/SQUARE/LANDSCAPE."""
        ctx = ctx or SubmitContext()
        if not isinstance(base64_array, list) or not 2 <= len(base64_array) <= 5:
            return self._answer(Outcome(OutcomeKind.INVALID, message="base64List参数错误"))
        if any(decode_data_url(b) is None for b in base64_array):
            return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
        dims = dimensions or "SQUARE"
        if dims not in BLEND_SIZES_PX:
            return self._answer(Outcome(OutcomeKind.INVALID, message="dimensions参数错误"))
        with self._lock:
            refused = self._precheck(None)
            if refused:
                return self._answer(refused)
            task = self._new_task("BLEND", ctx, prompt="", command="")
            task.description = f"/blend {task.id} {len(base64_array)}"
            w, h = BLEND_SIZES_PX[dims]
            task.image = ImageSpec("grid", f"blend|{task.id}", w, h)
            return self._answer(self._admit(task, root=True))

    def swap_face(self, source: Any, target: Any, ctx: SubmitContext | None = None) -> Outcome:
        """``/insight-face/swap`` with data-URLs (or http(s) URLs) for source and target."""
        ctx = ctx or SubmitContext()
        for name, value in (("sourceBase64", source), ("targetBase64", target)):
            if not value:
                return self._answer(Outcome(OutcomeKind.INVALID, message=f"{name}不能为空"))
            if decode_data_url(value) is None and not is_http_url(value):
                return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
        if source == target:
            return self._answer(Outcome(OutcomeKind.INVALID, message="源图片和目标图片不能相同"))
        with self._lock:
            refused = self._precheck(None)
            if refused:
                return self._answer(refused)
            task = self._new_task("SWAP_FACE", ctx, prompt="", command="")
            task.bot_type = "INSIGHT_FACE"
            task.description = f"/swap {task.id}"
            task.produces = "single"
            task.image = ImageSpec("single", f"swap|{task.id}", label="swap")
            return self._answer(self._admit(task, root=True))

    def action(
        self,
        task_id: Any,
        custom_id: Any,
        ctx: SubmitContext | None = None,
        *,
        enable_remix: bool = False,
    ) -> Outcome:
        """``/submit/action``: click a button of a SUCCESS parent."""
        ctx = ctx or SubmitContext()
        if (
            not isinstance(task_id, str)
            or not task_id
            or not isinstance(custom_id, str)
            or not custom_id
        ):
            return self._answer(Outcome(OutcomeKind.INVALID, message="参数错误"))
        with self._lock:
            parent = self._tasks.get(task_id)
            refused = self._check_parent(parent)
            if refused:
                return self._answer(refused)
            assert parent is not None
            return self._answer(self._click(parent, custom_id, ctx, bool(enable_remix)))

    def change(
        self, task_id: Any, action: Any, index: Any = None, ctx: SubmitContext | None = None
    ) -> Outcome:
        """``/submit/change``: UPSCALE/VARIATION index 1..4 or REROLL on a grid parent."""
        ctx = ctx or SubmitContext()
        if not isinstance(task_id, str) or not task_id:
            return self._answer(Outcome(OutcomeKind.INVALID, message="taskId不能为空"))
        if action not in btn.CHANGE_ACTIONS:
            return self._answer(Outcome(OutcomeKind.INVALID, message="action参数错误"))
        if action != "REROLL" and (
            not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 4
        ):
            return self._answer(Outcome(OutcomeKind.INVALID, message="index参数错误"))
        with self._lock:
            parent = self._tasks.get(task_id)
            refused = self._check_parent(parent)
            if refused:
                return self._answer(refused)
            assert parent is not None
            if parent.action not in CHANGE_PARENT_ACTIONS:
                return self._answer(Outcome(OutcomeKind.INVALID, message="关联任务不允许执行变化"))
            cid = btn.change_custom_id(action, index or 0, parent.properties.get("messageHash", ""))
            return self._answer(self._click(parent, cid, ctx, False))

    def simple_change(self, content: Any, ctx: SubmitContext | None = None) -> Outcome:
        """``/submit/simple-change``: ``"<taskId> U1..U4|V1..V4|R"``."""
        parts = content.split() if isinstance(content, str) else []
        if len(parts) != 2:
            return self._answer(Outcome(OutcomeKind.INVALID, message="content参数错误"))
        op = parts[1].upper()
        if op == "R":
            return self.change(parts[0], "REROLL", None, ctx)
        if len(op) == 2 and op[0] in "UV" and op[1] in "1234":
            return self.change(
                parts[0], "UPSCALE" if op[0] == "U" else "VARIATION", int(op[1]), ctx
            )
        return self._answer(Outcome(OutcomeKind.INVALID, message="content参数错误"))

    def modal(self, task_id: Any, prompt: Any = None, mask_base64: Any = None) -> Outcome:
        """``/submit/modal``: confirm a MODAL task; the same id then runs."""
        if not isinstance(task_id, str) or not task_id:
            return self._answer(Outcome(OutcomeKind.INVALID, message="taskId不能为空"))
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return self._answer(
                    Outcome(OutcomeKind.NOT_FOUND, message="关联任务不存在或已失效")
                )
            if task.status != Status.MODAL:
                return self._answer(Outcome(OutcomeKind.INVALID, message="任务状态错误"))
            if task.needs_mask:
                if not mask_base64:
                    return self._answer(Outcome(OutcomeKind.INVALID, message="maskBase64不能为空"))
                if decode_data_url(mask_base64) is None:
                    return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
            text = prompt.strip() if isinstance(prompt, str) else ""
            parent = self._tasks.get(task.parent_id or "")
            text = text or task.prompt or task.final_prompt or (parent.prompt if parent else "")
            if not text:
                return self._answer(Outcome(OutcomeKind.INVALID, message="prompt不能为空"))
            word = find_banned_word(text, self._faults.banned_words)
            if word:
                return self._answer(self._banned(text, word))
            task.prompt = task.prompt_en = text
            if task.image is None or task.image.kind == "grid":
                size = (task.image.width, task.image.height) if task.image else (1024, 1024)
                task.image = ImageSpec("grid", f"{text}|{task.id}", *size)
            task.record(self.clock.now_ms(), "modal_confirmed", prompt=text)
            return self._answer(self._enqueue(task))

    # ------------------------------------------------------------------ internals: submit
    def _answer(self, outcome: Outcome) -> Outcome:
        with self._lock:
            self._stats.answers[outcome.kind.value] += 1
        return outcome

    def _banned(self, prompt: str, word: str) -> Outcome:
        self._stats.faults["banned_words"] += 1
        return Outcome(
            OutcomeKind.BANNED,
            message="可能包含敏感词",
            properties={"promptEn": prompt, "bannedWord": word},
        )

    def _precheck(self, prompt: str | None) -> Outcome | None:
        """Balance, banned words and queue-full bursts, before any capacity check."""
        f = self._faults
        if f.balance_after is not None and self._accepted_since_balance >= f.balance_after:
            self._stats.faults["balance_after"] += 1
            return Outcome(OutcomeKind.BALANCE, message="余额不足")
        if prompt is not None:
            word = find_banned_word(prompt, f.banned_words)
            if word:
                return self._banned(prompt, word)
        if f.queue_full_burst > 0:
            self._faults = f.model_copy(update={"queue_full_burst": f.queue_full_burst - 1})
            self._stats.faults["queue_full_burst"] += 1
            self._stats.queue_full_answers += 1
            return Outcome(OutcomeKind.QUEUE_FULL, message=self.profile.queue_full_description)
        return None

    def _check_parent(self, parent: SimTask | None) -> Outcome | None:
        if self.profile.gateway_errors:
            if parent is None:
                return Outcome(OutcomeKind.GATEWAY_REJECTED, message="task_no_found")
            row = parent.gateway_row or {}
            if row.get("status") != Status.SUCCESS.value:
                return Outcome(OutcomeKind.GATEWAY_REJECTED, message="task_status_not_success")
        if parent is None:
            return Outcome(OutcomeKind.NOT_FOUND, message="关联任务不存在或已失效")
        if parent.status != Status.SUCCESS:
            return Outcome(OutcomeKind.INVALID, message="关联任务状态错误")
        return None

    def _new_task(self, action: str, ctx: SubmitContext, *, prompt: str, command: str) -> SimTask:
        now = self.clock.now_ms()
        hook = None if self.profile.strips_notify_hook else (ctx.notify_hook or None)
        task = SimTask(
            id=self._ids.next(now),
            action=action,
            prompt=prompt,
            prompt_en=prompt,
            description=command,
            state=ctx.state,
            mode=ctx.mode,
            bot_type=ctx.bot_type or "MID_JOURNEY",
            submit_time_ms=now,
            notify_hook=hook,
        )
        if self.profile.times_zero:
            task.start_time_ms = task.finish_time_ms = 0
        task.properties = {"notifyHook": hook or "", "nonce": str(self._rng.getrandbits(60))}
        return task

    def _click(
        self, parent: SimTask, custom_id: str, ctx: SubmitContext, enable_remix: bool
    ) -> Outcome:
        if self.profile.gateway_refuses_video_buttons and btn.is_video_button(custom_id):
            return Outcome(OutcomeKind.GATEWAY_REJECTED, message=f"unknown_action:{custom_id}")
        if not any(b.get("customId") == custom_id for b in parent.buttons):
            return Outcome(OutcomeKind.INVALID, message="未知的 Action 类型")
        spec = btn.parse_custom_id(custom_id)
        if spec is None:
            return Outcome(OutcomeKind.INVALID, message="未知的 Action 类型")
        acct = self._accounts[parent.account].instance_id
        if spec.produces == "bookmark":
            self._stats.note_action(parent.id, custom_id, parent.id)
            return Outcome(OutcomeKind.ACCEPTED, task_id=parent.id, instance_id=acct)
        if self.profile.existed_on_repeat_action:
            for tid in self._stats.action_index.get((parent.id, custom_id), []):
                prior = self._tasks.get(tid)
                if prior is not None and prior.status != Status.FAILURE:
                    self._stats.note_action(parent.id, custom_id, tid)
                    return Outcome(
                        OutcomeKind.EXISTED,
                        task_id=tid,
                        message="任务已存在",
                        instance_id=acct,
                        properties={"status": prior.status.value},
                    )
        refused = self._precheck(None)
        if refused:
            return refused
        task = self._new_task(spec.action, ctx, prompt=parent.prompt, command="")
        task.custom_id, task.parent_id, task.account = custom_id, parent.id, parent.account
        task.bot_type = parent.bot_type
        task.needs_mask, task.gateway_keeps_21 = spec.needs_mask, spec.gateway_keeps_21
        n = spec.index
        task.description = {
            "UPSCALE": f"/up {parent.id} U{n}",
            "REROLL": f"/up {parent.id} R",
        }.get(
            spec.action,
            f"/up {parent.id} V{n}"
            if spec.action == "VARIATION"
            else f"/{spec.action.lower()} {parent.id}",
        )
        pimg = parent.image
        if spec.produces in ("video", "video_clip"):
            self._video_from(task, parent, spec.index)
        elif spec.produces == "upscale" and pimg is not None:
            task.produces = "upscale"
            task.image = ImageSpec(
                "upscale", task.id, pimg.width, pimg.height, index=n, parent=pimg, label=f"U{n}"
            )
        elif spec.produces == "upscale_hd" and pimg is not None:
            task.produces = "upscale_hd"
            task.image = ImageSpec(
                "upscale",
                task.id,
                pimg.width * 2,
                pimg.height * 2,
                index=pimg.index,
                parent=pimg.parent or pimg,
                label="2x",
            )
        elif spec.produces == "describe":
            task.produces, task.prompt, task.prompt_en = "describe", "", ""
            task.image = pimg
        elif spec.produces == "prompt":
            choice = parent.choices[n - 1] if 0 < n <= len(parent.choices) else parent.prompt
            task.prompt = task.prompt_en = task.final_prompt = choice
            task.image = ImageSpec("grid", f"{choice}|{task.id}")
        else:
            w, h = (pimg.width, pimg.height) if pimg and pimg.kind == "grid" else (1024, 1024)
            task.image = ImageSpec("grid", f"{task.prompt}|{task.id}", w, h)
        if spec.needs_mask:
            task.prompt = task.prompt_en = ""
        if spec.modal or (enable_remix and spec.remixable):
            out = self._admit_modal(task, parent)
        else:
            out = self._admit(task, root=False)
        if out.kind != OutcomeKind.QUEUE_FULL:      # a click the account refused made nothing
            self._stats.note_action(parent.id, custom_id, task.id)
        return out

    def _admit_modal(self, task: SimTask, parent: SimTask) -> Outcome:
        now = self.clock.now_ms()
        task.status, task.progress = Status.MODAL, "0%"
        final = "" if task.needs_mask else (task.final_prompt or parent.prompt)
        task.final_prompt = final
        self._store(task, now)
        return Outcome(
            OutcomeKind.MODAL,
            task_id=task.id,
            message="Waiting for window confirm",
            properties={"finalPrompt": final, "remix": True},
            instance_id=self._accounts[task.account].instance_id,
            gateway_keeps_21=task.gateway_keeps_21,
        )

    def _pick_account(self) -> int | None:
        capacity = self.core_size + self.queue_size
        free = [(a.load, i) for i, a in enumerate(self._accounts) if a.load < capacity]
        return min(free)[1] if free else None

    def _admit(self, task: SimTask, *, root: bool) -> Outcome:
        """Capacity check, then store and enqueue a new task."""
        if root:
            idx = self._pick_account()
        else:  # actions run on the parent's account
            a = self._accounts[task.account]
            idx = task.account if a.load < self.core_size + self.queue_size else None
        if idx is None:
            self._stats.queue_full_answers += 1
            out = Outcome(OutcomeKind.QUEUE_FULL, message=self.profile.queue_full_description)
            if self.profile.queue_full_keeps_task:
                now = self.clock.now_ms()
                task.status, task.progress, task.fail_reason = Status.FAILURE, "", out.message
                self._store(task, now, accepted=False)
                out.task_id = task.id
            return out
        task.account = idx
        self._store(task, self.clock.now_ms())
        if root:
            self._stats.note_root_state(task.state, task.id)
        return self._enqueue(task)

    def _store(self, task: SimTask, now: int, *, accepted: bool = True) -> None:
        self._tasks[task.id] = task
        task.properties["discordInstanceId"] = self._accounts[task.account].instance_id
        if accepted:
            self._stats.submissions[task.action] += 1
            self._accepted_since_balance += 1
        task.record(now, "submitted", status=task.status.value, mode=task.mode)
        if self.profile.gateway_refresh_s is not None:
            task.gateway_submit_ms = now

    def _enqueue(self, task: SimTask) -> Outcome:
        """Put a stored task (new or confirmed MODAL) in its account's queue."""
        acct = self._accounts[task.account]
        if task.status == Status.MODAL and acct.load >= self.core_size + self.queue_size:
            self._stats.queue_full_answers += 1
            return Outcome(OutcomeKind.QUEUE_FULL, message=self.profile.queue_full_description)
        now = self.clock.now_ms()
        task.status, task.progress = Status.NOT_START, "0%"
        ahead = len(acct.waiting)
        acct.waiting.append(task.id)
        self._pump(now)
        kind = OutcomeKind.QUEUED if task.status == Status.NOT_START else OutcomeKind.ACCEPTED
        out = Outcome(kind, task_id=task.id, number_of_queues=ahead, instance_id=acct.instance_id)
        if self.profile.gateway_refresh_s is not None or self.profile.task_shape == "gateway":
            task.gateway_description = (
                self.profile.queued_description.format(n=ahead)
                if kind == OutcomeKind.QUEUED
                else "提交成功"
            )
        self._cond.notify_all()
        return out
