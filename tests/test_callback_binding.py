"""A callback can only speak for the attempt it was given to: a forged ``state`` never binds
a step to a foreign task, a step with no submit in flight takes no callback, a retried
step's old hook URL is dead, and the ids seen in callbacks are checked before a lost
submit is sent again."""
from __future__ import annotations

import json
import time

import pytest
import requests

from simulator import server as sim_server
from tests.support.web import serve
from webhook import create_app
from worker.flow.callbacks import reconcile_callback
from worker.flow.engine import Engine, Inline
from worker.flow.submit import apply_answer
from worker.flow.tick import dispatch, sweep_pending_submits
from worker.flow.tokens import hook_token
from worker.jobs import machine
from worker.jobs.model import StepStatus, upstream_state
from worker.jobs.spec import JobSpec
from worker.keys import Keys
from worker.upstream import Outcome
from worker.upstream.outcomes import Answer

SECRET = "current"


@pytest.fixture
def sim():
    srv = sim_server.start(port=0, speed=50)
    yield srv
    srv.stop()


def _engine(rds, make_settings, sim, **overrides) -> Engine:
    settings = make_settings(upstream_url=sim.url, public_url="http://127.0.0.1:1",
                             hook_secret=SECRET, api_keys=["k"], **overrides)
    return Engine(settings, rds, Keys(settings.key_prefix), Inline())


def _post(url: str, step: str, token: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/hooks/mj/{step}/{token}", data=json.dumps(body),
                         headers={"Content-Type": "application/json"}, timeout=5)


def _foreign_task(engine: Engine) -> str:
    """A task somebody else submitted upstream, without our state, now finished."""
    answer = engine.member(None).client.imagine("somebody else's lighthouse")
    assert answer.accepted
    for _ in range(200):
        task = engine.member(None).client.fetch(answer.task_id)
        if task and task.status == "SUCCESS":
            return task.id
        time.sleep(0.05)
    raise AssertionError("the simulator never finished the foreign task")


def _submitting(engine: Engine) -> tuple[str, str]:
    """A job whose root submit is in flight and whose answer was lost (no task id yet)."""
    job = engine.store.create(JobSpec.model_validate({"prompt": "our lighthouse", "then": ["U1"]}))
    dispatch(engine)
    root = engine.store.step_ids(job.id)[0]
    engine.store.mutate(job.id, lambda tx: setattr(tx.steps[root], "submit_started", 1.0)
                        or tx.save(tx.steps[root]))
    return job.id, root


def test_a_forged_state_never_binds_a_step_to_a_foreign_task(rds, make_settings, sim):
    engine = _engine(rds, make_settings, sim)
    job_id, root = _submitting(engine)
    foreign = _foreign_task(engine)
    forged = {"id": foreign, "status": "SUCCESS", "state": root, "imageUrl": "http://x/y.png"}
    with serve(create_app(engine.settings, engine)) as url:
        assert _post(url, root, hook_token(SECRET, root), forged).status_code == 204
    # the upstream's own copy of the task carries no state of ours: not adopted
    assert reconcile_callback(engine, root, forged) == "mismatch"
    step = engine.store.get_step(root)
    assert step.task_id is None and step.status == StepStatus.SUBMITTING
    assert ("store", root) not in engine.enqueue.log


def test_a_step_with_no_submit_in_flight_takes_no_callback(rds, make_settings, sim):
    engine = _engine(rds, make_settings, sim)
    job = engine.store.create(JobSpec.model_validate({"prompt": "p", "then": ["U1"]}))
    root, child = engine.store.step_ids(job.id)
    before = engine.r.hgetall(engine.keys.step(child))
    with serve(create_app(engine.settings, engine)) as url:
        resp = _post(url, child, hook_token(SECRET, child),
                     {"id": "1712345678901234", "status": "IN_PROGRESS", "state": child})
    assert resp.status_code == 409 and resp.json()["error"] == "not_submitted"
    assert engine.r.hgetall(engine.keys.step(child)) == before
    assert engine.enqueue.log == []


def test_a_retried_step_refuses_the_hook_url_of_its_first_attempt(rds, make_settings, sim):
    engine = _engine(rds, make_settings, sim)
    job = engine.store.create(JobSpec.model_validate({"prompt": "p"}))
    dispatch(engine)
    root = engine.store.step_ids(job.id)[0]
    first_url = engine.hook_url(engine.member(None), root, 0)
    apply_answer(engine, job.id, root, "imagine", Answer(Outcome.REJECTED, "no"))
    engine.store.mutate(job.id, machine.retry_failed)
    dispatch(engine)
    assert engine.store.get_step(root).generation == 1
    token0 = first_url.rsplit("/", 1)[1]
    body = {"id": "1712345678901234", "status": "IN_PROGRESS", "state": upstream_state(root, 1)}
    with serve(create_app(engine.settings, engine)) as url:
        assert _post(url, root, token0, body).status_code == 404
        token1 = engine.hook_url(engine.member(None), root, 1).rsplit("/", 1)[1]
        assert token1 != token0
        assert _post(url, root, token1, body).status_code == 204


def test_a_task_seen_in_a_callback_is_found_before_resubmitting(rds, make_settings, sim):
    # the submit's answer was lost and the worker that had its callback died: the receiver
    # kept the id it saw, so the sweep finds the task instead of creating a second one
    engine = _engine(rds, make_settings, sim, submit_grace_s=0.01)
    job_id, root = _submitting(engine)
    ours = engine.member(None).client.imagine("our lighthouse", state=root)
    assert ours.accepted
    with serve(create_app(engine.settings, engine)) as url:
        resp = _post(url, root, hook_token(SECRET, root),
                     {"id": ours.task_id, "status": "SUBMITTED", "state": root})
        assert resp.status_code == 204
    engine.enqueue.log.clear()                 # that reconcile message is lost with its worker
    assert sweep_pending_submits(engine, now=10**10) == 1
    step = engine.store.get_step(root)
    assert step.task_id == ours.task_id
    assert ("submit", root) not in engine.enqueue.log
    assert engine.store.counters("submits").get("ambiguous_resubmits", 0) == 0
    assert engine.store.counters("submits").get("recovered_from_callbacks", 0) == 1
    assert sim.sim.stats()["duplicate_submissions"]["count"] == 0
