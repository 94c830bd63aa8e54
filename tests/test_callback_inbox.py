"""The receiver's one round trip and the worker's side of it, over real HTTP against the
simulator: progress of a running step needs no worker, snapshots coalesce (one message,
the most advanced snapshot wins), terminal callbacks are confirmed in one batch and a
forged one among them stores nothing; the beat's due-check; lost callbacks found by polls
switch polling to the profile's pace."""
from __future__ import annotations

import json
import time

import pytest
import requests

from simulator import server as sim_server
from tests.support.web import serve
from webhook import create_app
from worker.flow import pacing
from worker.flow.callbacks import reconcile_step
from worker.flow.due import anything_due
from worker.flow.engine import Engine, Inline
from worker.flow.polling import poll_due
from worker.flow.submit import submit_step
from worker.flow.tick import dispatch
from worker.flow.tokens import hook_token
from worker.jobs.model import StepStatus
from worker.jobs.spec import JobSpec
from worker.keys import Keys

SECRET = "current"


@pytest.fixture
def sim():
    srv = sim_server.start(port=0, speed=60)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def engine(rds, make_settings, sim):
    """Callbacks on (a public URL and a hook secret), the simulator upstream, work inline."""
    return Engine(make_settings(upstream_url=sim.url, public_url="http://127.0.0.1:1",
                                hook_secret=SECRET, max_in_flight=20),
                  rds, Keys(make_settings().key_prefix), Inline())


def _submitted(engine: Engine, n: int) -> list[str]:
    """``n`` root steps submitted to the simulator (each has its upstream task id)."""
    roots = [engine.store.step_ids(engine.store.create(JobSpec(prompt=f"inbox {i}")).id)[0]
             for i in range(n)]
    dispatch(engine)
    for sid in roots:
        assert submit_step(engine, sid) == "accepted"
    return roots


def _post(url: str, step: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/hooks/mj/{step}/{hook_token(SECRET, step)}",
                         data=json.dumps(body), headers={"Content-Type": "application/json"},
                         timeout=5)


def _wait_upstream(engine: Engine, task_ids: list[str], status: str) -> list[dict]:
    for _ in range(300):
        tasks = [engine.member(None).client.fetch(t) for t in task_ids]
        if all(t is not None and t.status == status for t in tasks):
            return [t.model_dump(mode="json") for t in tasks]
        time.sleep(0.02)
    raise AssertionError(f"upstream tasks never reached {status}")


def _reconciles(engine: Engine) -> list[str]:
    return [target for name, target in engine.enqueue.log if name == "reconcile"]


def test_snapshots_coalesce_and_the_most_advanced_wins(engine, sim):
    (root,) = _submitted(engine, 1)
    step = engine.store.get_step(root)
    (done,) = _wait_upstream(engine, [step.task_id], "SUCCESS")
    base = {"id": step.task_id, "state": root}
    with serve(create_app(engine.settings, engine)) as url:
        for body in ({**base, "status": "IN_PROGRESS", "progress": "15%"},
                     {**base, "status": "IN_PROGRESS", "progress": "46%"}, done,
                     {**base, "status": "IN_PROGRESS", "progress": "62%"}):   # a late copy
            assert _post(url, root, body).status_code == 204
    assert _reconciles(engine) == [root]                     # one message for four callbacks
    assert engine.store.get_step(root).status == StepStatus.SUBMITTED   # nothing applied inline
    assert engine.store.counters("callbacks")["accepted"] == 4
    # the worker reconciles the SUCCESS (confirmed by the upstream), not the late copy
    assert reconcile_step(engine, root) == "moved:storing"
    assert engine.store.get_step(root).status == StepStatus.STORING
    assert ("store", root) in engine.enqueue.log
    assert engine.store.inbox.pending() == {"snapshots": 0, "dirty": 0, "confirming": 0}
    assert reconcile_step(engine, root) == "empty"           # a redelivered message: nothing


def test_progress_of_a_running_step_needs_no_worker(engine, sim):
    (root,) = _submitted(engine, 1)
    step = engine.store.get_step(root)
    base = {"id": step.task_id, "state": root, "status": "IN_PROGRESS"}
    with serve(create_app(engine.settings, engine)) as url:
        assert _post(url, root, {**base, "progress": "0%"}).status_code == 204
        assert reconcile_step(engine, root) == "moved:running"
        engine.enqueue.log.clear()
        poll_before = engine.r.zscore(engine.keys.poll(), root)
        assert _post(url, root, {**base, "progress": "62%",
                                 "startTime": int(time.time() * 1000) - 6000}).status_code == 204
        assert _post(url, root, {**base, "progress": "31%"}).status_code == 204   # reordered
    after = engine.store.get_step(root)
    assert after.progress == "62%" and after.progress_at is not None
    assert after.status == StepStatus.RUNNING
    assert engine.enqueue.log == []                          # no worker involved
    assert engine.store.inbox.pending()["snapshots"] == 0
    assert engine.store.counters("callbacks")["progress_recorded"] == 2
    # at 62 % after 6 s the task should end in ~4 s: the next check moved in, not out by 60 s
    assert engine.r.zscore(engine.keys.poll(), root) < min(poll_before, time.time() + 20)


def test_terminal_callbacks_are_confirmed_in_one_batch_and_a_forged_one_stores_nothing(engine, sim):
    genuine = _submitted(engine, 3)
    tasks = [engine.store.get_step(s).task_id for s in genuine]
    done = _wait_upstream(engine, tasks, "SUCCESS")
    sim.sim.set_faults({"stuck": 1.0})
    (victim,) = _submitted(engine, 1)                         # never finishes upstream
    victim_task = engine.store.get_step(victim).task_id
    forged = {"id": victim_task, "status": "SUCCESS", "progress": "100%", "state": victim,
              "imageUrl": "http://127.0.0.1:9/not-from-the-upstream.png"}
    with serve(create_app(engine.settings, engine)) as url:
        for sid, body in [*zip(genuine, done), (victim, forged)]:
            assert _post(url, sid, body).status_code == 204
    assert engine.store.inbox.pending()["confirming"] == 4
    before = dict(sim.sim.stats()["requests"])
    assert reconcile_step(engine, genuine[0]) == "moved:storing"
    after = sim.sim.stats()["requests"]
    spent = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert spent == {"task_list_by_condition": 1}            # one request confirmed all four
    for sid in genuine:
        assert engine.store.get_step(sid).status == StepStatus.STORING
        assert ("store", sid) in engine.enqueue.log
        assert reconcile_step(engine, sid) == "empty"         # their own messages: done already
    assert reconcile_step(engine, victim) == "empty"          # its message finds it confirmed
    step = engine.store.get_step(victim)
    assert step.status in (StepStatus.SUBMITTED, StepStatus.RUNNING)
    assert step.image_url is None and ("store", victim) not in engine.enqueue.log
    assert engine.r.zscore(engine.keys.poll(), victim) <= time.time()   # polled soon
    assert engine.store.inbox.pending() == {"snapshots": 0, "dirty": 0, "confirming": 0}


def test_the_beat_only_wakes_the_tick_when_something_is_due(engine):
    assert not anything_due(engine.r, engine.keys)
    engine.r.zadd(engine.keys.poll(), {"stp_later": time.time() + 60})
    assert not anything_due(engine.r, engine.keys)
    engine.r.zadd(engine.keys.poll(), {"stp_now": time.time() - 1})
    assert anything_due(engine.r, engine.keys)
    engine.r.zrem(engine.keys.poll(), "stp_now")
    engine.store.create(JobSpec(prompt="queued"))             # a queued step waits for dispatch
    assert anything_due(engine.r, engine.keys)


def test_results_found_by_polls_mean_lost_callbacks_and_the_profiles_pace(engine, sim):
    roots = _submitted(engine, 2)
    assert pacing.callbacks_trusted(engine, engine.member(None), time.time())
    assert pacing.pace(engine, engine.member(None), True).fallback_s == 60.0        # callbacks: the safety net
    _wait_upstream(engine, [engine.store.get_step(s).task_id for s in roots], "SUCCESS")
    for sid in roots:
        engine.store.poll_at(sid, 0)
    assert poll_due(engine)["moved"] == 2                     # no callback brought these
    assert not pacing.callbacks_trusted(engine, engine.member(None), time.time())
    assert pacing.pace(engine, engine.member(None), False).fallback_s == engine.member(None).poll_interval_s
    assert engine.store.counters("callbacks")["lost_found_by_poll"] == 2
    # and the durations learned from them feed the schedule
    assert pacing.typicals(engine, engine.member(None)).get("IMAGINE", 0) > 0


def test_the_first_silent_tasks_are_looked_at_soon_and_their_upstream_rechecked(engine, sim):
    # nothing learned yet, callbacks expected but none arrive (the public URL answers nobody)
    member = engine.member(None)
    submitted_at = time.time()
    roots = _submitted(engine, 4)                       # 3 run at once, the 4th is queued
    queued = [s for s in roots if engine.store.get_step(s).queue_ahead is not None]
    running = [s for s in roots if s not in queued]
    assert len(queued) == 1 and len(running) == 3
    poll = engine.keys.poll()
    for sid in running:      # the profile's pace, not the 60 s safety net
        assert engine.r.zscore(poll, sid) <= time.time() + member.poll_interval_s
    assert engine.r.zscore(poll, queued[0]) >= submitted_at + 60.0 - 1   # no callback while queued
    _wait_upstream(engine, [engine.store.get_step(s).task_id for s in running], "SUCCESS")
    engine.store.poll_at(running[0], 0)
    assert poll_due(engine)["polled"] == 1              # finds a result no callback brought
    assert not pacing.callbacks_trusted(engine, member, time.time())
    for sid in roots:
        if sid != running[0]:
            assert engine.r.zscore(poll, sid) <= time.time()     # the others: at the next tick
    before = sim.sim.stats()["requests"].get("task_list_by_condition", 0)
    assert poll_due(engine)["polled"] == 3
    assert sim.sim.stats()["requests"]["task_list_by_condition"] == before + 1   # one request


def test_a_task_found_running_that_no_callback_said_had_started_means_lost_callbacks(engine, sim):
    sim.sim.set_faults({"stuck": 1.0})                  # they stay IN_PROGRESS at 93 %
    member = engine.member(None)
    told, silent = _submitted(engine, 2)
    tasks = _wait_upstream(engine, [engine.store.get_step(s).task_id for s in (told, silent)],
                           "IN_PROGRESS")
    _wait_progress(engine, [t["id"] for t in tasks])
    with serve(create_app(engine.settings, engine)) as url:     # its callback came, unread
        assert _post(url, told, engine.member(None).client.fetch(tasks[0]["id"]).model_dump(
            mode="json")).status_code == 204
    engine.store.poll_at(told, 0)
    assert poll_due(engine)["moved"] == 1
    assert pacing.callbacks_trusted(engine, member, time.time())    # the callback had said it
    engine.store.poll_at(silent, 0)
    assert poll_due(engine)["moved"] == 1
    assert not pacing.callbacks_trusted(engine, member, time.time())
    assert engine.store.counters("callbacks")["lost_found_by_poll"] == 1


def _wait_progress(engine: Engine, task_ids: list[str]) -> None:
    for _ in range(300):
        if all(engine.member(None).client.fetch(t).progress_pct > 0 for t in task_ids):
            return
        time.sleep(0.02)
    raise AssertionError("upstream tasks never showed progress")
