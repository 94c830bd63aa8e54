"""The callback receiver over real HTTP: every rejection case leaves state unchanged; the
same answer for "no such step" and "bad token"; 204 and an enqueued snapshot otherwise."""
from __future__ import annotations

import json

import pytest
import requests

from tests.support.web import serve
from webhook import create_app
from worker.flow.engine import Engine
from worker.flow.submit import apply_answer
from worker.flow.tokens import hook_token
from worker.jobs import machine
from worker.jobs.model import StepStatus
from worker.jobs.spec import JobSpec
from worker.upstream import Outcome
from worker.upstream.outcomes import Answer

TASK = "1712345678901234"


@pytest.fixture
def live(make_engine):
    engine = make_engine(public_url="http://127.0.0.1:1", hook_secret="current",
                         hook_secret_previous="old", api_keys=["k"])
    settings = engine.settings
    job = engine.store.create(JobSpec(prompt="p", then=["U1"]))
    root, child = engine.store.step_ids(job.id)
    engine.member(None).window.claim(limit=1, lease_s=60, grace_s=60, bucket=10**13)
    apply_answer(engine, job.id, root, "imagine", Answer(Outcome.ACCEPTED, "ok", task_id=TASK, code=1))
    with serve(create_app(settings, engine)) as url:
        yield engine, url, root, child


def post(url: str, step: str, token: str, body, ctype="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{url}/hooks/mj/{step}/{token}", data=data,
                         headers={"Content-Type": ctype}, timeout=5)


def snapshot(engine: Engine, step: str) -> dict:
    return engine.r.hgetall(engine.keys.step(step))


def test_valid_callback_is_accepted_and_enqueued(live):
    engine, url, root, _ = live
    before = snapshot(engine, root)
    resp = post(url, root, hook_token("current", root),
                {"id": TASK, "status": "IN_PROGRESS", "progress": "15%", "state": root})
    assert resp.status_code == 204
    assert ("reconcile", root) in engine.enqueue.log
    assert snapshot(engine, root) == before          # recorded + enqueued, nothing applied inline


def test_previous_secret_still_accepted(live):
    _, url, root, _ = live
    assert post(url, root, hook_token("old", root), {"id": TASK, "status": "SUBMITTED"}).status_code == 204


@pytest.mark.parametrize("case", ["bad_token", "unknown_step", "wrong_task", "ctype", "malformed",
                                  "not_object", "no_id", "oversized", "child_no_state"])
def test_rejections_change_nothing(live, case):
    engine, url, root, child = live
    tok = hook_token("current", root)
    body = {"id": TASK, "status": "SUCCESS", "progress": "100%"}
    before = snapshot(engine, root)
    if case == "bad_token":
        resp = post(url, root, "0" * 40, body)
    elif case == "unknown_step":
        resp = post(url, "stp_nope", hook_token("current", "stp_nope"), body)
    elif case == "wrong_task":
        resp = post(url, root, tok, body | {"id": "999"})
    elif case == "ctype":
        resp = post(url, root, tok, json.dumps(body), ctype="text/plain")
    elif case == "malformed":
        resp = post(url, root, tok, b'{"id": "171234')
    elif case == "not_object":
        resp = post(url, root, tok, b"[1,2]")
    elif case == "no_id":
        resp = post(url, root, tok, {"status": "SUCCESS"})
    elif case == "oversized":
        resp = post(url, root, tok, body | {"pad": "x" * 300_000})
    else:   # a waiting child has no task id: only its own state may match
        resp = post(url, child, hook_token("current", child), body | {"state": "someone-else"})
    assert 400 <= resp.status_code < 500, resp.text
    assert snapshot(engine, root) == before
    assert not [e for e in engine.enqueue.log if e[0] == "reconcile"]
    if case in ("bad_token", "unknown_step"):
        other = post(url, "stp_nope", "f" * 40, body)
        assert (resp.status_code, resp.json()) == (other.status_code, other.json())


def test_late_callback_after_terminal(live):
    engine, url, root, _ = live
    engine.store.mutate(engine.store.job_of(root),
                        lambda tx: machine.move(tx, tx.steps[root], StepStatus.FAILED, reason="x"))
    resp = post(url, root, hook_token("current", root), {"id": TASK, "status": "SUCCESS"})
    assert resp.status_code == 409


@pytest.mark.parametrize("body", ["[" * 100_000, '{"a":' * 40_000 + "1" + "}" * 40_000])
def test_deeply_nested_json_is_a_400_not_a_traceback(live, body, caplog):
    engine, url, root, _ = live
    before = snapshot(engine, root)
    caplog.set_level("INFO")
    resp = post(url, root, hook_token("current", root), body)
    assert resp.status_code == 400 and resp.json()["error"] == "malformed"
    assert snapshot(engine, root) == before and engine.enqueue.log == []
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]


def test_step_ids_outside_the_alphabet_are_the_same_404(live):
    engine, url, root, _ = live
    for step in (f"{root}:effects", "stp_x%0d%0a", "a" * 101):
        resp = post(url, step, hook_token("current", step), {"id": TASK, "status": "SUCCESS"})
        assert resp.status_code == 404 and resp.json() == {"error": "not_found",
                                                           "message": "no such hook"}
    assert engine.enqueue.log == []
