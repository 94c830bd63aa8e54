"""Unit tests of worker.upstream: classify() (one row per answer shape) and the Task model.

The payloads are copied from the provider docs (/work/shared/seeds) and the research
notes (/work/shared/reference), so each row is an answer a real upstream gives.
"""
from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.exceptions import MaxRetryError, NewConnectionError

from worker.upstream import PROFILES, Answer, Outcome, Task, classify, get_profile
from worker.upstream.models import TaskStatus
from worker.upstream.outcomes import QUERY_ENDPOINTS

O = Outcome

OPENAI_401 = {"error": {"message": "无效的令牌 (request id: 2024)", "type": "new_api_error",
                        "code": ""}}

# (id, profile, endpoint, http status, body, content type, expected outcome, expected fields)
ROWS: list[tuple[str, str, str, int | None, Any, str | None, Outcome, dict[str, Any]]] = [
    # --- code 1 / 22: accepted ----------------------------------------------------------
    ("code1", "midjourney-proxy", "imagine", 200,
     {"code": 1, "description": "提交成功", "result": "1712345678901234",
      "properties": {"discordInstanceId": "1118138338562560102"}},
     "application/json", O.ACCEPTED, {"task_id": "1712345678901234", "code": 1}),
    ("code1-result-number", "newapi", "imagine", 200,
     {"code": 1, "description": "提交成功", "properties": {}, "result": 1320098173412546},
     "application/json", O.ACCEPTED, {"task_id": "1320098173412546"}),
    ("code1-result-float", "midjourney-proxy", "imagine", 200,
     '{"code": 1, "description": "ok", "result": 1320098173412546.0}',
     "application/json", O.ACCEPTED, {"task_id": "1320098173412546"}),
    ("code-as-string", "midjourney-proxy", "imagine", 200,
     {"code": "1", "description": "提交成功", "result": "17"}, "application/json",
     O.ACCEPTED, {"task_id": "17", "code": 1}),
    ("code22-queued", "uniapi", "imagine", 200,
     {"code": 22, "description": "排队中,前面还有1个任务", "result": "14001929738841620",
      "properties": {"numberOfQueues": 1, "discordInstanceId": "1118138338562560102"}},
     "application/json", O.ACCEPTED, {"task_id": "14001929738841620", "queued_ahead": 1}),
    ("code22-string-code-and-count", "midjourney-proxy", "imagine", 200,
     {"code": "22", "description": "排队中，前面还有2个任务", "result": "5",
      "properties": {"numberOfQueues": "2"}}, "application/json",
     O.ACCEPTED, {"task_id": "5", "queued_ahead": 2, "code": 22}),
    ("dataeyes-code1-queued", "dataeyes", "action", 200,
     {"code": 1, "description": "排队中,前面还有5个任务", "result": "1781524431429700",
      "properties": {"numberOfQueues": 5, "discordInstanceId": "273d9093c1c54b6b",
                     "discordChannelId": "273d9093c1c54b6b"}},
     "application/json", O.ACCEPTED, {"task_id": "1781524431429700", "queued_ahead": 5}),
    ("newapi-22-rewritten-to-1", "newapi", "imagine", 200,
     {"code": 1, "description": "排队中，前面还有3个任务", "result": "9"},
     "application/json", O.ACCEPTED, {"task_id": "9", "queued_ahead": 3}),
    ("upload-discord-images-list", "trueai", "upload-discord-images", 200,
     {"code": 1, "description": "提交成功", "result": ["https://cdn.discordapp.com/a.png"]},
     "application/json", O.ACCEPTED,
     {"task_id": None, "result": ["https://cdn.discordapp.com/a.png"]}),
    ("code1-without-id", "midjourney-proxy", "imagine", 200,
     {"code": 1, "description": "提交成功", "result": None}, "application/json",
     O.OUTCOME_UNKNOWN, {}),
    # --- code 21 per profile --------------------------------------------------------------
    ("21-midjourney-proxy-modal", "midjourney-proxy", "action", 200,
     {"code": 21, "description": "Waiting for window confirm", "result": "1711",
      "properties": {"finalPrompt": "a cat", "remix": True}},
     "application/json", O.NEEDS_MODAL, {"task_id": "1711"}),
    ("21-trueai-modal", "trueai", "action", 200,
     {"code": 21, "description": "Waiting for window confirm", "result": "1712",
      "properties": {"finalPrompt": "", "remix": True}},
     "application/json", O.NEEDS_MODAL, {"task_id": "1712"}),
    ("21-uniapi-modal", "uniapi", "action", 200,
     {"code": 21, "description": "Waiting for window confirm", "result": "1713"},
     "application/json", O.NEEDS_MODAL, {"task_id": "1713"}),
    ("21-newapi-inpaint-modal", "newapi", "action", 200,
     {"code": 21, "description": "Waiting for window confirm", "result": "1714"},
     "application/json", O.NEEDS_MODAL, {"task_id": "1714"}),
    ("21-newapi-param-error", "newapi", "imagine", 200,
     {"code": 21, "description": "参数错误", "result": None}, "application/json",
     O.REJECTED, {"task_id": None}),
    ("21-dataeyes-existed", "dataeyes", "action", 200,
     {"code": 21, "description": "任务已存在", "result": "1781524431429700"},
     "application/json", O.ACCEPTED, {"task_id": "1781524431429700"}),
    ("21-novicezk-existed-with-status", "midjourney-proxy", "change", 200,
     {"code": 21, "description": "任务已存在", "result": "1715",
      "properties": {"status": "SUCCESS", "imageUrl": "https://cdn.discordapp.com/x.png"}},
     "application/json", O.ACCEPTED, {"task_id": "1715"}),
    # --- queue full, no account, system errors ----------------------------------------
    ("23-queue-full", "midjourney-proxy", "imagine", 200,
     {"code": 23, "description": "队列已满，请稍后尝试", "result": None},
     "application/json", O.RETRY_LATER, {"code": 23}),
    ("23-uniapi-queue-full-with-id", "uniapi", "imagine", 200,
     {"code": 23, "description": "队列已满,请稍后尝试", "result": "14001929738841620",
      "properties": {"discordInstanceId": "1118138338562560102"}},
     "application/json", O.RETRY_LATER, {"task_id": None}),
    ("23-newapi-system-error", "newapi", "imagine", 200,
     {"code": 23, "description": "系统错误"}, "application/json", O.RETRY_LATER, {}),
    ("9-trueai-queue-full", "trueai", "imagine", 200,
     {"code": 9, "description": "提交失败，队列已满，请稍后重试", "result": None},
     "application/json", O.RETRY_LATER, {"code": 9}),
    ("3-no-account", "midjourney-proxy", "imagine", 200,
     {"code": 3, "description": "无可用的账号实例", "result": None},
     "application/json", O.RETRY_LATER, {"code": 3}),
    ("3-trueai-parent-missing-404", "trueai", "action", 404,
     {"code": 3, "description": "关联任务不存在或已失效", "result": None},
     "application/json", O.NOT_FOUND, {"code": 3}),
    ("3-novicezk-parent-missing-200", "midjourney-proxy", "change", 200,
     {"code": 3, "description": "关联任务不存在或已失效"}, "application/json",
     O.NOT_FOUND, {}),
    ("30-overloaded", "newapi", "imagine", 429,
     {"description": "当前分组负载已饱和，请稍后再试", "type": "upstream_error", "code": 30},
     "application/json", O.RETRY_LATER, {}),
    ("30-overloaded-http-200", "newapi", "imagine", 200,
     {"description": "当前分组负载已饱和", "code": 30}, "application/json", O.RETRY_LATER, {}),
    # --- validation, banned prompt ------------------------------------------------------
    ("4-validation", "midjourney-proxy", "imagine", 200,
     {"code": 4, "description": "prompt不能为空", "result": None},
     "application/json", O.REJECTED, {"code": 4}),
    ("4-trueai-concurrency-limit", "trueai", "imagine", 200,
     {"code": 4, "description": "并发数已达上限"}, "application/json", O.RETRY_LATER, {}),
    ("4-newapi-task-status-not-success", "newapi", "action", 400,
     {"description": "task_status_not_success ", "type": "upstream_error", "code": 4},
     "application/json", O.RETRY_LATER, {}),
    ("24-banned-word", "uniapi", "imagine", 200,
     {"code": 24, "description": "可能包含敏感词",
      "properties": {"promptEn": "nude body", "bannedWord": "nude"}},
     "application/json", O.REJECTED,
     {"banned_word": "nude", "message": "banned prompt: word 'nude'"}),
    ("24-newapi-banned-word", "newapi", "imagine", 200,
     {"code": 24, "description": "可能包含敏感词", "properties": {"bannedWord": "gore"}},
     "application/json", O.REJECTED, {"banned_word": "gore"}),
    ("24-newapi-account-unavailable", "newapi", "imagine", 200,
     {"code": 24, "description": "账号不可用"}, "application/json", O.RETRY_LATER, {}),
    ("5-newapi-do-request-failed", "newapi", "imagine", 400,
     {"description": "do_request_failed ", "type": "upstream_error", "code": 5},
     "application/json", O.OUTCOME_UNKNOWN, {}),
    ("unknown-code", "midjourney-proxy", "imagine", 200,
     {"code": 7, "description": "something new"}, "application/json", O.REJECTED, {}),
    # --- credit -------------------------------------------------------------------------
    ("25-balance", "midjourney-proxy", "imagine", 200,
     {"code": 25, "description": "余额不足", "result": None}, "application/json",
     O.OUT_OF_CREDIT, {}),
    ("25-newapi-balance", "newapi", "imagine", 200,
     {"code": 25, "description": "余额不足"}, "application/json", O.OUT_OF_CREDIT, {}),
    ("newapi-quota-not-enough", "newapi", "imagine", 400,
     {"description": "quota_not_enough ", "type": "upstream_error", "code": 4},
     "application/json", O.OUT_OF_CREDIT, {}),
    ("onehub-user-quota", "newapi", "imagine", 400,
     {"description": "user quota is not enough ", "code": 4}, "application/json",
     O.OUT_OF_CREDIT, {}),
    ("trueai-envelope-balance", "trueai", "imagine", 200,
     {"success": False, "code": -1, "message": "余额不足", "timestamp": "2024-07-01"},
     "application/json", O.OUT_OF_CREDIT, {}),
    ("openai-401-token-quota-used-up", "newapi", "imagine", 401,
     {"error": {"message": "该令牌额度已用尽 token.RemainQuota = 0", "type": "new_api_error",
                "code": ""}}, "application/json", O.OUT_OF_CREDIT, {}),
    ("http-402", "midjourney-proxy", "imagine", 402, "", None, O.OUT_OF_CREDIT, {}),
    # --- trueai Result envelope -----------------------------------------------------------
    ("trueai-envelope-state-too-long", "trueai", "action", 200,
     {"success": False, "code": -1, "message": "State参数过长", "timestamp": "x"},
     "application/json", O.REJECTED, {}),
    ("trueai-envelope-queue-limit", "trueai", "action", 200,
     {"success": False, "code": -1, "message": "队列数已达上限", "timestamp": "x"},
     "application/json", O.RETRY_LATER, {}),
    ("trueai-envelope-500", "trueai", "imagine", 500,
     {"success": False, "code": -1, "message": "操作失败", "timestamp": "x"},
     "application/json", O.RETRY_LATER, {"http_status": 500}),
    # --- auth -----------------------------------------------------------------------------
    ("openai-401", "newapi", "imagine", 401, OPENAI_401, "application/json",
     O.AUTH_FAILED, {"http_status": 401}),
    ("openai-403-access-denied", "newapi", "imagine", 403,
     {"error": {"message": "该令牌无权访问", "type": "new_api_error", "code": "access_denied"}},
     "application/json", O.AUTH_FAILED, {}),
    ("novicezk-401-empty", "midjourney-proxy", "imagine", 401, "", None, O.AUTH_FAILED, {}),
    ("trueai-403-not-logged-in", "trueai", "imagine", 403, "未登录", "text/plain",
     O.AUTH_FAILED, {}),
    ("dataeyes-403-1010", "dataeyes", "imagine", 403, "error code: 1010", "text/plain",
     O.AUTH_FAILED, {}),
    ("openai-invalid-token-http-200", "newapi", "fetch", 200, OPENAI_401, "application/json",
     O.AUTH_FAILED, {}),
    # --- throttling and server errors -----------------------------------------------------
    ("openai-429", "newapi", "imagine", 429,
     {"error": {"message": "您的速率达到上限，请稍后再试。", "type": "one_hub_error"}},
     "application/json", O.RETRY_LATER, {}),
    ("openai-503-model-not-found", "newapi", "imagine", 503,
     {"error": {"message": "当前分组 default 下对于模型 mj_imagine 无可用渠道",
                "type": "new_api_error", "code": "model_not_found"}},
     "application/json", O.RETRY_LATER, {}),
    ("openai-503-cpu-overloaded", "newapi", "imagine", 503,
     {"error": {"message": "system cpu overloaded", "type": "new_api_error",
                "code": "system_cpu_overloaded"}}, "application/json", O.RETRY_LATER, {}),
    ("html-502", "midjourney-proxy", "imagine", 502,
     ("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
      "</h1></center><hr><center>nginx</center></body></html>"), "text/html",
     O.RETRY_LATER, {"message_contains": "upstream answered HTML error page (HTTP 502)"}),
    ("html-504-submit", "midjourney-proxy", "imagine", 504,
     "<html><title>504 Gateway Time-out</title></html>", "text/html", O.OUTCOME_UNKNOWN, {}),
    ("html-504-fetch", "midjourney-proxy", "fetch", 504,
     "<html><title>504 Gateway Time-out</title></html>", "text/html", O.RETRY_LATER, {}),
    ("spring-500", "midjourney-proxy", "imagine", 500,
     {"timestamp": "2024", "status": 500, "error": "Internal Server Error", "path": ""},
     "application/json", O.RETRY_LATER, {}),
    ("dataeyes-500-text", "dataeyes", "imagine", 500, "error code: 500", "text/plain",
     O.RETRY_LATER, {}),
    # --- empty, 204, truncated, HTML 200, 4xx without code ------------------------------
    ("empty-200-submit", "midjourney-proxy", "imagine", 200, "", None, O.OUTCOME_UNKNOWN, {}),
    ("empty-200-fetch", "midjourney-proxy", "fetch", 200, "", None, O.NOT_FOUND, {}),
    ("204-submit", "trueai", "imagine", 204, None, None, O.OUTCOME_UNKNOWN, {}),
    ("204-fetch", "trueai", "fetch", 204, None, None, O.NOT_FOUND, {}),
    ("null-fetch", "midjourney-proxy", "fetch", 200, "null", "application/json",
     O.NOT_FOUND, {}),
    ("newapi-task-no-found", "newapi", "fetch", 400,
     {"description": "task_no_found ", "type": "upstream_error", "code": 4},
     "application/json", O.NOT_FOUND, {}),
    ("404-fetch", "midjourney-proxy", "fetch", 404, "", None, O.NOT_FOUND, {}),
    ("truncated-json-submit", "midjourney-proxy", "imagine", 200,
     '{"code": 1, "description": "提交成功", "result": "17123', "application/json",
     O.OUTCOME_UNKNOWN, {}),
    ("truncated-json-fetch", "midjourney-proxy", "fetch", 200,
     '{"id": "17123", "status": "SUCC', "application/json", O.OUTCOME_UNKNOWN, {}),
    ("html-200-submit", "newapi", "imagine", 200,
     "<!doctype html><html><title>New API</title><div id=root></div></html>", "text/html",
     O.REJECTED, {}),
    ("html-404-unsupported-endpoint", "midjourney-proxy", "shorten", 404,
     "<html><title>404 Not Found</title></html>", "text/html", O.REJECTED, {}),
    ("spring-400", "midjourney-proxy", "imagine", 400,
     {"timestamp": "2024", "status": 400, "error": "Bad Request",
      "message": "JSON parse error", "path": "/mj/submit/imagine"},
     "application/json", O.REJECTED, {}),
    # --- queries with codes ---------------------------------------------------------------
    ("image-seed", "trueai", "image-seed", 200,
     {"code": 1, "description": "成功", "result": "2046319476"}, "application/json",
     O.ACCEPTED, {"task_id": "2046319476"}),
    ("image-seed-missing-404", "trueai", "image-seed", 404,
     {"code": 3, "description": "关联任务不存在或已失效"}, "application/json",
     O.NOT_FOUND, {}),
    ("newapi-image-not-found", "newapi", "image", 400,
     {"error": "midjourney_task_not_found"}, "application/json", O.NOT_FOUND, {}),
    ("list-by-condition", "midjourney-proxy", "list-by-condition", 200,
     [{"id": "1", "status": "SUCCESS"}], "application/json", O.ACCEPTED, {}),
]


def _body(body: Any) -> bytes | str | None:
    if body is None or isinstance(body, (str, bytes)):
        return body
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    "profile,endpoint,status,body,ctype,expected,fields",
    [row[1:] for row in ROWS], ids=[row[0] for row in ROWS],
)
def test_classify_table(profile: str, endpoint: str, status: int | None, body: Any,
                        ctype: str | None, expected: Outcome, fields: dict[str, Any]) -> None:
    answer = classify(status, _body(body), ctype, get_profile(profile), endpoint=endpoint)
    assert isinstance(answer, Answer)
    assert answer.outcome is expected, answer.message
    assert answer.message  # always readable
    for name, value in fields.items():
        if name == "message_contains":
            assert value in answer.message
        else:
            assert getattr(answer, name) == value, (name, answer)


#: What the dispatch window hears (``Answer.pressure``) from rows of the table above.
PRESSURE = {
    "23-queue-full": "queue_full", "23-uniapi-queue-full-with-id": "queue_full",
    "9-trueai-queue-full": "queue_full", "4-trueai-concurrency-limit": "queue_full",
    "trueai-envelope-queue-limit": "queue_full",
    "23-newapi-system-error": "transient",        # new-api documents 23 as either
    "3-no-account": "transient", "24-newapi-account-unavailable": "transient",
    "30-overloaded": "rate_limit", "30-overloaded-http-200": "rate_limit",
    "openai-429": "rate_limit", "openai-503-cpu-overloaded": "rate_limit",
    "openai-503-model-not-found": "transient", "html-502": "transient",
    "trueai-envelope-500": "transient", "html-504-submit": "transient",
    "5-newapi-do-request-failed": "transient",
    "code1": None, "code22-queued": None, "4-validation": None, "25-balance": None,
}


@pytest.mark.parametrize("row", [r for r in ROWS if r[0] in PRESSURE], ids=lambda r: r[0])
def test_pressure_tells_congestion_from_failure(row: tuple[Any, ...]) -> None:
    name, profile, endpoint, status, body, ctype = row[:6]
    answer = classify(status, _body(body), ctype, get_profile(profile), endpoint=endpoint)
    expected = PRESSURE[name]
    assert (answer.pressure.value if answer.pressure else None) == expected, answer
    assert answer.congestion is (expected in ("queue_full", "rate_limit"))


def test_a_system_error_9_is_not_queue_full_and_a_lost_connection_is_transient() -> None:
    system_error = {"code": 9, "description": "提交失败，系统异常", "result": None}
    answer = classify(200, _body(system_error), "application/json",
                      get_profile("midjourney-proxy"), endpoint="imagine")
    assert answer.outcome is O.RETRY_LATER and answer.pressure.value == "transient"
    lost = classify(None, None, None, get_profile("midjourney-proxy"), endpoint="imagine",
                    exc=requests.exceptions.ReadTimeout("read timed out"))
    assert lost.outcome is O.OUTCOME_UNKNOWN and lost.pressure.value == "transient"
    assert lost.as_dict()["pressure"] == "transient"


def test_retry_after_header_is_read() -> None:
    answer = classify(429, b"", None, PROFILES["newapi"], headers={"Retry-After": "7"})
    assert answer.outcome is O.RETRY_LATER
    assert answer.retry_after_s == 7.0
    dated = classify(503, b"", None, PROFILES["newapi"],
                     headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert dated.retry_after_s == 0.0


def test_dataeyes_1010_message_names_user_agent() -> None:
    answer = classify(403, "error code: 1010", "text/plain", PROFILES["dataeyes"])
    assert "User-Agent" in answer.message


def test_needs_modal_keeps_properties() -> None:
    answer = classify(200, json.dumps({"code": 21, "result": "7", "properties": {
        "finalPrompt": "a cat --zoom 2", "remix": True}}), "application/json",
        PROFILES["trueai"], endpoint="action")
    assert answer.outcome is O.NEEDS_MODAL
    assert answer.properties["finalPrompt"] == "a cat --zoom 2"
    assert answer.accepted


# --- transport exceptions -----------------------------------------------------------------

def _refused_error() -> requests.exceptions.ConnectionError:
    cause = NewConnectionError(None, "Failed to establish a new connection: [Errno 111]")
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/mj", cause))


@pytest.mark.parametrize("exc,endpoint,expected", [
    (requests.exceptions.ReadTimeout("read timed out"), "imagine", O.OUTCOME_UNKNOWN),
    (requests.exceptions.ReadTimeout("read timed out"), "action", O.OUTCOME_UNKNOWN),
    (requests.exceptions.ConnectionError("Connection aborted.", ConnectionResetError(104)),
     "imagine", O.OUTCOME_UNKNOWN),
    (requests.exceptions.ChunkedEncodingError("incomplete read"), "modal", O.OUTCOME_UNKNOWN),
    (TimeoutError("timed out"), "imagine", O.OUTCOME_UNKNOWN),
    (requests.exceptions.ConnectTimeout("connect timed out"), "imagine", O.RETRY_LATER),
    (_refused_error(), "imagine", O.RETRY_LATER),
    (socket.gaierror(-2, "Name or service not known"), "imagine", O.RETRY_LATER),
    (requests.exceptions.ReadTimeout("read timed out"), "fetch", O.RETRY_LATER),
    (requests.exceptions.ConnectionError("reset"), "list-by-condition", O.RETRY_LATER),
    (requests.exceptions.MissingSchema("no scheme"), "imagine", O.REJECTED),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_classify_exceptions(exc: BaseException, endpoint: str, expected: Outcome) -> None:
    answer = classify(None, None, None, PROFILES["midjourney-proxy"], endpoint=endpoint, exc=exc)
    assert answer.outcome is expected, answer.message
    if expected is O.OUTCOME_UNKNOWN:
        assert "may or may not" in answer.message


# --- never raises ---------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["code", "description", "result", "properties",
                                       "error", "message", "success", "type", "id",
                                       "bannedWord", "numberOfQueues", "status"]),
                      children, max_size=6),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    status=st.one_of(st.none(), st.integers(min_value=-5, max_value=999)),
    body=st.one_of(st.none(), st.binary(max_size=300), st.text(max_size=300),
                   _json_values.map(lambda v: json.dumps(v))),
    ctype=st.one_of(st.none(), st.sampled_from(["application/json", "text/html",
                                                "text/plain; charset=utf-8", ""]),
                    st.text(max_size=20)),
    profile=st.sampled_from(sorted(PROFILES)),
    endpoint=st.sampled_from(["submit", "imagine", "action", "modal", "upload-discord-images",
                              *sorted(QUERY_ENDPOINTS)]),
    retry_after=st.one_of(st.none(), st.text(max_size=30)),
)
def test_classify_never_raises(status: int | None, body: Any, ctype: str | None, profile: str,
                               endpoint: str, retry_after: str | None) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    answer = classify(status, body, ctype, PROFILES[profile], endpoint=endpoint,
                      headers=headers)
    assert isinstance(answer.outcome, Outcome)
    assert isinstance(answer.message, str) and answer.message
    assert "could not classify" not in answer.message  # the safety net was not needed
    assert answer.task_id is None or isinstance(answer.task_id, str)
    if answer.outcome is O.ACCEPTED and endpoint not in QUERY_ENDPOINTS \
            and endpoint != "upload-discord-images" and not isinstance(answer.result, list):
        assert answer.task_id


# --- Task model -------------------------------------------------------------------------

#: Seed 001 (UniAPI doc), step 2 response, verbatim.
UNIAPI_TASK = r'''{
    "id": "1320098173412546",
    "action": "IMAGINE",
    "prompt": "cat --v 6.1",
    "promptEn": "cat --v 6.1",
    "description": "Submit success",
    "state": "",
    "submitTime": 1741531578038,
    "startTime": 1741531580190,
    "finishTime": 1741531608566,
    "imageUrl": "https://img.innk.cc/attachments/1320066655572987907/1348306030429470862/adam_rivera4952_cat_26d56b92-4ed6-45e2-8561-563797923135.png?ex=67cefb57\u0026is=67cda9d7\u0026hm=b87e6b24e4bc3c2f1584b72154075607d6115602d0e5c7777e6637c29b8d3bd5\u0026",
    "status": "SUCCESS",
    "progress": "100%",
    "failReason": "",
    "properties": {
        "botType": "MID_JOURNEY",
        "discordChannelId": 8774786694361674000,
        "discordInstanceId": 7415633538733103000,
        "finalPrompt": "cat --v 6.1 --sref \u003chttps://s.mj.run/ktqQpnwPoPk\u003e",
        "flags": 0,
        "messageContent": "**cat --v 6.1 --sref \u003chttps://s.mj.run/ktqQpnwPoPk\u003e** - \u003c@1343445981269594182\u003e (relaxed)",
        "messageHash": "26d56b92-4ed6-45e2-8561-563797923135",
        "messageId": "1348306030706036789",
        "nonce": "1619855216344100864",
        "notifyHook": "",
        "progressMessageId": "1348305922325479495"
    },
    "buttons": [
        {
            "customId": "MJ::JOB::upsample::1::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "U1",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::upsample::2::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "U2",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::upsample::3::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "U3",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::upsample::4::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "U4",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::reroll::0::26d56b92-4ed6-45e2-8561-563797923135::SOLO",
            "emoji": "🔄",
            "label": "",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::variation::1::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "V1",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::variation::2::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "V2",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::variation::3::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "V3",
            "style": 2,
            "type": 2
        },
        {
            "customId": "MJ::JOB::variation::4::26d56b92-4ed6-45e2-8561-563797923135",
            "emoji": "",
            "label": "V4",
            "style": 2,
            "type": 2
        }
    ]
}'''

#: Seed 002 (DataEyes doc), fetch response, verbatim.
DATAEYES_TASK = r'''{
"id": "1781524258075013",
"action": "IMAGINE",
"prompt": "a futuristic cityscape at sunset --v 6.1",
"promptEn": "a futuristic cityscape at sunset --v 6.1",
"description": "提交成功",
"status": "SUCCESS",
"progress": "100%",
"submitTime": 1781524258075,
"startTime": 1781524259689,
"finishTime": 1781524294590,
"imageUrl": "www.yourdomain.com/mj/image/1781524258075013",
"failReason": "",
"buttons": [
{
"customId": "MJ::JOB::upsample::1::675515df-961f-411e-8e9b-d81ac68427f5",
"emoji": "",
"label": "U1",
"type": 2,
"style": 2
},
{
"customId": "MJ::JOB::reroll::0::675515df-961f-411e-8e9b-d81ac68427f5::SOLO",
"emoji": "🔄",
"label": "",
"type": 2,
"style": 2
}
],
"properties": {
"finalPrompt": "a futuristic cityscape at sunset --v 6.1 --fast",
"finalZhPrompt": ""
}
}'''


def test_uniapi_seed_task() -> None:
    task = Task.model_validate_json(UNIAPI_TASK)
    assert task.id == "1320098173412546"
    assert task.task_status is TaskStatus.SUCCESS and task.is_terminal
    assert task.progress_pct == 100
    assert task.submitTime == 1741531578038
    assert len(task.buttons) == 9 and task.buttons[4].emoji == "🔄"
    assert task.button("U2").customId == \
        "MJ::JOB::upsample::2::26d56b92-4ed6-45e2-8561-563797923135"
    assert task.final_prompt == "cat --v 6.1 --sref <https://s.mj.run/ktqQpnwPoPk>"
    assert task.message_hash == "26d56b92-4ed6-45e2-8561-563797923135"
    assert task.properties["discordChannelId"] == 8774786694361674000
    assert "&is=67cda9d7" in (task.imageUrl or "")


def test_dataeyes_seed_task() -> None:
    task = Task.model_validate_json(DATAEYES_TASK)
    assert task.id == "1781524258075013"
    assert task.imageUrl == "www.yourdomain.com/mj/image/1781524258075013"
    assert task.final_prompt == "a futuristic cityscape at sunset --v 6.1 --fast"
    # properties has no messageHash: it comes from the buttons.
    assert task.message_hash == "675515df-961f-411e-8e9b-d81ac68427f5"
    assert task.buttons[1].style == 2


def test_round_trip_keeps_upstream_json() -> None:
    data = json.loads(UNIAPI_TASK)
    task = Task.model_validate(data)
    dumped = task.model_dump(by_alias=True)
    assert Task.model_validate(dumped) == task
    for key in ("id", "status", "progress", "imageUrl", "submitTime", "properties"):
        assert dumped[key] == data[key]
    assert json.loads(task.model_dump_json(by_alias=True))["buttons"] == data["buttons"]


def test_gateway_row_before_first_poll() -> None:
    """new-api: status "", progress "0%", times 0, buttons/properties null (gateways §5)."""
    task = Task.model_validate({
        "id": 1711217942120945, "action": "IMAGINE", "prompt": "cat", "promptEn": "",
        "state": "", "submitTime": 1711217942000, "startTime": 0, "finishTime": 0,
        "imageUrl": "", "status": "", "progress": "0%", "failReason": "",
        "buttons": None, "properties": None, "videoUrl": "", "maskBase64": "",
    })
    assert task.id == "1711217942120945"
    assert task.status == "" and task.task_status is None and not task.is_terminal
    assert task.progress_pct == 0
    assert task.startTime is None and task.finishTime is None
    assert task.buttons == [] and task.properties == {}
    assert task.model_extra == {"maskBase64": ""} and task.videoUrl == "" and not task.is_video
    assert task.final_prompt is None and task.message_hash is None


@pytest.mark.parametrize("progress,expected", [
    ("", 0), ("0%", 0), ("93%", 93), (None, 0), ("100%", 100), (46, 46), ("Stopped", 0),
    ("150%", 100), ("12.5%", 12),
])
def test_progress(progress: Any, expected: int) -> None:
    task = Task.model_validate({"id": "1", "status": "IN_PROGRESS", "progress": progress})
    assert task.progress_pct == expected
    assert isinstance(task.progress, str)


@pytest.mark.parametrize("value,expected", [
    (None, None), (0, None), ("", None), (1741531578038, 1741531578038),
    (1741531578038.7, 1741531578038), ("1741531578038", 1741531578038),
    ("2024-07-01T00:00:00Z", 1719792000000), ("garbage", None), (True, None),
])
def test_times(value: Any, expected: int | None) -> None:
    task = Task.model_validate({"id": "1", "submitTime": value, "startTime": value})
    assert task.submitTime == expected and task.startTime == expected


def test_tolerant_fields() -> None:
    task = Task.model_validate({
        "id": 17.0, "status": 5, "progress": None, "state": 42, "failReason": None,
        "buttons": [{"customId": None, "label": "U1", "style": "2", "type": None}, "junk"],
        "properties": {"final_prompt": "snake", "message_hash": "abc", "remix_modal": True},
        "imageUrls": [{"url": "https://cdn.discordapp.com/1.png", "thumbnail": "t"}],
        "nonce": "123", "displays": {"submitTime": "2024"},
    })
    assert task.id == "17" and task.status == "SUCCESS" and task.progress == ""
    assert task.state == "42"
    assert task.buttons[0].customId == "" and task.buttons[0].style == 2
    assert len(task.buttons) == 1
    assert task.final_prompt == "snake" and task.message_hash == "abc"
    assert task.prop("remixModal") is True
    assert task.image_urls == ["https://cdn.discordapp.com/1.png"]
    assert task.model_extra["nonce"] == "123" and "displays" in task.model_dump()


@pytest.mark.parametrize("status,terminal", [
    ("SUCCESS", True), ("FAILURE", True), ("CANCEL", True), ("MODAL", False),
    ("NOT_START", False), ("SUBMITTED", False), ("IN_PROGRESS", False), ("", False),
    ("WEIRD", False),
])
def test_is_terminal(status: str, terminal: bool) -> None:
    assert Task(id="1", status=status).is_terminal is terminal


def test_profiles_are_data() -> None:
    assert PROFILES["uniapi"].mode_prefix("RELAX") == "/mj-relax"
    assert PROFILES["midjourney-proxy"].mode_prefix("RELAX") == ""
    assert not PROFILES["newapi"].callbacks_expected
    assert PROFILES["newapi"].poll_interval_s >= 15
    assert not PROFILES["dataeyes"].batch_query
    headers = PROFILES["newapi"].headers("sk-test")
    assert headers["Authorization"] == "Bearer sk-test" and headers["mj-api-secret"] == "sk-test"
    assert headers["User-Agent"].startswith("mjflow/")
    assert "Authorization" not in PROFILES["newapi"].headers("")
    with pytest.raises(ValueError):
        get_profile("nope")
