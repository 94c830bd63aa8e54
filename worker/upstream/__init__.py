"""Typed client for midjourney-proxy-compatible upstream APIs.

``UpstreamClient`` sends submits (each answered by an ``Answer`` with an ``Outcome``) and
queries (returning ``Task`` models); ``classify`` is the one mapping of answers to
outcomes; ``PROFILES`` holds what each provider does differently.
"""
from worker.upstream.client import SUBMIT_PATHS, UpstreamClient
from worker.upstream.codes import CodeRule, Outcome, Pressure
from worker.upstream.errors import UpstreamAuthFailed, UpstreamOutOfCredit, UpstreamRetryLater
from worker.upstream.models import Button, Task, TaskStatus
from worker.upstream.outcomes import Answer, classify
from worker.upstream.profiles import PROFILES, Profile, get_profile

__all__ = [
    "PROFILES",
    "SUBMIT_PATHS",
    "Answer",
    "Button",
    "CodeRule",
    "Outcome",
    "Pressure",
    "Profile",
    "Task",
    "TaskStatus",
    "UpstreamAuthFailed",
    "UpstreamClient",
    "UpstreamOutOfCredit",
    "UpstreamRetryLater",
    "classify",
    "get_profile",
]
