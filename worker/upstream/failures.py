"""Why the upstream failed a task, in words a person reads: the Chinese ``failReason`` texts
midjourney-proxy and its forks send, mapped to a short English meaning (the raw text kept)."""
from __future__ import annotations

from worker.upstream.models import Task, TaskStatus

KNOWN_REASONS = {
    "任务超时": "upstream timed out the task",
    "执行超时": "upstream timed out the task",
    "可能包含敏感词": "banned prompt (upstream moderation)",
    "取消任务": "cancelled upstream",
    "主动取消任务": "cancelled upstream",
    "强制取消": "cancelled upstream (account restarted)",
    "实例不可用": "upstream account unavailable",
    "服务异常": "upstream service error",
    "未找到父级任务": "upstream lost the parent task",
    "超时，未找到消息": "upstream timed out waiting for the modal",
}


def readable_failure(task: Task) -> str:
    raw = (task.failReason or "").strip()
    for needle, text in KNOWN_REASONS.items():
        if needle in raw:
            return f"{text} ({raw})"
    if task.task_status is TaskStatus.CANCEL:
        return f"cancelled upstream{': ' + raw if raw else ''}"
    return f"upstream failed the task: {raw}" if raw else "upstream failed the task (no reason given)"
