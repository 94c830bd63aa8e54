"""End to end through real parts: the simulator over HTTP, the web app under gunicorn,
a Celery worker and beat, the real Redis. Each job ends terminal, the simulator saw no
duplicate submissions, each side effect happened once."""
from __future__ import annotations

import base64
import signal
import time

import pytest
import requests

from tests.support.stack import Stack

CHAIN = {"prompt": "a lighthouse at dawn --ar 3:2", "then": ["U1", "U2", "U3", "U4",
                                                             {"button": "V2", "then": ["U1"]}]}


def assert_clean(stack: Stack, views: list[dict]) -> None:
    stats = stack.sim_stats()
    assert stats["duplicate_submissions"]["count"] == 0, stats["duplicate_submissions"]
    effects = stack.counters("effects")
    finished = [v for v in views if v["finishedAt"]]
    assert effects.get("job_finished", 0) == len(finished)
    steps_stored = sum(1 for v in views for s in v["steps"] if s["status"] == "succeeded")
    assert effects.get("stored", 0) == steps_stored
    assert stack.r.zcard(f"{stack.prefix}:slots:default") == 0


def all_succeeded(view: dict) -> bool:
    return view["status"] == "succeeded" and all(s["status"] == "succeeded" for s in view["steps"])


@pytest.mark.parametrize("profile,callbacks", [
    ("midjourney-proxy", True), ("trueai", True), ("newapi", False), ("uniapi", True),
    ("dataeyes", False),
])
def test_chains_finish_for_every_profile(profile, callbacks):
    with Stack(profile=profile, speed=100, callbacks=callbacks) as stack:
        jobs = [stack.submit(CHAIN)["id"] for _ in range(2)]
        views = stack.wait_jobs(jobs, timeout_s=90)
        for v in views:
            assert all_succeeded(v), v
            labels = [s["label"] for s in v["steps"]]
            assert labels == ["IMAGINE", "U1", "U2", "U3", "U4", "V2", "U1"]
            assert all(s["images"] for s in v["steps"])
            v2 = v["steps"][5]
            assert v["steps"][6]["parent"] == v2["id"]
        assert_clean(stack, views)
        stats = stack.sim_stats()
        if not callbacks:
            assert stats["callbacks"]["sent"] == 0


def test_faults_dropped_duplicated_reordered_callbacks():
    with Stack(speed=100) as stack:
        stack.set_faults(drop_callbacks=0.5, duplicate_callbacks=0.2, reorder_callbacks=True,
                         delay_callbacks_ms=200, seed=7)
        jobs = [stack.submit(CHAIN)["id"] for _ in range(4)]
        views = stack.wait_jobs(jobs, timeout_s=120)
        assert all(all_succeeded(v) for v in views)
        assert_clean(stack, views)
        assert stack.counters("polls").get("recovered", 0) > 0


@pytest.mark.parametrize("profile,callbacks,found_by", [
    ("midjourney-proxy", True, "task_adopted"),        # a callback carrying our state
    ("trueai", False, "recovered_from_list"),           # the upstream's task list
    ("midjourney-proxy", False, "recovered_from_list"),  # its GET /mj/task/list
])
def test_hung_submits_are_not_resent_blindly(profile, callbacks, found_by):
    with Stack(profile=profile, callbacks=callbacks, speed=100) as stack:
        stack.set_faults(hung_submit=1.0, hung_submit_ms=5000)
        job = stack.submit({"prompt": "slow answers", "then": ["U1"]})["id"]
        views = stack.wait_jobs([job], timeout_s=90)
        assert all_succeeded(views[0])
        deadline = time.monotonic() + 15
        while stack.counters("submits").get("outcome_unknown", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert stack.counters("submits")["outcome_unknown"] == 2    # both answers were lost
        found = stack.counters("effects" if found_by == "task_adopted" else "submits")
        assert found.get(found_by, 0) >= 2
        assert stack.counters("submits").get("ambiguous_resubmits", 0) == 0
        assert_clean(stack, views)


def test_queue_full_burst_shrinks_window_and_retries():
    with Stack(speed=100) as stack:
        stack.set_faults(queue_full_burst=5)
        jobs = [stack.submit({"prompt": f"burst {i}"})["id"] for i in range(6)]
        views = stack.wait_jobs(jobs, timeout_s=90)
        assert all(all_succeeded(v) for v in views)
        queue_full = stack.sim_stats()["queue_full_answers"]
        assert queue_full >= 5
        assert_clean(stack, views)
        state = requests.get(f"{stack.web_url}/v1/upstream", headers=stack.headers,
                             timeout=5).json()
        signals = state["signals"]
        assert signals["shrinks"] + signals["congestionSameCooldown"] == queue_full
        assert signals["shrinks"] <= 2                 # the burst is one event, not five
        assert state["capacity"] >= 1 and state["breaker"] == "closed"


def test_stuck_task_fails_at_deadline():
    with Stack(speed=100, env_extra={"MJFLOW_STEP_DEADLINE_S": "4"}) as stack:
        stack.set_faults(stuck=1.0)
        job = stack.submit({"prompt": "never finishes", "then": ["U1"]})["id"]
        view = stack.wait_jobs([job], timeout_s=60)[0]
        assert view["status"] == "failed"
        assert view["steps"][0]["failReason"].startswith("ran for ")
        assert view["steps"][1]["status"] == "skipped"


def test_balance_exhausted_pauses_then_resumes_without_loss():
    with Stack(speed=100) as stack:
        stack.set_faults(balance_after=2)
        jobs = [stack.submit({"prompt": f"credit {i}"})["id"] for i in range(4)]
        deadline = time.monotonic() + 30
        state = {}
        while time.monotonic() < deadline:
            state = requests.get(f"{stack.web_url}/v1/upstream", headers=stack.headers, timeout=5).json()
            if state["paused"]:
                break
            time.sleep(0.2)
        assert state["paused"] and "out of credit" in state["reason"]
        views = [stack.job(j) for j in jobs]
        assert not any(v["status"] == "failed" for v in views)
        stack.set_faults(balance_after=None)
        resp = requests.post(f"{stack.web_url}/v1/upstream/resume", headers=stack.headers, timeout=5)
        assert resp.status_code == 200 and not resp.json()["paused"]
        views = stack.wait_jobs(jobs, timeout_s=60)
        assert all(all_succeeded(v) for v in views)


def test_worker_sigkilled_mid_run_loses_nothing():
    with Stack(speed=30) as stack:
        jobs = [stack.submit({"prompt": f"kill {i}", "then": ["U1", "U2"]})["id"] for i in range(5)]
        time.sleep(1.5)
        stack.kill("worker", signal.SIGKILL)
        time.sleep(1.0)
        stack.start_worker()
        views = stack.wait_jobs(jobs, timeout_s=120)
        assert all(all_succeeded(v) for v in views)
        assert_clean(stack, views)


def test_modal_actions_and_other_roots():
    data_url, other_url = (f"data:image/png;base64,{base64.b64encode(_png(c)).decode()}"
                           for c in ((200, 80, 40), (20, 90, 200)))
    with Stack(profile="trueai", speed=100) as stack:
        zoom = stack.submit({"prompt": "a castle", "then": [{"button": "U1", "then": [
            {"button": "Custom Zoom", "prompt": "a castle --zoom 1.5"},
            "Zoom Out 2x", "Vary (Region)", "⬅️"]}]})["id"]
        roots = [stack.submit(spec)["id"] for spec in (
            {"action": "BLEND", "base64Array": [data_url, data_url], "dimensions": "LANDSCAPE"},
            {"action": "DESCRIBE", "base64": data_url},
            {"action": "SHORTEN", "prompt": "a very long prompt about a castle in the clouds"},
            {"action": "SWAP_FACE", "sourceBase64": data_url, "targetBase64": other_url},
        )]
        views = stack.wait_jobs([zoom, *roots], timeout_s=90)
        steps = {s["label"]: s for s in views[0]["steps"]}
        assert steps["Custom Zoom"]["status"] == "succeeded", steps["Custom Zoom"]
        assert steps["Zoom Out 2x"]["status"] == "succeeded"
        assert steps["⬅️"]["status"] == "succeeded"
        region = steps["Vary (Region)"]
        assert region["status"] == "failed" and "needs input" in region["failReason"]
        assert views[0]["status"] == "partial"
        blend, describe, shorten, swap = views[1:]
        assert blend["status"] == "succeeded" and blend["steps"][0]["images"]
        assert describe["status"] == "succeeded" and describe["steps"][0]["finalPrompt"]
        assert shorten["status"] == "succeeded"
        assert swap["status"] == "succeeded" and swap["steps"][0]["images"]
        assert_clean(stack, views)


def test_banned_prompt_fails_with_the_word():
    with Stack(speed=100) as stack:
        job = stack.submit({"prompt": "a nude statue", "then": ["U1"]})["id"]
        view = stack.wait_jobs([job], timeout_s=30)[0]
        assert view["status"] == "failed"
        assert "nude" in view["steps"][0]["failReason"]
        assert view["steps"][1]["status"] == "skipped"


def _png(colour: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "PNG")
    return buf.getvalue()
