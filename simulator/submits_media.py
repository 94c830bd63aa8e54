"""Uploads, video and edits in the simulator (mixed into
:class:`~simulator.models.Simulator` through :class:`~simulator.submits.SubmitsMixin`).

Faithful to trueai (``upstream-video-edits.md`` §2-§5): ``/submit/video`` rewrites the
prompt (first-frame URL in front, ``--video 1``, ``--end``, ``--motion``, ``--bs``), takes
``action: "extend"`` with the parent VIDEO's ``taskId``, and a video without a first
frame fails at run time (``invalid_request, No start frame provided``); ``/submit/edits``
and ``/submit/retexture`` need a prompt and an image (``--dref`` for retexture) and make
grids. Data URLs are hosted like uploads (signed CDN URLs).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .images import ImageSpec
from .inputs import decode_data_url, is_http_url
from .outcomes import Outcome, OutcomeKind, SubmitContext
from .tasks import SimTask

if TYPE_CHECKING:
    from .cdn import UrlSigner
    from .profiles import Profile
    from .stats import Stats
    from .tasks import Clock, IdGenerator

MAX_UPLOADS = 256
VIDEO_KINDS = frozenset({"video", "video_clip"})
NO_START_FRAME = "invalid_request, No start frame provided"
MOTIONS = frozenset({"low", "high"})


class MediaSubmitsMixin:
    """``/submit/upload-discord-images``, ``/submit/video``, ``/submit/edits``, ``/retexture``."""

    if TYPE_CHECKING:
        profile: Profile
        clock: Clock
        signer: UrlSigner
        _lock: threading.RLock
        _ids: IdGenerator
        _tasks: dict[str, SimTask]
        _uploads: dict[str, bytes]
        _stats: Stats
        _accounts: list[Any]

        def _answer(self, outcome: Outcome) -> Outcome: ...
        def _precheck(self, prompt: str | None) -> Outcome | None: ...
        def _check_parent(self, parent: SimTask | None) -> Outcome | None: ...
        def _new_task(
            self, action: str, ctx: SubmitContext, *, prompt: str, command: str
        ) -> SimTask: ...
        def _admit(self, task: SimTask, *, root: bool) -> Outcome: ...
        def _base(self) -> str: ...

    def upload(self, base64_array: Any) -> Outcome:
        """``/submit/upload-discord-images``: store images, answer their signed URLs."""
        if not isinstance(base64_array, list) or not base64_array:
            return self._answer(Outcome(OutcomeKind.INVALID, message="base64List参数错误"))
        blobs = [decode_data_url(b) for b in base64_array]
        if any(b is None for b in blobs):
            return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
        with self._lock:
            urls = [self._host(data or b"") for data in blobs]
            self._stats.submissions["UPLOAD"] += 1
            return self._answer(
                Outcome(
                    OutcomeKind.ACCEPTED, result_list=urls, instance_id=self._accounts[0].instance_id
                )
            )

    def video(self, body: dict[str, Any], ctx: SubmitContext | None = None) -> Outcome:
        """``/submit/video``: image to video, or ``action: "extend"`` of a finished VIDEO."""
        ctx = ctx or SubmitContext()
        prompt, image, end = body.get("prompt"), body.get("image"), body.get("endImage")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._answer(Outcome(OutcomeKind.INVALID, message="Prompt 不能为空"))
        for value in (image, end):
            if value not in (None, "") and not self._readable(value):
                return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
        action, task_id = body.get("action"), body.get("taskId")
        extend = isinstance(action, str) and action.lower() == "extend"
        if task_id and not extend:
            return self._answer(Outcome(OutcomeKind.INVALID, message="任务类型错误"))
        if extend and not task_id:
            return self._answer(Outcome(OutcomeKind.INVALID, message="目标任务不存在"))
        motion = body.get("motion") or "low"
        if motion not in MOTIONS:
            return self._answer(Outcome(OutcomeKind.INVALID, message="motion参数错误"))
        batch = body.get("batchSize") if body.get("batchSize") in (1, 2, 4) else 4
        with self._lock:
            parent = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if extend:
                refused = self._check_parent(parent)
                if refused:
                    return self._answer(refused)
                assert parent is not None
                if parent.produces not in VIDEO_KINDS:
                    return self._answer(Outcome(OutcomeKind.INVALID, message="关联任务状态错误"))
            refused = self._precheck(None)  # trueai skips banned words for video
            if refused:
                return self._answer(refused)
            frame = self._hosted(image) if image else None
            text = " ".join(p for p in (frame, prompt.strip()) if p)
            if "--video" not in text:
                text += " --video 1"
            if body.get("loop") is True:
                text += " --end loop"
            elif end:
                text += f" --end {self._hosted(end)}"
            if "--motion" not in text:
                text += f" --motion {motion}"
            if batch in (1, 2):
                text += f" --bs {batch}"
            task = self._new_task("VIDEO", ctx, prompt=text, command=f"/video {text}")
            task.produces, task.clips = "video", batch
            task.image = ImageSpec("single", f"video|{task.id}", label="video")
            if parent is not None:
                task.parent_id, task.account = parent.id, parent.account
                task.description = "/video extend"
            elif frame is None:
                task.forced_fail = NO_START_FRAME
            return self._answer(self._admit(task, root=parent is None))

    def edits(
        self, body: dict[str, Any], ctx: SubmitContext | None = None, *, retexture: bool = False
    ) -> Outcome:
        """``/submit/edits`` (EDIT) or ``/submit/retexture`` (RETEXTURE): a new grid."""
        ctx = ctx or SubmitContext()
        prompt, image = body.get("prompt"), body.get("image")
        if not isinstance(prompt, str) or not prompt.strip() or not image:
            return self._answer(Outcome(OutcomeKind.INVALID, message="image或prompt不能为空"))
        if isinstance(image, str) and not is_http_url(image) and not image.startswith("data:"):
            image = f"data:image/png;base64,{image}"  # bare base64 is taken as PNG
        if not self._readable(image):
            return self._answer(Outcome(OutcomeKind.INVALID, message="base64格式错误"))
        with self._lock:
            refused = self._precheck(None)
            if refused:
                return self._answer(refused)
            url = self._hosted(image)
            text = f"{prompt.strip()} --dref {url}" if retexture else prompt.strip()
            verb = "retexture" if retexture else "edit"
            task = self._new_task(verb.upper(), ctx, prompt=text, command=f"/{verb} {prompt}")
            task.image = ImageSpec("grid", f"{text}|{task.id}")
            return self._answer(self._admit(task, root=True))

    def _video_from(self, task: SimTask, parent: SimTask, index: int) -> None:
        """A button that makes a video: Animate on an upscale (4 clips), Extend on a clip,
        or the U<n> of a finished VIDEO (one clip)."""
        clip = task.action == "UPSCALE"
        task.produces = "video_clip" if clip else "video"
        task.clips = 1 if clip else 4
        if not clip and "--video" not in task.prompt:
            task.prompt = task.prompt_en = f"{task.prompt} --video 1"
        task.image = ImageSpec("single", f"video|{task.id}|{index}", label="video")

    def _readable(self, value: Any) -> bool:
        return is_http_url(value) or decode_data_url(value) is not None

    def _hosted(self, value: str) -> str:
        """An http(s) URL as it is; a data URL stored and answered as a signed CDN URL."""
        if is_http_url(value):
            return value
        return self._host(decode_data_url(value) or b"")

    def _host(self, data: bytes) -> str:
        now = self.clock.now_ms()
        key = f"u{self._ids.next(now)}"
        if len(self._uploads) >= MAX_UPLOADS:
            self._uploads.pop(next(iter(self._uploads)))
        self._uploads[key] = data
        return self.signer.sign(self._base(), key, "upload.png", now)
