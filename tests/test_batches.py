"""Batches: item keys, deterministic ids, resume after a crash at any point, no duplicate
jobs under concurrent submitters, the HTTP door (JSON array, object form, JSONL), and a
real run through the worker and the simulator (counts, report, resubmission of failures)."""
from __future__ import annotations

import csv
import io
import json
import threading
import time

import pytest
import requests

from tests.support.stack import Stack
from tests.support.web import serve
from webhook import create_app
from worker import api, batches

KEY = "k1"
AUTH = {"Authorization": f"Bearer {KEY}"}


def job_count(engine) -> int:
    return engine.r.zcard(engine.keys.jobs())


# -- plain functions ---------------------------------------------------------------------------------
def test_keys_default_to_line_and_digest_and_ids_follow_the_name(engine):
    view = batches.create_batch(engine, ["a fox", {"prompt": "a cat", "key": "cat"}], name="zoo")
    assert view["id"] == batches.batch_id_for("zoo") and view["name"] == "zoo"
    keys = batches.item_jobs(engine, view["id"])
    assert set(keys) == {f"line-1:{batches.item_digest({'prompt': 'a fox'})}", "cat"}
    assert view["total"] == 2 and view["submitted"]["created"] == 2
    # the same items without a name: an id derived from the items, stable across calls
    a = batches.create_batch(engine, ["x", "y"])
    b = batches.create_batch(engine, ["x", "y"])
    assert a["id"] == b["id"] and b["submitted"] == {"created": 0, "done": 0, "inProgress": 2,
                                                    "retried": 0, "renewed": 0}
    assert job_count(engine) == 4


def test_invalid_items_create_nothing_and_every_error_is_listed(engine):
    with pytest.raises(api.SpecError) as err:
        batches.create_batch(engine, ["ok", {"prompt": 3}, 7, {"prompt": "x", "oops": 1}], name="bad")
    paths = [e["path"] for e in err.value.errors]
    assert paths == ["items[1].prompt", "items[2]", "items[3].oops"]
    assert job_count(engine) == 0 and not batches.exists(engine, batches.batch_id_for("bad"))
    with pytest.raises(api.SpecError):
        batches.create_batch(engine, [], name="empty")
    with pytest.raises(api.SpecError):
        batches.create_batch(engine, [{"prompt": "a", "key": "k"}, {"prompt": "b", "key": "k"}])


def test_a_crash_between_claim_and_creation_resumes_with_the_same_job_id(engine, monkeypatch):
    items = [f"prompt {i}" for i in range(5)]
    real_create = engine.store.create
    calls = {"n": 0}

    def crashing_create(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-creation")
        return real_create(*args, **kw)

    monkeypatch.setattr(engine.store, "create", crashing_create)
    with pytest.raises(KeyboardInterrupt):
        batches.create_batch(engine, items, name="crash")
    bid = batches.batch_id_for("crash")
    claims = engine.r.hgetall(engine.keys.batch_keys(bid))
    pending = [v for v in claims.values() if v.startswith(batches.PENDING)]
    assert len(claims) == 3 and len(pending) == 1 and job_count(engine) == 2
    half = batches.batch_view(engine, bid)
    assert half["total"] == 3 and half["counts"]["expired"] == 0 and not half["done"]
    engine.r.delete(engine.keys.lock(f"create:{pending[0][1:]}"))   # the dead process's lock
    view = batches.create_batch(engine, items, name="crash")
    assert view["submitted"] == {"created": 3, "done": 0, "inProgress": 2, "retried": 0, "renewed": 0}
    jobs = batches.item_jobs(engine, bid)
    assert pending[0][1:] in jobs.values()              # the claimed id was kept
    assert job_count(engine) == 5 and len(set(jobs.values())) == 5
    assert not any(v.startswith(batches.PENDING) for v in engine.r.hgetall(engine.keys.batch_keys(bid)).values())


def test_concurrent_submitters_never_duplicate_an_item(engine):
    items = [f"prompt {i}" for i in range(30)]
    errors: list[BaseException] = []

    def submit():
        try:
            batches.create_batch(engine, items, name="race")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert job_count(engine) == 30
    assert len(set(batches.item_jobs(engine, batches.batch_id_for("race")).values())) == 30


def test_cancel_and_list_batches(engine):
    engine.settings.max_in_flight  # noqa: B018 - the Inline engine dispatches into the window
    a = batches.create_batch(engine, ["one", "two", "three"], name="first")
    time.sleep(0.01)
    b = batches.create_batch(engine, ["four"], name="second")
    page = batches.list_batches(engine, limit=1)
    assert [x["id"] for x in page["items"]] == [b["id"]] and page["next"]
    page2 = batches.list_batches(engine, cursor=page["next"], limit=1)
    assert [x["id"] for x in page2["items"]] == [a["id"]]
    view = batches.cancel_batch(engine, a["id"])
    assert view["cancelled"] == 3
    with pytest.raises(api.NotFound):
        batches.batch_view(engine, "bat_missing")


def test_jsonl_lines(engine):
    text = 'a plain prompt\n\n"a JSON string"\n{"prompt": "a spec", "then": ["U1"]}\n{oops\n[1]\n'
    entries, errors = batches.read_jsonl(text)
    assert [n for n, _ in entries] == [1, 3, 4, 6]
    assert errors[0]["line"] == 5 and "malformed JSON" in errors[0]["message"]
    items, bad = batches.prepare(entries, max_image_bytes=1024, then=["U2"], path="lines",
                                 zero_based=False)
    assert [i["prompt"] for i in items] == ["a plain prompt", "a JSON string", "a spec"]
    assert items[0]["then"] == ["U2"] and items[2]["then"] == ["U1"]
    assert items[1]["key"].startswith("line-3:")
    assert bad == [{"path": "lines[6]", "line": 6,
                    "message": "must be a JSON object (a job spec) or a string (a prompt)"}]


# -- the HTTP door ---------------------------------------------------------------------------------------
@pytest.fixture
def live(make_engine):
    engine = make_engine(api_keys=[KEY])
    with serve(create_app(engine.settings, engine)) as url:
        s = requests.Session()
        s.headers.update(AUTH)
        yield engine, url, s


def test_http_array_object_and_jsonl_forms(live):
    engine, url, s = live
    r1 = s.post(f"{url}/v1/batches", params={"name": "web"}, json=["a", {"prompt": "b"}], timeout=5)
    assert r1.status_code == 202 and r1.headers["Location"] == f"/v1/batches/{r1.json()['id']}"
    # the same items as JSONL under the same name: same keys, nothing new
    r2 = s.post(f"{url}/v1/batches?name=web", data='a\n{"prompt": "b"}\n', timeout=5,
                headers={"Content-Type": "application/x-ndjson"})
    assert r2.status_code == 200 and r2.json()["id"] == r1.json()["id"]
    assert r2.json()["submitted"]["inProgress"] == 2
    r3 = s.post(f"{url}/v1/batches", json={"name": "web", "items": ["c"], "then": ["U1"]}, timeout=5)
    assert r3.status_code == 202 and r3.json()["total"] == 3
    got = s.get(f"{url}/v1/batches/{r1.json()['id']}", timeout=5).json()
    assert got["total"] == 3 and sum(got["counts"].values()) == 3 and got["done"] is False
    listed = s.get(f"{url}/v1/batches", timeout=5).json()["items"]
    assert [b["id"] for b in listed] == [r1.json()["id"]]
    report = s.get(f"{url}/v1/batches/{r1.json()['id']}/report", timeout=5).json()
    assert [row["prompt"] for row in report["items"]] == ["a", "c", "b"]   # by line, then key
    assert job_count(engine) == 3


def test_http_bad_batches(live):
    engine, url, s = live
    jsonl = 'fine\n{"prompt": 1}\n{not json\n{"prompt": "x", "extra": true}\n'
    resp = s.post(f"{url}/v1/batches", data=jsonl, timeout=5,
                  headers={"Content-Type": "application/jsonl"})
    assert resp.status_code == 422
    assert [(d["line"], d["path"]) for d in resp.json()["details"]] == [
        (2, "lines[2].prompt"), (3, "lines[3]"), (4, "lines[4].extra")]
    cases = [
        (json.dumps({"items": ["a"], "bogus": 1}), "application/json", 422, "bogus"),
        (json.dumps({"name": "x"}), "application/json", 422, "items"),
        (json.dumps([]), "application/json", 422, "items"),
        (json.dumps(42), "application/json", 400, "body"),
        ("[1, 2", "application/json", 400, "body"),
        ("a\nb\n", "text/plain", 400, "body"),
        (json.dumps({"items": ["a"], "name": ""}), "application/json", 422, "name"),
        (json.dumps({"items": ["a"], "batchId": "../etc"}), "application/json", 422, "batchId"),
        (json.dumps({"items": [{"action": "BLEND", "base64Array": ["data:image/png;base64,AA=="] * 6}]}),
         "application/json", 422, "items[0].base64Array"),
    ]
    for body, ctype, status, path in cases:
        r = s.post(f"{url}/v1/batches", data=body, headers={"Content-Type": ctype}, timeout=5)
        assert r.status_code == status, (body, r.text)
        assert any(d["path"] == path for d in r.json()["details"]), (body, r.json())
    assert job_count(engine) == 0 and engine.r.zcard(engine.keys.batches()) == 0
    for path in ("/v1/batches/bat_nope", "/v1/batches/bat_nope/report"):
        assert s.get(f"{url}{path}", timeout=5).status_code == 404
    for path in ("/v1/batches/bat_nope/retry", "/v1/batches/bat_nope/cancel"):
        assert s.post(f"{url}{path}", timeout=5).status_code == 404
    r = s.get(f"{url}/v1/batches/bat_nope/report", params={"format": "xml"}, timeout=5)
    assert r.status_code == 400


# -- end to end ---------------------------------------------------------------------------------------------
def wait_batch(stack: Stack, batch_id: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=stack.headers, timeout=5).json()
        if view["done"]:
            return view
        time.sleep(0.3)
    raise AssertionError(f"batch not done: {view}\n{stack.tail_logs()}")


def test_batch_through_the_worker_resubmits_only_failures():
    items = ["a red fox", "a blue whale", "gore scene",        # banned word: fails upstream
             {"prompt": "two buttons", "then": ["U1", "Zoom Out 2x"], "key": "partial"}]
    # a grid never offers Zoom Out (an upscale does): that follow-up fails, and no retry helps
    with Stack(speed=100) as stack:
        url, h = stack.web_url, stack.headers
        first = requests.post(f"{url}/v1/batches", json={"name": "e2e", "items": items}, headers=h, timeout=10)
        assert first.status_code == 202, first.text
        bid = first.json()["id"]
        view = wait_batch(stack, bid)
        assert view["counts"] == {"queued": 0, "running": 0, "succeeded": 2, "partial": 1,
                                       "failed": 1, "cancelled": 0, "expired": 0}
        assert view["status"] == "partial" and view["progress"] == 1.0 and view["finishedAt"]
        assert view["throughputPerMin"] and view["etaSeconds"] is None
        rows = requests.get(f"{url}/v1/batches/{bid}/report", headers=h, timeout=5).json()["items"]
        by_prompt = {r["prompt"]: r for r in rows}
        assert by_prompt["a red fox"]["status"] == "succeeded" and by_prompt["a red fox"]["imageKeys"]
        assert by_prompt["gore scene"]["status"] == "failed" and by_prompt["gore scene"]["reason"]
        assert "Zoom Out 2x" in by_prompt["two buttons"]["reason"] and by_prompt["two buttons"]["key"] == "partial"
        text = requests.get(f"{url}/v1/batches/{bid}/report?format=csv", headers=h, timeout=5)
        assert text.headers["Content-Type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(text.text)))) == 4
        before = stack.sim_stats()["submissions"]

        again = requests.post(f"{url}/v1/batches", json={"name": "e2e", "items": items}, headers=h, timeout=10)
        assert again.status_code == 202 and again.json()["id"] == bid
        assert again.json()["submitted"] == {"created": 0, "done": 3, "inProgress": 0, "retried": 0,
                                             "renewed": 1}
        view = wait_batch(stack, bid)
        assert view["total"] == 4 and view["counts"]["failed"] == 1
        after = stack.sim_stats()
        assert after["duplicate_submissions"]["count"] == 0
        # nothing that succeeded was redone (the banned prompt is refused at submit: no task)
        assert after["submissions"] == before
        jobs = requests.get(f"{url}/v1/jobs", params={"batch": bid}, headers=h, timeout=5).json()["items"]
        assert len(jobs) == 5                     # the replaced failed job stays listed

        retried = requests.post(f"{url}/v1/batches/{bid}/retry", headers=h, timeout=10).json()
        assert retried["retried"] == {"jobs": 1, "steps": 1, "notRetried": 1}
        [left] = retried["notRetried"]
        assert left["key"] == "partial" and left["label"] == "Zoom Out 2x"
        assert "was never offered by IMAGINE" in left["reason"] and "U1" in left["reason"]
        cancelled = requests.post(f"{url}/v1/batches/{bid}/cancel", headers=h, timeout=10).json()
        assert cancelled["cancelled"] in (0, 1)
        wait_batch(stack, bid)
