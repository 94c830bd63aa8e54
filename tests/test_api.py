"""The /v1 jobs API over real HTTP (the real app on loopback, the real Redis): creation,
Idempotency-Key, pagination, filters, cancel, retry, and bad input at the door (never a
5xx). The end-to-end cases (a worker and the simulator) run against a Stack."""
from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.stack import Stack
from tests.support.web import serve
from webhook import create_app
from worker import api

KEY = "k1"
AUTH = {"Authorization": f"Bearer {KEY}"}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
IMG = f"data:image/png;base64,{PNG}"


@pytest.fixture
def live(make_engine):
    engine = make_engine(api_keys=[KEY], max_in_flight=1)
    with serve(create_app(engine.settings, engine)) as url:
        session = requests.Session()
        session.headers.update(AUTH)
        yield engine, url, session


def post_job(session, url, body, **kw):
    return session.post(f"{url}/v1/jobs", json=body, timeout=10, **kw)


# -- creation and idempotency ---------------------------------------------------------------------
def test_create_answers_202_with_location_and_the_job(live):
    _engine, url, s = live
    resp = post_job(s, url, {"prompt": "a lighthouse", "then": ["U1", {"button": "V2", "then": ["U3"]}],
                             "metadata": {"order": 7}})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert [st_["label"] for st_ in job["steps"]] == ["IMAGINE", "U1", "V2", "U3"]
    assert job["metadata"] == {"order": 7} and job["status"] in ("queued", "running")
    got = s.get(f"{url}{resp.headers['Location']}", timeout=5).json()
    assert got["id"] == job["id"] and "deliveries" in got


def test_api_key_required(live):
    _, url, _ = live
    resp = requests.post(f"{url}/v1/jobs", json={"prompt": "x"}, timeout=5)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = requests.get(f"{url}/v1/jobs", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"


def test_idempotency_key_same_body_same_job_other_body_conflict(live):
    engine, url, s = live
    body = {"prompt": "once only", "then": ["U2"]}
    first = post_job(s, url, body, headers={"Idempotency-Key": "order-1"})
    again = post_job(s, url, body, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    other = post_job(s, url, {"prompt": "another"}, headers={"Idempotency-Key": "order-1"})
    assert other.status_code == 409 and other.json()["error"] == "conflict"
    assert engine.r.zcard(engine.keys.jobs()) == 1
    too_long = post_job(s, url, body, headers={"Idempotency-Key": "x" * 201})
    assert too_long.status_code == 400


def test_concurrent_idempotent_requests_make_one_job(live):
    from concurrent.futures import ThreadPoolExecutor

    engine, url, _ = live

    def one(_):
        return requests.post(f"{url}/v1/jobs", json={"prompt": "race"}, timeout=10,
                             headers={**AUTH, "Idempotency-Key": "race-1"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert {a.status_code for a in answers} <= {200, 202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert engine.r.zcard(engine.keys.jobs()) == 1


# -- listing ----------------------------------------------------------------------------------------
def test_pagination_walks_every_job_once_newest_first(live):
    _engine, url, s = live
    ids = [post_job(s, url, {"prompt": f"p{i}"}).json()["id"] for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = s.get(f"{url}/v1/jobs", params=params, timeout=5).json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        cursor = page["next"]
        if not cursor:
            break
    assert seen == list(reversed(ids)) and pages == 3


def test_filters_status_batch_and_created_range(live):
    _engine, url, s = live
    early = post_job(s, url, {"prompt": "early"}).json()["id"]    # takes the only slot
    time.sleep(0.05)
    mid = time.time()
    queued = post_job(s, url, {"prompt": "late"}).json()["id"]    # stays queued
    s.post(f"{url}/v1/jobs/{queued}/cancel", timeout=5)
    cancelled = s.get(f"{url}/v1/jobs", params={"status": "cancelled"}, timeout=5).json()["items"]
    assert [j["id"] for j in cancelled] == [queued]
    after = s.get(f"{url}/v1/jobs", params={"created_from": mid}, timeout=5).json()["items"]
    assert [j["id"] for j in after] == [queued]
    iso_to = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)) + f".{int(mid % 1 * 1e6):06d}Z"
    before = s.get(f"{url}/v1/jobs", params={"created_to": iso_to}, timeout=5).json()["items"]
    assert [j["id"] for j in before] == [early]
    b = s.post(f"{url}/v1/batches", json={"name": "filters", "items": ["b1", "b2"]}, timeout=5).json()
    in_batch = s.get(f"{url}/v1/jobs", params={"batch": b["id"]}, timeout=5).json()["items"]
    assert {j["prompt"] for j in in_batch} == {"b1", "b2"} and all(j["batch"] == b["id"] for j in in_batch)


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"cursor": "zzz"}, {"cursor": "nan:x"},
    {"cursor": "inf:x"}, {"status": "bogus"}, {"created_from": "yesterday"},
    {"created_to": "nan"},
])
def test_bad_list_parameters_are_400(live, params):
    _, url, s = live
    resp = s.get(f"{url}/v1/jobs", params=params, timeout=5)
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"][0]["path"] in params


# -- cancel and retry ----------------------------------------------------------------------------------
def test_cancel_a_queued_job_and_unknown_ids(live):
    _engine, url, s = live
    post_job(s, url, {"prompt": "running"})                      # holds the one slot
    queued = post_job(s, url, {"prompt": "waits", "then": ["U1"]}).json()["id"]
    resp = s.post(f"{url}/v1/jobs/{queued}/cancel", timeout=5)
    assert resp.status_code == 200
    view = resp.json()
    assert view["status"] == "cancelled" and view["finishedAt"]
    assert {st_["status"] for st_ in view["steps"]} == {"cancelled"}
    for path in ("/v1/jobs/job_nope", "/v1/jobs/job_nope/cancel", "/v1/jobs/job_nope/retry"):
        method = s.get if path.count("/") == 3 else s.post
        r = method(f"{url}{path}", timeout=5)
        assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_retry_of_an_unfinished_job_reopens_nothing(live):
    _, url, s = live
    job = post_job(s, url, {"prompt": "busy"}).json()["id"]
    resp = s.post(f"{url}/v1/jobs/{job}/retry", timeout=5)
    assert resp.status_code == 200 and resp.json()["retried"] == 0


# -- bad input at the door --------------------------------------------------------------------------
def test_malformed_json_and_wrong_content_type_are_400(live):
    engine, url, s = live
    for data, ctype in [("{nope", "application/json"), ("", "application/json"),
                        ('{"prompt": NaN}', "application/json"), (b"\xff\xfe", "application/json"),
                        ("[" * 5000, "application/json"), ("prompt=x", "application/x-www-form-urlencoded"),
                        ('{"prompt": "x"}', "text/plain")]:
        resp = s.post(f"{url}/v1/jobs", data=data, headers={"Content-Type": ctype}, timeout=5)
        assert resp.status_code == 400, (data[:20], resp.text)
        assert resp.json()["error"] == "invalid_request"
    assert engine.r.zcard(engine.keys.jobs()) == 0


@pytest.mark.parametrize("body,path,words", [
    ({"prompt": 5}, "prompt", "string"),
    ({"prompt": "x", "priority": "high"}, "priority", "integer"),
    ({"prompt": "x", "then": "U1"}, "then", "list"),
    ({"prompt": "x", "then": [{"button": "U1", "bogus": 1}]}, "then[0].bogus", "not permitted"),
    ({"prompt": "x", "colour": "red"}, "colour", "not permitted"),
    ({"action": "PAINT", "prompt": "x"}, "action", "IMAGINE"),
    ({"action": "IMAGINE"}, "body", "prompt is required"),
    ({"action": "BLEND", "base64Array": [IMG] * 6}, "base64Array", "at most 5"),
    ({"action": "BLEND", "base64Array": [IMG, "data:image/png;base64,aGVsbG8gd29ybGQ="]},
     "base64Array[1]", "not a PNG"),
    ({"action": "DESCRIBE", "base64": "https://example.com/cat.png"}, "base64", "data URL"),
    ({"prompt": "x", "callbackUrl": "ftp://x"}, "callbackUrl", "http"),
    ({"prompt": "x", "metadata": {"a": "\ud800"}}, "body", "surrogate"),
    ({"prompt": "x", "then": ["U1", "U5"]}, "then[1]", "valid labels: U1, U2, U3, U4, V1"),
    ({"prompt": "x", "then": [{"button": "V2", "then": ["V0"]}]}, "then[0].then[0]",
     "V1 to V4 only"),
    ({"prompt": "x", "then": [{"button": "upsample::9"}]}, "then[0].button", "can never be offered"),
])
def test_invalid_specs_name_the_field(live, body, path, words):
    engine, url, s = live
    resp = s.post(f"{url}/v1/jobs", data=json.dumps(body), timeout=5,
                  headers={"Content-Type": "application/json"})
    assert resp.status_code in (400, 422), resp.text
    details = resp.json()["details"]
    assert any(d["path"] == path and words.lower() in d["message"].lower() for d in details), details
    assert engine.r.zcard(engine.keys.jobs()) == 0


def test_deeply_nested_input_is_refused_not_crashed(live):
    engine, url, s = live
    for depth in (100, 400, 5000):
        body = '{"prompt": "x", "metadata": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
        resp = s.post(f"{url}/v1/jobs", data=body, headers={"Content-Type": "application/json"},
                      timeout=5)
        assert resp.status_code in (400, 422), resp.text
        assert "nested deeper than 64 levels" in resp.text or "malformed JSON" in resp.text
    assert engine.r.zcard(engine.keys.jobs()) == 0


def test_a_20_mb_image_is_refused_with_the_limit_named(live):
    engine, url, s = live
    big = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (20 * 1024 * 1024)).decode()
    resp = post_job(s, url, {"action": "DESCRIBE", "base64": big})
    assert resp.status_code == 422
    detail = resp.json()["details"][0]
    assert detail["path"] == "base64" and "8 MB limit" in detail["message"]
    assert engine.r.zcard(engine.keys.jobs()) == 0


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["prompt", "action", "then", "button", "base64Array", "priority", "key",
                         "metadata", "mode", "items", "name", "x"]) | st.text(max_size=5),
        inner, max_size=5),
    max_leaves=15)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=JSONISH)
def test_no_5xx_for_any_json_body(live_session_url, body):
    url, s = live_session_url
    for path in ("/v1/jobs", "/v1/batches"):
        resp = s.post(f"{url}{path}", data=json.dumps(body), timeout=10,
                      headers={"Content-Type": "application/json"})
        assert resp.status_code < 500, resp.text
        assert resp.headers["Content-Type"].startswith("application/json")


@pytest.fixture(scope="module")
def live_session_url():
    """One app for the Hypothesis test (function-scoped fixtures do not mix with @given)."""
    import uuid

    from tests.conftest import engine_for, settings_for

    prefix = f"mjflow-test-{uuid.uuid4().hex[:10]}"
    engine = engine_for(settings_for(prefix, "/tmp/mjflow-test", api_keys=[KEY], local_run=False))
    r = engine.r
    with serve(create_app(engine.settings, engine)) as url:
        session = requests.Session()
        session.headers.update(AUTH)
        yield url, session
    for key in r.scan_iter(f"{prefix}:*", count=1000):
        r.delete(key)


# -- the Python door ----------------------------------------------------------------------------------
def test_python_submit_and_errors(engine):
    job = api.submit({"prompt": "from python", "then": ["U1"]}, engine=engine)
    assert job["id"].startswith("job_") and len(job["steps"]) == 2
    with pytest.raises(api.SpecError) as err:
        api.submit({"prompt": "x", "then": [{"button": ""}]}, engine=engine)
    assert "then[0].button" in [e["path"] for e in err.value.errors]
    assert api.wait(job["id"], timeout_s=0, engine=engine)["id"] == job["id"]


# -- end to end: a real worker and the simulator -----------------------------------------------------------
def test_retry_after_failures_and_idempotency_through_a_real_worker():
    with Stack(speed=100) as stack:
        stack.set_faults(fail=1.0, seed=1)
        failed = stack.submit({"prompt": "will fail first", "then": ["U1"]})["id"]
        view = stack.wait_jobs([failed], timeout_s=60)[0]
        assert view["status"] == "failed" and view["steps"][0]["failReason"]
        assert view["steps"][1]["status"] == "skipped"
        stack.set_faults(fail=0.0)
        resp = requests.post(f"{stack.web_url}/v1/jobs/{failed}/retry", headers=stack.headers, timeout=10)
        assert resp.status_code == 200 and resp.json()["retried"] == 2
        view = stack.wait_jobs([failed], timeout_s=60)[0]
        assert view["status"] == "succeeded", view
        assert all(st_["images"] for st_ in view["steps"])
        # the same key + body through the real app
        body = {"prompt": "idempotent through the stack"}
        answers = [requests.post(f"{stack.web_url}/v1/jobs", json=body, timeout=10,
                                 headers={**stack.headers, "Idempotency-Key": "e2e-1"})
                   for _ in range(2)]
        assert [r.status_code for r in answers] == [202, 200]
        a, b = (r.json() for r in answers)
        assert a["id"] == b["id"]
        stack.wait_jobs([a["id"]], timeout_s=60)
        stats = stack.sim_stats()
        # the retry of the failed imagine is a new upstream task with a state of its own
        assert stats["duplicate_submissions"]["count"] == 0, stats["duplicate_submissions"]
        # imagine failed + retried imagine + U1 + the idempotent imagine
        assert sum(stats["submissions"].values()) == 4, stats["submissions"]


# -- act later and the newer surface at the HTTP door ---------------------------------------------
def test_add_steps_over_http_and_bad_input_there(live):
    engine, url, s = live
    job = post_job(s, url, {"prompt": "pick later"}).json()
    root = job["steps"][0]["id"]
    # the root has not run: the follow-up waits for it
    resp = s.post(f"{url}/v1/jobs/{job['id']}/steps", json={"step": root, "button": "U3",
                                                            "then": ["V1"]}, timeout=5)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert len(body["added"]) == 2 and resp.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert [st_["label"] for st_ in body["steps"]] == ["IMAGINE", "U3", "V1"]
    assert body["steps"][1]["status"] == "waiting"
    steps_before = len(engine.store.step_ids(job["id"]))
    for bad, status, path in [
        ({"step": root, "button": ""}, 422, "button"),
        ({"step": root, "button": "U1", "colour": 1}, 422, "colour"),
        ({"step": root, "button": "U1", "index": 2}, 422, "index"),
        ({"step": "", "button": "U1"}, 422, "step"),
        ([1, 2], 400, "body"),
    ]:
        resp = s.post(f"{url}/v1/jobs/{job['id']}/steps", json=bad, timeout=5)
        assert resp.status_code == status, (bad, resp.text)
        assert resp.json()["details"][0]["path"] == path, resp.text
    assert s.post(f"{url}/v1/jobs/job_nope/steps", json={"button": "U1"},
                  timeout=5).status_code == 404
    assert s.post(f"{url}/v1/jobs/{job['id']}/steps", json={"step": "V7", "button": "U1"},
                  timeout=5).status_code == 404
    assert len(engine.store.step_ids(job["id"])) == steps_before


def test_what_the_upstream_lacks_is_a_422_naming_the_profile(live):
    engine, url, s = live            # the default profile: midjourney-proxy
    before = engine.r.zcard(engine.keys.jobs())
    for spec, path in [
        ({"action": "VIDEO", "prompt": "x", "image": "http://a/b.png"}, "action"),
        ({"action": "EDITS", "prompt": "x", "image": "http://a/b.png"}, "action"),
        ({"action": "UPLOAD", "base64Array": [IMG]}, "action"),
        ({"prompt": "x", "then": [{"button": "U1", "then": ["Animate (Low motion)"]}]},
         "then[0].then[0].button"),
        ({"action": "SWAP_FACE", "sourceUrl": "http://a/1.png", "targetUrl": "http://a/2.png"},
         "sourceUrl"),
        ({"action": "VIDEO", "prompt": "x"}, "image"),
        ({"action": "ACTION", "taskId": "17"}, "button"),
        ({"prompt": "x", "language": "zh"}, "language"),
        ({"action": "ACTION", "taskId": "17", "button": "U1", "accountFilter": {}},
         "accountFilter"),
        ({"action": "ACTION", "taskId": "17", "button": "Animate (High motion)"}, "button"),
        ({"prompt": "x", "accountFilter": {"modes": ["SLOW"]}}, "accountFilter.modes[0]"),
    ]:
        resp = post_job(s, url, spec)
        assert resp.status_code in (400, 422), (spec, resp.text)
        details = resp.json()["details"]
        assert details[0]["path"] == path, (spec, details)
        if path in ("action", "sourceUrl", "then[0].then[0].button"):
            assert "midjourney-proxy" in details[0]["message"]
    assert engine.r.zcard(engine.keys.jobs()) == before
