"""One reconcile path: what must follow a transition is registered inside it and handed
out once it commits, whoever fed the snapshot (callback, poll, task list, a test)."""
from __future__ import annotations

import pytest

from simulator import server as sim_server
from worker.flow.engine import Engine
from worker.flow.polling import poll_due
from worker.flow.submit import apply_answer, submit_step
from worker.flow.tick import dispatch
from worker.jobs import machine
from worker.jobs.model import StepStatus
from worker.jobs.reconcile import Timing, reconcile
from worker.jobs.spec import JobSpec
from worker.upstream import Outcome, Task
from worker.upstream.outcomes import Answer

TASK = "1712345678901234"
BUTTONS = [{"customId": f"MJ::JOB::upsample::{i}::abc", "label": f"U{i}"} for i in range(1, 5)]


def _submitted(engine: Engine, spec: dict) -> tuple[str, list[str]]:
    job = engine.store.create(JobSpec.model_validate(spec))
    assert dispatch(engine)
    _, steps = engine.store.load(job.id)
    root = steps[0].id
    apply_answer(engine, job.id, root, "imagine", Answer(Outcome.ACCEPTED, "ok", task_id=TASK))
    engine.enqueue.log.clear()
    return job.id, [s.id for s in steps]


def test_reconcile_alone_on_success_hands_out_the_store(make_engine):
    engine = make_engine()
    job_id, (root,) = _submitted(engine, {"prompt": "a lighthouse"})
    task = Task.model_validate({"id": TASK, "state": root, "status": "SUCCESS",
                                "progress": "100%", "imageUrl": "http://img/x.png"})
    assert reconcile(engine.store, root, task, Timing()) == "moved:storing"
    assert engine.enqueue.log == [("store", root)]
    # a second copy of the same snapshot changes nothing and hands nothing out
    assert reconcile(engine.store, root, task, Timing()) == "kept"
    assert engine.enqueue.log == [("store", root)]


def test_a_modal_snapshot_asks_for_its_input_once(make_engine):
    engine = make_engine()
    job_id, (root,) = _submitted(engine, {"prompt": "a lighthouse"})
    modal = Task.model_validate({"id": TASK, "state": root, "status": "MODAL"})
    assert reconcile(engine.store, root, modal, Timing()) == "moved:modal"
    assert engine.enqueue.log == [("submit", root)]


def test_the_last_step_stored_finishes_the_job_and_emits_the_step_event(make_engine):
    engine = make_engine(step_events=True)
    job_id, (root,) = _submitted(engine, {"prompt": "a lighthouse"})
    reconcile(engine.store, root, Task.model_validate(
        {"id": TASK, "state": root, "status": "SUCCESS", "imageUrl": "http://img/x.png"}), Timing())
    engine.store.mutate(job_id, lambda tx: machine.move(tx, tx.steps[root], StepStatus.SUCCEEDED))
    assert engine.enqueue.log == [("store", root), ("step_event", root), ("finish", job_id)]


@pytest.fixture
def sim_every_other_list_empty():
    # a slow task (stuck IN_PROGRESS) that the upstream leaves out of every second list answer
    srv = sim_server.start(port=0, speed=50, faults={"stuck": 1.0, "omit_from_lists_every": 2})
    yield srv
    srv.stop()


def test_a_task_left_out_of_a_list_now_and_then_is_never_lost(make_engine,
                                                              sim_every_other_list_empty):
    engine = make_engine(upstream_url=sim_every_other_list_empty.url,
                     missing_polls_before_lost=3, poll_interval_s=0.01)
    job = engine.store.create(JobSpec.model_validate({"prompt": "a slow lighthouse"}))
    dispatch(engine)
    root = engine.store.step_ids(job.id)[0]
    assert submit_step(engine, root) == "accepted"
    for round_ in range(12):
        result = poll_due(engine, now=10**10 + round_)
        assert result == {"polled": 1, "moved": result["moved"], "lost": 0}
    step = engine.store.get_step(root)
    assert step.status in (StepStatus.SUBMITTED, StepStatus.RUNNING)
    assert step.misses <= 1
    assert engine.store.counters("polls").get("lost", 0) == 0
