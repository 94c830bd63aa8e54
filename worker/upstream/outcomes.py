"""The one place that maps every upstream answer to a small set of outcomes.

``classify()`` reads an HTTP status, a body (any bytes), a content type, the provider
``Profile`` and the endpoint, or the transport exception raised instead, and returns an
``Answer``. It never raises. The job engine acts on ``Answer.outcome`` only:

=================  =====================================================================
ACCEPTED           a task exists upstream: ``task_id`` (``queued_ahead`` when queued);
                   for upload-discord-images ``result`` holds the URLs
NEEDS_MODAL        code 21 with an id: the new task waits for ``/mj/submit/modal``
RETRY_LATER        nothing was created; try again after a backoff (queue full 23/9, code 3
                   no account, 429, 5xx, gateway overload 503/code 30, connection refused)
REJECTED           permanent: validation (4), banned prompt (24, ``banned_word``), HTML
                   page where JSON was expected, unsupported endpoint
OUT_OF_CREDIT      balance exhausted: code 25, ``quota_not_enough``, 余额不足, HTTP 402
AUTH_FAILED        401/403, Cloudflare "error code: 1010", OpenAI-style invalid token
OUTCOME_UNKNOWN    the submit was sent but the answer was lost or unreadable (timeout,
                   connection reset, 504, empty or truncated 200): the task may exist, so
                   reconcile before submitting again
NOT_FOUND          the task (or the parent of an action/modal) does not exist
=================  =====================================================================

Every RETRY_LATER and OUTCOME_UNKNOWN answer also says what it means for the dispatch
window (``Answer.pressure``, see ``_pressure``): QUEUE_FULL (23; 9 or any code whose text
says the queue or the concurrency limit is full: the upstream holds what it takes),
RATE_LIMIT (429, gateway code 30, "overloaded", "too many requests") or TRANSIENT
(everything else: 5xx, timeouts, connection refused, no account right now).

What a business ``code`` means is data: ``BASE_CODE_RULES`` below, overridden per
profile by ``Profile.code_rules`` and ``Profile.queue_full_codes`` (see ``profiles.py``).
Query endpoints (fetch, list, seed, image, cancel) share the mapping, with two
differences: a lost connection is RETRY_LATER (repeating a read is safe) and an empty
answer is NOT_FOUND.
"""
from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from worker.upstream.codes import (
    BASE_CODE_RULES,
    QUEUE_FULL_RULE,
    UNKNOWN_CODE_RULE,
    CodeRule,
    Outcome,
    Pressure,
)
from worker.upstream.envelopes import (
    Body,
    parse_body,
    parse_retry_after_s,
    read_queued_ahead,
    short,
    task_id_of,
)
from worker.upstream.models import as_text
from worker.upstream.profiles import Profile

O = Outcome


@dataclass(frozen=True)
class Answer:
    """One classified upstream answer. ``message`` is written for a person."""

    outcome: Outcome
    message: str
    task_id: str | None = None
    code: int | None = None
    http_status: int | None = None
    queued_ahead: int | None = None
    banned_word: str | None = None
    result: Any = field(default=None, hash=False)
    properties: dict[str, Any] = field(default_factory=dict, hash=False)
    retry_after_s: float | None = None
    pressure: Pressure | None = None

    def __post_init__(self) -> None:
        if self.pressure is None and self.outcome in (O.RETRY_LATER, O.OUTCOME_UNKNOWN):
            object.__setattr__(self, "pressure", Pressure.TRANSIENT)   # unless said otherwise

    @property
    def accepted(self) -> bool:
        """A task now exists upstream under ``task_id`` (possibly waiting for a modal)."""
        return self.outcome in (Outcome.ACCEPTED, Outcome.NEEDS_MODAL)

    @property
    def congestion(self) -> bool:
        """The upstream says it is full or overloaded (not merely failing)."""
        return self.pressure is not None and self.pressure.congestion

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for storing on a step)."""
        return {
            "outcome": self.outcome.value, "message": self.message, "task_id": self.task_id,
            "code": self.code, "http_status": self.http_status,
            "queued_ahead": self.queued_ahead, "banned_word": self.banned_word,
            "result": self.result, "properties": self.properties,
            "retry_after_s": self.retry_after_s,
            "pressure": self.pressure.value if self.pressure else None,
        }



#: Endpoints that only read (safe to repeat); every other endpoint name is a submit.
QUERY_ENDPOINTS = frozenset({"fetch", "list-by-condition", "task-list", "image-seed",
                             "image", "cancel"})
#: Submits that name an existing task; a missing one is NOT_FOUND (HTTP 404 + code 3).
PARENT_ENDPOINTS = frozenset({"action", "modal", "change", "simple-change"})

# --- text markers (lower case; searched in description / message / error type) -----------

_CREDIT_MARKERS = (
    "quota_not_enough", "quota is not enough", "quota not enough", "insufficient_quota",
    "insufficient quota", "insufficient_user_quota", "insufficient balance",
    "insufficient credit", "pre_consume_token_quota_failed", "余额不足", "余额已用尽",
    "额度不足", "额度已用尽",
)
_AUTH_MARKERS = (
    "无效的令牌", "令牌已过期", "未提供令牌", "未登录", "invalid token", "invalid_token",
    "invalid api key", "invalid_api_key", "incorrect api key", "error code: 1010",
)
_RETRY_MARKERS = (
    "并发数已达上限", "队列数已达上限", "队列已满", "服务暂不可用", "稍后", "负载已饱和",
    "无可用的账号", "try again later", "retry later", "too many requests", "rate limit",
    "overloaded", "task_status_not_success", "no available account",
)
_QUEUE_FULL_MARKERS = (
    "队列已满", "并发数已达上限", "队列数已达上限", "queue full", "queue is full",
)
_RATE_MARKERS = (
    "too many requests", "rate limit", "频繁", "速率", "负载已饱和", "overloaded",
)
_SYSTEM_ERROR_MARKERS = ("系统错误", "系统异常", "system error")
_NOT_FOUND_MARKERS = (
    "task_no_found", "task_not_found", "midjourney_task_not_found", "关联任务不存在",
    "不存在或已失效", "任务不存在", "未找到父级任务", "parent task not found", "task not found",
    "未找到 seed",
)
def classify(
    http_status: int | None,
    body: bytes | str | None,
    content_type: str | None,
    profile: Profile,
    *,
    endpoint: str = "submit",
    exc: BaseException | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """Map one answer (or the transport exception raised instead) to an ``Answer``.

    ``endpoint`` is a submit name ("imagine", "action", ...; default "submit") or a query
    name from ``QUERY_ENDPOINTS``. ``headers`` is only read for ``Retry-After``.
    Never raises.
    """
    try:
        if exc is not None:
            return _from_exception(exc, endpoint)
        parsed = parse_body(body, content_type)
        return _pressure(_decide(http_status, parsed, profile, endpoint,
                                 parse_retry_after_s(headers)), parsed)
    except Exception as err:  # noqa: BLE001 - the contract is "never raises"
        unknown = O.RETRY_LATER if endpoint in QUERY_ENDPOINTS else O.OUTCOME_UNKNOWN
        return Answer(unknown, f"could not classify the upstream answer ({err!r})",
                      http_status=http_status if isinstance(http_status, int) else None)


def _pressure(answer: Answer, parsed: Body) -> Answer:
    """Say what a submit that did not go through means for the dispatch window. Queue full
    is the text (every fork words it 队列已满 or its concurrency limit), else code 23
    (QUEUE_REJECTED) unless its text names a system error (new-api documents 23 as
    either); a 9 without such text is a system error. Only 429, code 30 and overload
    or rate-limit texts are the other congestion; all else stays TRANSIENT (the
    default of every RETRY_LATER and OUTCOME_UNKNOWN ``Answer``)."""
    if answer.outcome is not O.RETRY_LATER:
        return answer                  # OUTCOME_UNKNOWN is TRANSIENT (Answer's default)
    if parsed.mentions(_QUEUE_FULL_MARKERS) or (
            parsed.code == 23 and not parsed.mentions(_SYSTEM_ERROR_MARKERS)):
        pressure = Pressure.QUEUE_FULL
    elif answer.http_status == 429 or parsed.code == 30 or parsed.mentions(_RATE_MARKERS):
        pressure = Pressure.RATE_LIMIT
    else:
        return answer
    return replace(answer, pressure=pressure)


# --- transport errors ---------------------------------------------------------------------

def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and the exceptions wrapped in its args (urllib3 style)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None),
                       *getattr(current, "args", ())):
            if isinstance(nested, BaseException):
                todo.append(nested)
    return seen


def _never_sent(exc: BaseException) -> bool:
    """True when the request provably never reached the upstream (connect failed)."""
    return any(
        isinstance(e, (requests.exceptions.ConnectTimeout, NewConnectionError,
                       ConnectionRefusedError, socket.gaierror, requests.exceptions.SSLError))
        for e in _chain(exc)
    )


def _from_exception(exc: BaseException, endpoint: str) -> Answer:
    detail = short(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return Answer(O.REJECTED, f"invalid upstream URL ({detail})")
    timed_out = any(isinstance(e, (requests.exceptions.Timeout, TimeoutError, socket.timeout))
                    for e in _chain(exc))
    what = "timed out" if timed_out else "connection failed"
    if endpoint in QUERY_ENDPOINTS:
        return Answer(O.RETRY_LATER, f"upstream {what} on {endpoint} ({detail})")
    if _never_sent(exc):
        return Answer(O.RETRY_LATER, f"could not connect to the upstream ({detail}); "
                                     "nothing was submitted")
    return Answer(O.OUTCOME_UNKNOWN,
                  f"upstream {what} after the {endpoint} request was sent ({detail}); "
                  "the task may or may not exist")


# --- deciding -----------------------------------------------------------------------------

def _with_detail(head: str, detail: str) -> str:
    return f"{head}: {detail}" if detail and detail.lower() not in head.lower() else head


def _decide(status: int | None, parsed: Body, profile: Profile, endpoint: str,
            retry_after_s: float | None) -> Answer:
    is_query = endpoint in QUERY_ENDPOINTS
    http = f"HTTP {status}" if status is not None else "no HTTP status"
    ok = status is None or 200 <= status < 300

    def answer(outcome: Outcome, message: str, **extra: Any) -> Answer:
        return Answer(outcome, message, code=parsed.code, http_status=status,
                      properties=parsed.properties, retry_after_s=retry_after_s, **extra)

    success_code = parsed.code in (1, 22) and not parsed.error_envelope
    # 1. credit, auth and throttling come first: they hold whatever the envelope.
    if status == 402 or (not success_code and parsed.mentions(_CREDIT_MARKERS)):
        return answer(O.OUT_OF_CREDIT, _with_detail(f"out of credit ({http})", parsed.detail))
    if status in (401, 403):
        if endpoint == "image" and status == 403:
            return answer(O.NOT_FOUND, _with_detail("image refused (HTTP 403)", parsed.detail))
        if parsed.mentions(("rate limit", "too many", "频繁", "速率")):
            return answer(O.RETRY_LATER, _with_detail(f"rate limited ({http})", parsed.detail))
        if "1010" in parsed.detail and "error code" in parsed.detail.lower():
            return answer(O.AUTH_FAILED, f"blocked by Cloudflare ({http}, error code: 1010): "
                                         "the upstream requires a User-Agent header")
        return answer(O.AUTH_FAILED, _with_detail(f"authentication failed ({http})",
                                                  parsed.detail))
    if not success_code and (parsed.error_envelope or parsed.code is None) \
            and parsed.mentions(_AUTH_MARKERS):
        return answer(O.AUTH_FAILED, _with_detail(f"authentication failed ({http})",
                                                  parsed.detail))
    if status == 429:
        return answer(O.RETRY_LATER, _with_detail("rate limited (HTTP 429)", parsed.detail))
    if status is not None and status >= 500:
        return answer(*_server_error(status, parsed, is_query, endpoint))
    # 2. a business code decides.
    if parsed.code is not None and parsed.kind == "json" and isinstance(parsed.data, dict):
        return _from_code(status, parsed, profile, endpoint, answer)
    # 3. no code: the HTTP status and the body shape decide.
    if ok:
        return _no_code_success(status, parsed, is_query, http, answer)
    if status in (408, 425):
        return answer(O.RETRY_LATER, _with_detail(f"upstream timed out reading ({http})",
                                                  parsed.detail))
    if status is not None and 300 <= status < 400:
        return answer(O.REJECTED, f"upstream redirected ({http}); set the upstream URL to "
                                  "the final address")
    if endpoint == "image":
        return answer(O.NOT_FOUND, _with_detail(f"image not available ({http})", parsed.detail))
    if status == 404 or (is_query and parsed.mentions(_NOT_FOUND_MARKERS)):
        if is_query or parsed.mentions(_NOT_FOUND_MARKERS):
            return answer(O.NOT_FOUND, _with_detail(f"not found ({http})", parsed.detail))
        return answer(O.REJECTED, _with_detail(
            f"endpoint not supported by this upstream ({http} on {endpoint})", parsed.detail))
    if parsed.mentions(_RETRY_MARKERS):
        return answer(O.RETRY_LATER, _with_detail(f"upstream busy ({http})", parsed.detail))
    if parsed.kind == "html":
        return answer(O.REJECTED, _with_detail(f"upstream answered HTML error page ({http})",
                                               parsed.detail))
    return answer(O.REJECTED, _with_detail(f"upstream refused the request ({http})",
                                           parsed.detail or parsed.code_text))


def _server_error(status: int, parsed: Body, is_query: bool,
                  endpoint: str) -> tuple[Outcome, str]:
    if parsed.kind == "html":
        head = f"upstream answered HTML error page (HTTP {status})"
    elif parsed.kind == "empty":
        head = f"upstream error (HTTP {status}) with an empty body"
    else:
        head = f"upstream error (HTTP {status})"
    message = _with_detail(head, parsed.detail or parsed.code_text)
    # 504/524: a proxy in front gave up waiting for the upstream, which may have acted.
    if status in (504, 524) and not is_query:
        return O.OUTCOME_UNKNOWN, f"{message}; the {endpoint} may or may not have created a task"
    return O.RETRY_LATER, message


def _rule_for(code: int, profile: Profile) -> CodeRule:
    rules: Mapping[int, CodeRule] = getattr(profile, "code_rules", None) or {}
    if code in rules:
        return rules[code]
    if code in getattr(profile, "queue_full_codes", frozenset()):
        return QUEUE_FULL_RULE
    return BASE_CODE_RULES.get(code, UNKNOWN_CODE_RULE)


def _from_code(status: int | None, parsed: Body, profile: Profile, endpoint: str,
               answer: Any) -> Answer:
    code = parsed.code
    assert code is not None
    rule = _rule_for(code, profile)
    outcome, meaning = rule.outcome, rule.meaning
    task_id = task_id_of(parsed.result)
    banned = parsed.properties.get("bannedWord", parsed.properties.get("banned_word"))
    banned_word: str | None = None
    if not isinstance(banned, (dict, list)):
        banned_word = as_text(banned).strip() or None
    is_query = endpoint in QUERY_ENDPOINTS

    if task_id is None and rule.when_no_id is not None:
        outcome, meaning = rule.when_no_id
    if banned_word is None and rule.when_no_banned_word is not None:
        outcome, meaning = rule.when_no_banned_word
    # A 21 on a profile without modals, or carrying the existing task's status (novicezk
    # before 2.6.1), names a task that already exists.
    if outcome is O.NEEDS_MODAL and (not getattr(profile, "has_modal", True)
                                     or "status" in parsed.properties):
        outcome, meaning = O.ACCEPTED, "task already exists"
    # Text that is more specific than the code.
    parent_missing = code == 3 and status == 404
    if parent_missing or (outcome in (O.REJECTED, O.RETRY_LATER)
                          and parsed.mentions(_NOT_FOUND_MARKERS)):
        outcome, meaning = O.NOT_FOUND, "task not found"
    elif outcome is O.REJECTED and code != 24 and parsed.mentions(_RETRY_MARKERS):
        outcome, meaning = O.RETRY_LATER, "upstream busy"
    if status == 404 and outcome is O.REJECTED and is_query:
        outcome, meaning = O.NOT_FOUND, "not found"

    head = f"{meaning} (code {code})"
    if outcome is O.ACCEPTED:
        if task_id is None and not is_query:
            if isinstance(parsed.result, list):
                return answer(O.ACCEPTED, _with_detail(head, parsed.detail),
                              result=parsed.result)
            return answer(O.OUTCOME_UNKNOWN,
                          _with_detail(f"success code {code} without a task id", parsed.detail),
                          result=parsed.result)
        queued = read_queued_ahead(parsed)
        if queued:
            head = f"{meaning}, {queued} ahead (code {code})"
        return answer(O.ACCEPTED, _with_detail(head, parsed.detail), task_id=task_id,
                      queued_ahead=queued, result=parsed.result)
    if outcome is O.NEEDS_MODAL:
        return answer(O.NEEDS_MODAL, _with_detail(head, parsed.detail), task_id=task_id,
                      result=parsed.result)
    if code == 24 and outcome is O.REJECTED:
        message = f"banned prompt: word {banned_word!r}" if banned_word else \
            _with_detail(head, parsed.detail)
        return answer(O.REJECTED, message, banned_word=banned_word, result=parsed.result)
    # Refusals keep the id only as information (uniapi sends one with 23 "queue full").
    return answer(outcome, _with_detail(head, parsed.detail), result=parsed.result,
                  task_id=task_id if outcome is O.NOT_FOUND else None)


def _no_code_success(status: int | None, parsed: Body, is_query: bool, http: str,
                     answer: Any) -> Answer:
    data = parsed.data
    if parsed.kind == "empty" or (parsed.kind == "json" and data is None):
        if is_query:
            return answer(O.NOT_FOUND, f"empty answer ({http}): no such task")
        return answer(O.OUTCOME_UNKNOWN, f"upstream answered an empty body ({http}); "
                                         "the task may or may not exist")
    if parsed.kind == "html":
        if is_query:
            return answer(O.OUTCOME_UNKNOWN, _with_detail(
                f"upstream answered an HTML page where JSON was expected ({http})",
                parsed.detail))
        return answer(O.REJECTED, _with_detail(
            f"upstream answered an HTML page where JSON was expected ({http}); is the "
            "upstream URL the API base?", parsed.detail))
    if parsed.kind in ("truncated", "text"):
        what = "truncated JSON" if parsed.kind == "truncated" else "text that is not JSON"
        return answer(O.OUTCOME_UNKNOWN, _with_detail(f"upstream answered {what} ({http})",
                                                      parsed.detail))
    if parsed.error_envelope:
        if is_query and parsed.mentions(_NOT_FOUND_MARKERS):
            return answer(O.NOT_FOUND, _with_detail(f"not found ({http})", parsed.detail))
        outcome = O.RETRY_LATER if parsed.mentions(_RETRY_MARKERS) else O.REJECTED
        return answer(outcome, _with_detail(f"upstream error ({http})",
                                            parsed.detail or parsed.code_text))
    if is_query:
        if isinstance(data, list):
            return answer(O.ACCEPTED, f"{len(data)} item(s) ({http})", result=data)
        if isinstance(data, dict) and task_id_of(data.get("id")):
            return answer(O.ACCEPTED, f"task ({http})", task_id=task_id_of(data.get("id")),
                          result=data)
    return answer(O.OUTCOME_UNKNOWN, _with_detail(
        f"upstream answered JSON without a code ({http}, {type(data).__name__})",
        parsed.detail))
