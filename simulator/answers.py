"""Outcome → (HTTP status, body) per profile: the one place submit answers are shaped.

``SubmitResultVO``: ``{"code", "description", "result", "properties"}``
(reference §1.2, §2). Profile fields decide the codes (queue full 23 vs 9,
queued 22 vs 1, new-api's 21 → 1 rewrite), the HTTP status of a missing parent
(trueai 404), and the special envelopes (balance, gateway 400s).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .outcomes import Outcome, OutcomeKind
from .profiles import HttpAnswer, Profile

CODE_SUCCESS = 1
CODE_NOT_FOUND = 3
CODE_VALIDATION = 4
CODE_EXISTED = 21
CODE_IN_QUEUE = 22
CODE_BANNED = 24
SUBMIT_OK = "提交成功"
MODAL_DESCRIPTION = "Waiting for window confirm"


def _vo(code: int, description: str, result: Any = None, properties: dict | None = None) -> dict:
    return {
        "code": code,
        "description": description,
        "result": result,
        "properties": properties or {},
    }


def _instance(profile: Profile, out: Outcome) -> dict[str, Any]:
    if not out.instance_id:
        return {}
    props: dict[str, Any] = {"discordInstanceId": out.instance_id}
    if profile.channel_id_property:
        props["discordChannelId"] = out.instance_id
    return props


def render_outcome(profile: Profile, out: Outcome) -> HttpAnswer:
    """The profile's answer to a submit that ended in ``out``."""
    k = out.kind
    inst = _instance(profile, out)
    if k == OutcomeKind.ACCEPTED:
        result: Any = out.result_list if out.result_list is not None else out.task_id
        return HttpAnswer(200, _vo(CODE_SUCCESS, SUBMIT_OK, result, inst))
    if k == OutcomeKind.QUEUED:
        desc = profile.queued_description.format(n=out.number_of_queues)
        props = {**inst, "numberOfQueues": out.number_of_queues}
        return HttpAnswer(200, _vo(profile.queued_code, desc, out.task_id, props))
    if k == OutcomeKind.MODAL:
        code = CODE_EXISTED
        if profile.rewrite_modal_to_success and not out.gateway_keeps_21:
            code = CODE_SUCCESS
        return HttpAnswer(
            200, _vo(code, MODAL_DESCRIPTION, out.task_id, {**inst, **out.properties})
        )
    if k == OutcomeKind.EXISTED:
        return HttpAnswer(
            200, _vo(CODE_EXISTED, out.message, out.task_id, {**inst, **out.properties})
        )
    if k == OutcomeKind.QUEUE_FULL:
        body = _vo(
            profile.queue_full_code,
            profile.queue_full_description,
            out.task_id,
            inst if out.task_id else {},
        )
        return HttpAnswer(200, body)
    if k == OutcomeKind.BALANCE:
        return profile.balance_answer
    if k == OutcomeKind.BANNED:
        return HttpAnswer(200, _vo(CODE_BANNED, out.message, None, out.properties))
    if k == OutcomeKind.NOT_FOUND:
        return HttpAnswer(profile.missing_parent_status, _vo(CODE_NOT_FOUND, out.message))
    if k == OutcomeKind.GATEWAY_REJECTED:
        return gateway_error(out.message)
    return HttpAnswer(200, _vo(CODE_VALIDATION, out.message))


def gateway_error(description: str, code: int = CODE_VALIDATION, status: int = 400) -> HttpAnswer:
    """new-api's MJ-style error (note the trailing space it appends)."""
    return HttpAnswer(
        status, {"description": f"{description} ", "type": "upstream_error", "code": code}
    )


def validation_error(profile: Profile, message: str, status: int = 400) -> HttpAnswer:
    """Malformed request body: HTTP 400 with a code-4 body in the profile's style."""
    if profile.gateway_errors:
        return gateway_error("invalid_request", status=status)
    return HttpAnswer(status, _vo(CODE_VALIDATION, message))


def not_found(profile: Profile, message: str = "关联任务不存在或已失效") -> HttpAnswer:
    return HttpAnswer(profile.missing_parent_status, _vo(CODE_NOT_FOUND, message))


def with_timestamp(body: Any) -> Any:
    """Fill ``"timestamp": None`` in envelope bodies with the current time."""
    if isinstance(body, dict) and "timestamp" in body and body["timestamp"] is None:
        now = dt.datetime.now(dt.UTC).astimezone()
        return {**body, "timestamp": now.isoformat(timespec="milliseconds")}
    return body
