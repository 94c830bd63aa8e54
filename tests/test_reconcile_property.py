"""The one reconcile path is idempotent: random orders, duplicates and drops of the same
snapshot history always end in the same state, with each side effect done once."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.conftest import engine_for
from worker.jobs.model import JobStatus, StepStatus
from worker.jobs.reconcile import Timing, reconcile
from worker.jobs.routes import queue_of
from worker.jobs.spec import JobSpec
from worker.upstream import Outcome
from worker.upstream.outcomes import Answer

TASK_ID = "1712345678901234"
BUTTONS = [{"customId": f"MJ::JOB::upsample::{i}::abc", "label": f"U{i}"} for i in range(1, 5)] + [
    {"customId": "MJ::JOB::reroll::0::abc::SOLO", "emoji": "🔄", "label": ""}] + [
    {"customId": f"MJ::JOB::variation::{i}::abc", "label": f"V{i}"} for i in range(1, 5)]


def history(step_id: str, outcome: str) -> list[dict]:
    base = {"id": TASK_ID, "action": "IMAGINE", "state": step_id}
    snaps = [base | {"status": "NOT_START", "progress": "0%"},
             base | {"status": "SUBMITTED", "progress": "0%"}]
    snaps += [base | {"status": "IN_PROGRESS", "progress": f"{p}%"} for p in (0, 15, 46, 93)]
    if outcome == "SUCCESS":
        snaps.append(base | {"status": "SUCCESS", "progress": "100%", "buttons": BUTTONS,
                             "imageUrl": "https://cdn.discordapp.com/x.png"})
    else:
        snaps.append(base | {"status": "FAILURE", "progress": "", "failReason": "[Invalid parameter] bad --ar"})
    return snaps


def run(rds, make_settings, order: list[int], outcome: str, adopt_by_state: bool):
    from worker.flow.submit import apply_answer
    from worker.upstream import Task

    engine = engine_for(make_settings(key_prefix=f"mjflow-prop-{uuid.uuid4().hex[:8]}"), rds)
    try:
        job = engine.store.create(JobSpec(prompt="a lighthouse", then=["U1", "V2", "V9"]))
        root = engine.store.step_ids(job.id)[0]
        assert engine.member(None).window.claim(limit=5, lease_s=600, grace_s=60, bucket=10**13) == [root]
        if not adopt_by_state:    # the submit answer arrived; otherwise only callbacks tell
            apply_answer(engine, job.id, root, "imagine",
                         Answer(Outcome.ACCEPTED, "ok", task_id=TASK_ID, code=1))
        snaps = history(root, outcome)
        timing = Timing(poll_in_s=30, deadline_s=600)
        for i in order:
            reconcile(engine.store, root, Task.model_validate(snaps[i]), timing)
        reconcile(engine.store, root, Task.model_validate(snaps[-1]), timing)  # the poll catches up
        job2, steps = engine.store.load(job.id)
        effects = engine.store.counters("effects")
        k = engine.keys
        indexes = {
            "slots": rds.zcard(k.slots("default")), "poll": rds.zcard(k.poll()),
            "storing": rds.zcard(k.storing()), "ready": rds.zcard(k.ready(queue_of("at.default", job2.lane))),
            "finishing": rds.zcard(k.finishing()),
        }
        return job2, steps, effects, indexes
    finally:
        for key in rds.scan_iter(f"{engine.keys.prefix}:*"):
            rds.delete(key)


@pytest.fixture
def property_env(rds, make_settings):
    return rds, make_settings


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.integers(min_value=0, max_value=6), max_size=20),
       outcome=st.sampled_from(["SUCCESS", "FAILURE"]), adopt_by_state=st.booleans())
def test_any_order_same_end_state_effects_once(property_env, order, outcome, adopt_by_state):
    rds, make_settings = property_env
    job, steps, effects, idx = run(rds, make_settings, order, outcome, adopt_by_state)
    root, u1, v2, v9 = steps
    assert root.task_id == TASK_ID
    assert idx["slots"] == 0 and idx["poll"] == 0
    assert effects.get("slot_released") == 1
    if outcome == "SUCCESS":
        assert root.status == StepStatus.STORING and root.progress == "100%"
        assert [u1.status, v2.status] == [StepStatus.QUEUED, StepStatus.QUEUED]
        assert u1.custom_id == "MJ::JOB::upsample::1::abc" and u1.parent_task_id == TASK_ID
        assert v9.status == StepStatus.FAILED and "button 'V9' not offered" in v9.fail_reason
        assert effects.get("store_scheduled") == 1 and effects.get("child_queued") == 2
        assert idx["storing"] == 1 and idx["ready"] == 2
        assert "job_finished" not in effects
    else:
        assert root.status == StepStatus.FAILED and "Invalid parameter" in root.fail_reason
        assert {s.status for s in (u1, v2, v9)} == {StepStatus.SKIPPED}
        assert job.status == JobStatus.FAILED and effects.get("job_finished") == 1
        assert "store_scheduled" not in effects and idx["finishing"] == 1


def test_progress_only_goes_up(engine):
    from worker.upstream import Task

    job = engine.store.create(JobSpec(prompt="p"))
    root = engine.store.step_ids(job.id)[0]
    engine.member(None).window.claim(limit=1, lease_s=60, grace_s=60, bucket=10**13)
    timing = Timing()
    base = {"id": TASK_ID, "state": root}
    for status, progress in [("IN_PROGRESS", "62%"), ("IN_PROGRESS", "15%"), ("SUBMITTED", "0%")]:
        reconcile(engine.store, root, Task.model_validate(base | {"status": status, "progress": progress}), timing)
    step = engine.store.get_step(root)
    assert step.status == StepStatus.RUNNING and step.progress == "62%"


def test_late_and_foreign_snapshots_change_nothing(engine):
    from worker.upstream import Task

    job = engine.store.create(JobSpec(prompt="p"))
    root = engine.store.step_ids(job.id)[0]
    engine.member(None).window.claim(limit=1, lease_s=60, grace_s=60, bucket=10**13)
    timing = Timing()
    assert reconcile(engine.store, root, Task.model_validate({"id": "999", "state": "other", "status": "SUCCESS"}), timing) == "mismatch"
    reconcile(engine.store, root, Task.model_validate({"id": TASK_ID, "state": root, "status": "FAILURE", "failReason": "x"}), timing)
    assert reconcile(engine.store, root, Task.model_validate({"id": TASK_ID, "state": root, "status": "SUCCESS"}), timing) == "late"
    assert engine.store.get_step(root).status == StepStatus.FAILED
