"""The fleet end to end: two and three real simulator processes of different profiles
behind one mjflow (web app, Celery worker and beat, the real Redis): routing by mode and
action, failover when one upstream runs out of credit mid-batch, resuming it, pinned jobs,
budgets, and spend in the views and the report."""
from __future__ import annotations

import requests

from tests.support.browser import wait_until
from tests.support.stack import Stack

CHAIN = {"prompt": "a lighthouse at dawn", "then": ["U1"]}


def _get(stack: Stack, path: str) -> dict:
    resp = requests.get(f"{stack.web_url}{path}", headers=stack.headers, timeout=10)
    assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
    return resp.json()


def _post(stack: Stack, path: str, body: dict | list | None = None) -> requests.Response:
    return requests.post(f"{stack.web_url}{path}", headers=stack.headers, json=body, timeout=30)


def _owner(stack: Stack, task_id: str) -> str:
    """The upstream (simulator) that holds ``task_id``."""
    owners = [name for name, sim in stack.sims.items()
              if requests.get(f"{sim.url}/_sim/tasks/{task_id}", timeout=10).status_code == 200]
    assert len(owners) == 1, (task_id, owners)
    return owners[0]


def test_failover_when_one_upstream_runs_out_of_credit_and_resume_finishes_its_children():
    fleet = [
        {"name": "alpha", "profile": "trueai", "priority": 1, "maxInFlight": 3,
         "costs": {"IMAGINE": 2, "UPSCALE": 1}, "sim": {"faults": {"balance_after": 3}}},
        {"name": "beta", "profile": "midjourney-proxy", "priority": 2, "maxInFlight": 3,
         "costs": {"IMAGINE": 3, "UPSCALE": 1}},
    ]
    with Stack(fleet=fleet, speed=60) as stack:
        resp = _post(stack, "/v1/batches", {"name": "overnight", "items": [CHAIN] * 8})
        assert resp.status_code == 202, resp.text
        batch_id = resp.json()["id"]
        up = wait_until(lambda: next((u for u in _get(stack, "/v1/upstreams")["upstreams"]
                                      if u["name"] == "alpha" and u["window"]["paused"]), None),
                        60, message="alpha paused")
        assert "out of credit" in up["window"]["reason"] and up["health"] == "paused"
        beta = next(u for u in _get(stack, "/v1/upstreams")["upstreams"] if u["name"] == "beta")
        assert not beta["window"]["paused"]
        # alpha's finished roots wait with a readable reason for their upscale; nothing fails
        jobs = [j["id"] for j in _get(stack, f"/v1/jobs?batch={batch_id}&limit=50")["items"]]

        def waiting_children() -> list[dict]:
            views = [stack.job(j) for j in jobs]
            assert not any(s["status"] == "failed" for v in views for s in v["steps"]), views
            roots_on_beta_done = all(v["steps"][0]["status"] == "succeeded" for v in views
                                     if v["steps"][0]["upstream"] == "beta")
            waiting = [s for v in views for s in v["steps"] if s.get("waiting")]
            return waiting if waiting and roots_on_beta_done else []

        waiting = wait_until(waiting_children, 90, message="children waiting for alpha")
        assert all(w["waiting"].startswith("waiting for upstream 'alpha': out of credit")
                   for w in waiting), waiting
        # the credit is topped up; the operator resumes alpha: everything finishes
        stack.set_faults("alpha", balance_after=None)
        resp = _post(stack, "/v1/upstreams/alpha/resume")
        assert resp.status_code == 200 and not resp.json()["window"]["paused"]
        views = stack.wait_jobs(jobs, timeout_s=120)
        used = set()
        for v in views:
            assert v["status"] == "succeeded", v
            root, child = v["steps"]
            assert child["upstream"] == root["upstream"]      # pinned to the parent's upstream
            assert _owner(stack, root["taskId"]) == root["upstream"]
            assert _owner(stack, child["taskId"]) == root["upstream"]
            used.add(root["upstream"])
        assert used == {"alpha", "beta"}
        for name in ("alpha", "beta"):
            stats = stack.sim_stats(name)
            assert stats["duplicate_submissions"]["count"] == 0, (name, stats)
        # spend: alpha's accepted tasks cost 2 + 1, beta's 3 + 1, per job and in total
        batch = _get(stack, f"/v1/batches/{batch_id}")
        on_alpha = sum(1 for v in views if v["steps"][0]["upstream"] == "alpha")
        expected = {"alpha": 3.0 * on_alpha, "beta": 4.0 * (8 - on_alpha)}
        assert batch["spend"]["byUpstream"] == {k: v for k, v in expected.items() if v}
        assert batch["spend"]["total"] == sum(expected.values())
        report = _get(stack, f"/v1/batches/{batch_id}/report")
        assert sorted(row["cost"] for row in report["items"]) == sorted(
            3.0 if v["steps"][0]["upstream"] == "alpha" else 4.0 for v in views)
        assert report["spend"] == batch["spend"]
        notes = [e for v in views for e in v["events"] if e.get("kind") == "dispatch_paused"]
        assert notes and "upstream 'alpha' paused" in notes[0]["message"]


def test_routing_by_mode_action_and_pin_across_three_upstreams():
    fleet = [
        {"name": "fast", "profile": "dataeyes", "modes": ["FAST"]},
        {"name": "relax", "profile": "midjourney-proxy", "modes": ["RELAX"]},
        {"name": "spare", "profile": "trueai", "priority": 5},
    ]
    with Stack(fleet=fleet, speed=100) as stack:
        specs = {
            "fast": {"prompt": "a fox", "mode": "FAST"},
            "relax": {"prompt": "an owl", "mode": "RELAX"},
            "blend": {"action": "BLEND", "mode": "FAST", "base64Array": [PNG, PNG]},
            "pinned": {"prompt": "a heron", "mode": "FAST", "upstream": "spare"},
        }
        ids = {name: stack.submit(spec)["id"] for name, spec in specs.items()}
        views = dict(zip(ids, stack.wait_jobs(list(ids.values()), timeout_s=90)))
        where = {name: v["steps"][0]["upstream"] for name, v in views.items()}
        # dataeyes has no blend: the FAST blend goes to the one upstream that can do it
        assert where == {"fast": "fast", "relax": "relax", "blend": "spare", "pinned": "spare"}
        assert all(v["status"] == "succeeded" for v in views.values()), views
        bad = stack.http.post(f"{stack.web_url}/v1/jobs", headers=stack.headers, timeout=10,
                              json={"action": "BLEND", "base64Array": [PNG, PNG],
                                    "upstream": "fast"})
        assert bad.status_code == 422 and "blend" in bad.text.lower(), bad.text
        bad = stack.http.post(f"{stack.web_url}/v1/jobs", headers=stack.headers, timeout=10,
                              json={"prompt": "x", "upstream": "nope"})
        assert bad.status_code == 422 and "no upstream 'nope'" in bad.text
        listed = _get(stack, "/v1/upstreams")
        assert [u["name"] for u in listed["upstreams"]] == ["fast", "relax", "spare"]
        assert all("key" not in u and u["host"].startswith("127.0.0.1:")
                   for u in listed["upstreams"])


def test_budget_stops_dispatch_with_a_readable_reason():
    fleet = [{"name": "solo", "profile": "midjourney-proxy", "maxInFlight": 1,
              "costs": {"IMAGINE": 1, "*": 0.5}}]
    with Stack(fleet=fleet, speed=100) as stack:
        resp = _post(stack, "/v1/batches", {"name": "capped", "maxCost": 2,
                                            "items": [{"prompt": f"tree {i}"} for i in range(5)]})
        assert resp.status_code == 202, resp.text
        batch_id = resp.json()["id"]
        assert resp.json()["maxCost"] == 2
        jobs = [j["id"] for j in _get(stack, f"/v1/jobs?batch={batch_id}&limit=50")["items"]]
        views = stack.wait_jobs(jobs, timeout_s=90)
        done = [v for v in views if v["status"] == "succeeded"]
        stopped = [v for v in views if v["steps"][0]["status"] == "skipped"]
        assert len(done) == 2 and len(stopped) == 3, [(v["status"], v["steps"][0]) for v in views]
        assert all("budget of 2 reached" in v["steps"][0]["failReason"] for v in stopped)
        assert _get(stack, f"/v1/batches/{batch_id}")["spend"]["total"] == 2.0
        job = stack.submit({"prompt": "one more", "maxCost": 0})
        view = stack.wait_jobs([job["id"]], timeout_s=30)[0]
        assert view["steps"][0]["status"] == "skipped" and "budget of 0 reached" in \
            view["steps"][0]["failReason"]
        assert sum(stack.sim_stats("solo")["submissions"].values()) == 2


PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
       "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
