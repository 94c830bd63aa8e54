"""Deadlines that fit the upstream, and no paid result thrown away: queued and running time
judged apart (RELAX queues take longer), each failure with a readable reason, and a
task that succeeds after mjflow gave up on its step stored and reported. Real Redis, the
real simulator over HTTP, the production pipeline (follow-ups run in this process)."""
from __future__ import annotations

import re
import time

import pytest

from tests.support.inline import Rig
from worker.flow.tick import tick
from worker.job_ops import get_job
from worker.jobs.deadlines import Timing, expiry, queue_allowance_s
from worker.jobs.model import Step, StepStatus
from worker.jobs.spec import JobSpec

HOOK = "http://127.0.0.1:9/events"          # deliveries are only queued here, never sent


def test_queued_allowance_grows_with_relax_and_the_tasks_ahead():
    t = Timing(queue_s=600, queue_per_task_s=60, relax_factor=6)
    assert queue_allowance_s(t, None, None) == 600
    assert queue_allowance_s(t, "FAST", 8) == 600 + 8 * 60
    assert queue_allowance_s(t, "RELAX", 0) == 3600
    assert queue_allowance_s(t, "RELAX", 10**9) == 6 * (600 + 100 * 60)   # bounded


def test_reasons_say_which_wait_ran_out():
    t = Timing(deadline_s=600, queue_s=600, queue_per_task_s=0, relax_factor=6)
    queued = Step(id="s", job="j", index=0, label="IMAGINE", action="IMAGINE",
                  status=StepStatus.SUBMITTED, queue_ahead=8, times={"submitted": 1000.0})
    at, why = expiry(queued, {"mode": "RELAX"}, t, 1000.0 + 47 * 60)
    assert at == 1000.0 + 3600
    assert why == "queued upstream for 47 min behind 8 tasks (RELAX allowance 60 min)"
    running = Step(id="s", job="j", index=0, label="IMAGINE", action="IMAGINE",
                   status=StepStatus.RUNNING, progress="62%",
                   times={"submitted": 0.0, "started": 1000.0})
    at, why = expiry(running, {}, t, 1000.0 + 11 * 60)
    assert at == 1600.0
    assert why == "ran for 11 min without finishing (deadline 10 min, last progress 62%)"


@pytest.fixture
def rig(rds, make_settings, request):
    made: list[Rig] = []

    def make(**kw):
        r = Rig(rds, make_settings, kw.pop("profile", "midjourney-proxy"), **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def _root(rig: Rig, job_id: str) -> str:
    return rig.engine.store.step_ids(job_id)[0]


def test_a_relax_task_queued_past_the_old_deadline_still_succeeds(rig):
    # scaled 200x: the old 600 s deadline is 3 s, the simulator holds RELAX tasks 4 s queued
    r = rig(speed=200, step_deadline_s=3, queue_deadline_s=1.5, relax_queue_factor=6,
            sim_options={"faults": {"relax_queue_s": 4}})
    job = r.engine.store.create(JobSpec(prompt="a slow lighthouse", mode="RELAX"))
    root = _root(r, job.id)
    deadline_key = r.engine.keys.deadline()
    queued_deadline = None
    started = time.monotonic()
    while queued_deadline is None and time.monotonic() - started < 10:
        r.run_once()
        queued_deadline = r.engine.r.zscore(deadline_key, root)
    submitted = r.engine.store.get_step(root).times["submitted"]
    assert queued_deadline == pytest.approx(submitted + 9.0)      # RELAX: 6 x 1.5 s
    view = r.run([job.id], timeout_s=30)[0]
    step = view["steps"][0]
    assert view["status"] == "succeeded" and step["images"], step
    times = r.engine.store.get_step(root).times
    assert times["started"] - times["submitted"] > 3.5           # queued past the old deadline
    assert "gaveUp" not in step and "lateSucceeded" not in step
    assert r.engine.r.zcard(deadline_key) == 0


def test_the_deadline_moves_when_the_task_starts_running(rig):
    r = rig(speed=20, step_deadline_s=30, queue_deadline_s=120)
    job = r.engine.store.create(JobSpec(prompt="a lighthouse"))
    root = _root(r, job.id)
    seen = []
    until = time.monotonic() + 20
    while time.monotonic() < until:
        r.run_once()
        step = r.engine.store.get_step(root)
        score = r.engine.r.zscore(r.engine.keys.deadline(), root)
        if score is not None:
            seen.append((step.times.get("started"), score, step.times["submitted"]))
        if step.status.terminal or step.status == StepStatus.STORING:
            break
    assert any(s is None and score == pytest.approx(sub + 120) for s, score, sub in seen)
    running = [(s, score) for s, score, _ in seen if s is not None]
    assert running and all(score == pytest.approx(s + 30) for s, score in running)
    slot = r.engine.r.zscore(r.engine.keys.slots("default"), root)
    assert slot is None or slot >= running[-1][1]           # the slot lease follows it


def test_a_task_running_past_its_deadline_fails_with_a_readable_reason(rig):
    r = rig(speed=50, step_deadline_s=2, late_success_grace_s=3600)
    r.sim.sim.set_faults({"stuck": 1.0})
    job = r.engine.store.create(JobSpec(prompt="never finishes", then=["U1"]))
    view = r.run([job.id], timeout_s=30)[0]
    root, u1 = view["steps"]
    assert view["status"] == "failed" and root["status"] == "failed"
    assert re.fullmatch(r"ran for \d s without finishing \(deadline 2 s, last progress \d+%\)",
                        root["failReason"]), root["failReason"]
    assert root["gaveUp"] == root["failReason"] and root["lateUntil"]
    assert u1["status"] == "skipped"
    # still watched for a late success, within the grace
    assert r.engine.r.zscore(r.engine.keys.late(), root["id"]) is not None


def test_a_task_queued_past_its_allowance_fails_saying_how_long_and_behind_whom(rig):
    r = rig(speed=50, queue_deadline_s=0.5, queue_per_task_s=0.5, relax_queue_factor=2,
            sim_options={"faults": {"relax_queue_s": 60}})
    jobs = [r.engine.store.create(JobSpec(prompt=f"relax {i}", mode="RELAX")).id
            for i in range(2)]
    views = r.run(jobs, timeout_s=30)
    first, second = (v["steps"][0]["failReason"] for v in views)
    assert re.fullmatch(r"queued upstream for \d s \(RELAX allowance 1 s\)", first), first
    assert re.fullmatch(r"queued upstream for \d s behind 1 task \(RELAX allowance 2 s\)",
                        second), second


def test_a_late_success_is_stored_and_reported(rig):
    # imagine runs 3 s at speed 10: its 1 s deadline gives up on it; then it succeeds
    r = rig(speed=10, step_deadline_s=1, upscale_deadline_s=30, late_poll_s=0.2)
    job = r.engine.store.create(JobSpec(prompt="worth the wait", then=["U1"],
                                        callbackUrl=HOOK))
    failed = r.run([job.id], timeout_s=20)[0]
    root, u1 = failed["steps"]
    assert failed["status"] == "failed" and root["failReason"].startswith("ran for ")
    assert u1["status"] == "skipped"
    first_finish = failed["finishedAt"]
    view = failed
    until = time.monotonic() + 30
    while view["status"] != "succeeded" and time.monotonic() < until:
        r.run_once()
        view = get_job(r.engine, job.id)
    root, u1 = view["steps"]
    assert view["status"] == "succeeded", [(s["label"], s["status"]) for s in view["steps"]]
    assert root["status"] == "succeeded" and root["images"] and root["failReason"] is None
    assert root["lateSucceeded"] is True and root["lateSucceededAt"]
    assert root["gaveUp"].startswith("ran for ")
    assert u1["status"] == "succeeded" and u1["images"]        # the skipped follow-up ran
    notes = [e for e in view["events"] if e["kind"] == "step.late_succeeded"]
    assert len(notes) == 1 and root["taskId"] in notes[0]["message"]
    assert view["finishedAt"] != first_finish and view["manifest"]
    kinds = [d["type"] for d in view["deliveries"]]
    assert kinds == ["job.failed", "job.succeeded"]            # the job's event, sent again
    assert len({d["webhook_id"] for d in view["deliveries"]}) == 2
    effects = r.engine.store.counters("effects")
    assert effects["late_succeeded"] == 1 and effects["job_finished"] == 2
    assert r.engine.store.counters("late")["revived_by_poll"] == 1
    assert r.engine.r.zcard(r.engine.keys.late()) == 0
    tick(r.engine)                                             # nothing more happens
    assert get_job(r.engine, job.id)["deliveries"] == view["deliveries"]


def test_an_upstream_failure_is_not_revived_and_ends_the_watch(rig):
    r = rig(speed=10, step_deadline_s=0.5, late_poll_s=0.2)
    r.sim.sim.set_faults({"fail": 1.0, "seed": 3})       # fails half-way (1.5 s), after the deadline
    job = r.engine.store.create(JobSpec(prompt="doomed"))
    root = _root(r, job.id)
    view = r.run([job.id], timeout_s=20)[0]
    assert view["steps"][0]["failReason"].startswith("ran for ")
    until = time.monotonic() + 10
    while r.engine.r.zscore(r.engine.keys.late(), root) is not None and time.monotonic() < until:
        r.run_once()
    assert r.engine.r.zscore(r.engine.keys.late(), root) is None
    view = get_job(r.engine, job.id)
    assert view["status"] == "failed" and "lateSucceeded" not in view["steps"][0]


def test_a_task_given_up_as_lost_is_stored_when_it_shows_up_succeeded(rig):
    # every other list answer leaves every task out: one miss makes the task lost
    r = rig(speed=10, missing_polls_before_lost=1, late_poll_s=0.2,
            sim_options={"faults": {"omit_from_lists_every": 2}})
    job = r.engine.store.create(JobSpec(prompt="hide and seek"))
    failed = r.run([job.id], timeout_s=20)[0]
    assert failed["steps"][0]["failReason"].startswith("upstream no longer knows task")
    view = failed
    until = time.monotonic() + 20
    while view["status"] != "succeeded" and time.monotonic() < until:
        r.run_once()
        view = get_job(r.engine, job.id)
    step = view["steps"][0]
    assert view["status"] == "succeeded" and step["lateSucceeded"] and step["images"]
    assert step["gaveUp"] == failed["steps"][0]["failReason"]
