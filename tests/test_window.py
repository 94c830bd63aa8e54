"""The dispatch window's rules against the real Redis: answers are classified from real
bodies (``classify``) and applied through ``apply_answer`` to steps the window claimed, so
the learned capacity counts what the upstream really holds. The last test runs against
the simulator over HTTP (its queue of 3 running + 10 waiting per account)."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.inline import Rig
from webhook import create_app
from worker import api
from worker.flow.submit import apply_answer
from worker.flow.tick import dispatch
from worker.jobs.reconcile import Timing, reconcile
from worker.upstream import Task, classify, get_profile

PROFILE = get_profile("midjourney-proxy")
QUEUE_FULL = (200, {"code": 23, "description": "队列已满，请稍后尝试", "result": None})
RATE_LIMITED = (429, {"error": {"message": "您的速率达到上限，请稍后再试。",
                                "type": "one_hub_error"}})
SERVER_ERROR = (500, "")


def answer(status: int, body, endpoint: str = "imagine"):  # type: ignore[no-untyped-def]
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return classify(status, text, "application/json" if text else None, PROFILE,
                    endpoint=endpoint)


def accepted(step_id: str, queued_ahead: int | None = None):  # type: ignore[no-untyped-def]
    task_id = str(1712345678900000 + abs(hash(step_id)) % 10**6)
    if queued_ahead is None:
        return answer(200, {"code": 1, "description": "提交成功", "result": task_id})
    return answer(200, {"code": 22, "description": f"排队中，前面还有{queued_ahead}个任务",
                        "result": task_id, "properties": {"numberOfQueues": queued_ahead}})


def in_flight(engine, n: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """``n`` jobs queued, then one dispatch round: (job id, root step id) of each claimed."""
    jobs = [api.create_job(engine, {"prompt": f"window {i}"}, dispatch_now=False)
            for i in range(n)]
    claimed = set(dispatch(engine))
    return [(j["id"], j["steps"][0]["id"]) for j in jobs if j["steps"][0]["id"] in claimed]


def give(engine, pair: tuple[str, str], ans) -> str:  # type: ignore[no-untyped-def]
    return apply_answer(engine, pair[0], pair[1], "imagine", ans)


def finish(engine, step_id: str) -> None:  # type: ignore[no-untyped-def]
    """The upstream failed the task (a callback's snapshot): its slot is released."""
    task_id = engine.store.brief(step_id).task_id
    reconcile(engine.store, step_id, Task.model_validate(
        {"id": task_id, "status": "FAILURE", "progress": "", "failReason": "x"}),
        Timing(poll_in_s=30, deadline_s=600))


def test_answers_say_congestion_or_transient():
    assert answer(*QUEUE_FULL).pressure.value == "queue_full"
    assert answer(*RATE_LIMITED).pressure.value == "rate_limit"
    assert answer(*SERVER_ERROR).pressure.value == "transient"
    assert answer(*QUEUE_FULL).congestion and not answer(*SERVER_ERROR).congestion


def test_a_burst_of_queue_full_answers_shrinks_once_to_what_the_upstream_held(make_engine):
    engine = make_engine(max_in_flight=13, queue_full_backoff_s=0.3)
    steps = in_flight(engine, 13)
    assert len(steps) == 13
    for pair in steps[:6]:
        assert give(engine, pair, accepted(pair[1])) == "accepted"
    for pair in steps[6:11]:                                  # a burst of 5
        assert give(engine, pair, answer(*QUEUE_FULL)) == "retry-later"
    st = engine.member(None).window.state()
    assert st["capacity"] == 6 and st["size"] == 6          # 6 held when the queue was full
    assert st["signals"]["shrinks"] == 1 and st["signals"]["congestionSameCooldown"] == 4
    assert st["holdReason"] == "queue full" and st["cooldownUntil"] > time.time()
    for _, step in steps[6:11]:
        brief = engine.store.brief(step)
        assert brief.status.value == "queued"
    assert dispatch(engine) == []                             # held for the cool-down
    time.sleep(0.35)
    assert give(engine, steps[11], answer(*QUEUE_FULL)) == "retry-later"
    assert engine.member(None).window.state()["signals"]["shrinks"] == 2   # a new cool-down, a new shrink


def test_server_errors_do_not_shrink_and_a_run_of_them_opens_the_breaker(make_engine):
    engine = make_engine(max_in_flight=13, breaker_failures=5, breaker_cooldown_s=0.3,
                         breaker_max_cooldown_s=10)
    steps = in_flight(engine, 13)
    for pair in steps[:4]:
        assert give(engine, pair, answer(*SERVER_ERROR)) == "retry-later"
    st = engine.member(None).window.state()
    assert st["size"] == 13 and st["breaker"] == "closed" and st["consecutiveFailures"] == 4
    assert st["cooldownUntil"] is None and st["signals"]["shrinks"] == 0
    assert all(engine.r.hget(engine.keys.step(s), "requeues") == "1" for _, s in steps[:4])
    give(engine, steps[4], answer(*SERVER_ERROR))
    st = engine.member(None).window.state()
    assert st["breaker"] == "open" and st["holdReason"] == "breaker" and st["size"] == 13
    assert 0.2 < st["cooldownUntil"] - time.time() <= 0.3
    assert dispatch(engine) == []                             # 5 slots free, but held
    time.sleep(0.35)
    probe = dispatch(engine)
    assert len(probe) == 1 and engine.member(None).window.state()["breaker"] == "probing"
    assert dispatch(engine) == []                             # one probe at a time
    probe_pair = (engine.store.job_of(probe[0]), probe[0])
    give(engine, probe_pair, answer(*SERVER_ERROR))           # still failing: twice the hold
    st = engine.member(None).window.state()
    assert st["breaker"] == "open" and st["breakerTrips"] == 2
    assert 0.45 < st["cooldownUntil"] - time.time() <= 0.6
    time.sleep(0.65)
    [again] = dispatch(engine)
    assert give(engine, (engine.store.job_of(again), again), accepted(again)) == "accepted"
    st = engine.member(None).window.state()
    assert st["breaker"] == "closed" and st["consecutiveFailures"] == 0
    assert st["holdReason"] is None and st["signals"]["breakerClosed"] == 1
    assert len(dispatch(engine)) == 13 - 9                    # 8 unanswered + 1 accepted


def test_failures_between_accepts_never_open_the_breaker(make_engine):
    engine = make_engine(max_in_flight=13, breaker_failures=5)
    steps = in_flight(engine, 13)
    for pair in steps[:4]:
        give(engine, pair, answer(*SERVER_ERROR))
    give(engine, steps[4], accepted(steps[4][1]))
    for pair in steps[5:9]:
        give(engine, pair, answer(*SERVER_ERROR))
    st = engine.member(None).window.state()
    assert st["breaker"] == "closed" and st["consecutiveFailures"] == 4
    assert st["signals"]["transientFailures"] == 8 and st["signals"]["breakerOpened"] == 0


def test_after_a_rate_limit_the_window_grows_back_by_one_per_accept(make_engine):
    engine = make_engine(max_in_flight=13, queue_full_backoff_s=0.05)
    steps = in_flight(engine, 13)
    give(engine, steps[0], answer(*RATE_LIMITED))
    st = engine.member(None).window.state()
    assert st["size"] == 6.5 and st["capacity"] is None and st["holdReason"] == "rate limited"
    for i, pair in enumerate(steps[1:7], start=1):
        give(engine, pair, accepted(pair[1]))
        assert engine.member(None).window.state()["size"] == 6.5 + i
    give(engine, steps[7], accepted(steps[7][1]))
    assert engine.member(None).window.state()["size"] == 13                # back at the max in 7 accepts


def test_accepts_prove_more_capacity_and_the_window_probes_slowly_above_it(make_engine):
    engine = make_engine(max_in_flight=13, queue_full_backoff_s=0.05)
    steps = in_flight(engine, 30)                              # 13 claimed, 17 wait
    give(engine, steps[0], answer(*QUEUE_FULL))               # nothing of ours held yet
    assert engine.member(None).window.state()["capacity"] == 1
    for pair in steps[1:7]:                                    # but 6 are taken after all
        give(engine, pair, accepted(pair[1]))
    st = engine.member(None).window.state()
    assert st["capacity"] == 6 and st["size"] == 6
    for pair in steps[7:]:                                     # the rest: still full
        give(engine, pair, answer(*QUEUE_FULL))
    time.sleep(0.06)
    held = [s for _, s in steps[1:7]]
    rounds = 0
    while engine.member(None).window.state()["capacity"] == 6 and rounds < 12:
        finish(engine, held.pop(0))                            # a task ends upstream
        for step in dispatch(engine):
            give(engine, (engine.store.job_of(step), step), accepted(step))
            held.append(step)
        rounds += 1
        if rounds == 1:
            assert 6 < engine.member(None).window.state()["size"] < 6.25   # +1/size at the capacity
    assert engine.member(None).window.state()["capacity"] == 7 and 5 <= rounds <= 8


def test_a_queue_full_that_lied_costs_one_round_trip_of_growth(make_engine):
    engine = make_engine(max_in_flight=13, queue_full_backoff_s=0.05)
    steps = in_flight(engine, 40)
    for pair in steps:
        give(engine, pair, accepted(pair[1]))                  # it took 13: known good
    held = [s for _, s in steps]
    for step in held[:8]:
        finish(engine, step)
    held = held[8:]
    burst = [(engine.store.job_of(s), s) for s in dispatch(engine)]
    assert len(burst) == 8
    for pair in burst:                                         # "full" with 5 of ours in
        give(engine, pair, answer(*QUEUE_FULL))
    st = engine.member(None).window.state()
    assert (st["capacity"], st["size"], st["knownGood"]) == (5, 5, 13)
    time.sleep(0.06)
    accepts = 0
    while engine.member(None).window.state()["size"] < 13 and accepts < 30:
        claimed = dispatch(engine)
        if not claimed:
            finish(engine, held.pop(0))                        # a task ends upstream
        for step in claimed:
            give(engine, (engine.store.job_of(step), step), accepted(step))
            held.append(step)
            accepts += 1
    st = engine.member(None).window.state()
    assert st["size"] == 13 and st["capacity"] >= 12 and accepts <= 9   # not ~70 accepts


def test_queued_answers_report_the_upstream_queue(make_engine):
    engine = make_engine(max_in_flight=13)
    [pair] = in_flight(engine, 1)
    give(engine, pair, accepted(pair[1], queued_ahead=4))
    assert engine.member(None).window.state()["upstreamQueued"] == 4


def test_resume_closes_the_breaker(make_engine):
    engine = make_engine(max_in_flight=13, breaker_failures=2)
    for pair in in_flight(engine, 2):
        give(engine, pair, answer(*SERVER_ERROR))
    assert engine.member(None).window.state()["breaker"] == "open"
    engine.member(None).window.resume()
    st = engine.member(None).window.state()
    assert st["breaker"] == "closed" and st["consecutiveFailures"] == 0
    assert st["cooldownUntil"] is None and dispatch(engine)


def test_the_api_and_the_dashboard_show_the_capacity_and_the_breaker(make_engine):
    engine = make_engine(max_in_flight=13, breaker_failures=2, api_keys=["k"])
    steps = in_flight(engine, 4)
    give(engine, steps[0], accepted(steps[0][1]))
    give(engine, steps[1], answer(*QUEUE_FULL))
    for pair in steps[2:]:
        give(engine, pair, answer(*SERVER_ERROR))
    client = create_app(engine.settings, engine).test_client()
    state = client.get("/v1/upstream", headers={"Authorization": "Bearer k"}).get_json()
    assert state["capacity"] == 1 and state["breaker"] == "open"
    assert state["consecutiveFailures"] == 2 and state["signals"]["transientFailures"] == 2
    assert client.get("/upstream?key=k").status_code == 302
    page = client.get("/upstream").get_data(as_text=True)
    assert "Learned capacity" in page and 'class="badge st-failed">open<' in page


@pytest.mark.parametrize("profile", ["midjourney-proxy", "trueai", "uniapi"])
def test_the_simulated_account_teaches_its_capacity(rds, make_settings, profile):
    """20 in flight allowed, the account takes 3 + 10: its 23 (trueai: 9) answers at 13
    held set the capacity to 13 in one shrink, and every job still finishes."""
    rig = Rig(rds, make_settings, profile, speed=40, max_in_flight=20,
              queue_full_backoff_s=0.2)
    try:
        jobs = [api.create_job(rig.engine, {"prompt": f"capacity {i}"}, dispatch_now=False)
                for i in range(20)]
        assert len(dispatch(rig.engine)) == 20
        st = rig.engine.member(None).window.state()
        stats = rig.sim.sim.stats()
        assert stats["queue_full_answers"] == 7
        assert st["capacity"] == 13 and st["size"] == 13
        assert st["signals"]["shrinks"] == 1 and st["signals"]["congestionSameCooldown"] == 6
        assert st["upstreamQueued"] == 9                       # the 13th waited behind 9
        views = rig.run([j["id"] for j in jobs], timeout_s=60)
        assert all(v["status"] == "succeeded" for v in views)
        assert rig.engine.member(None).window.state()["size"] >= 13
    finally:
        rig.close()
