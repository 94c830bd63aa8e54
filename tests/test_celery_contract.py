"""The Celery contract (docs/api.md): another service enqueues ``mjflow.create_job`` and
``mjflow.create_batch`` by name from a minimal Celery app of its own that never imports
mjflow; the real worker creates the jobs and they finish. A redelivered message (the same
Celery task id twice) makes one job."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import requests

from tests.support.stack import Stack

SENDER = textwrap.dedent("""
    import json, sys
    from celery import Celery

    broker, prefix, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    app = Celery("other-service", broker=broker)
    app.conf.broker_transport_options = {"global_keyprefix": f"{prefix}:celery:"}
    for name, args, kwargs, task_id in calls:
        app.send_task(name, args=args, kwargs=kwargs, queue="mjflow.api", task_id=task_id)
    assert not any(m == "worker" or m.startswith(("worker.", "webhook", "simulator")) for m in sys.modules)
    print("sent", len(calls))
""")


def send(stack: Stack, calls: list) -> None:
    res = subprocess.run([sys.executable, "-c", SENDER, stack.env["MJFLOW_REDIS_URL"], stack.prefix,
                          json.dumps(calls)], capture_output=True, text=True, timeout=60, cwd="/", check=False)
    assert res.returncode == 0, res.stderr


def find_jobs(stack: Stack, prompt: str, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = requests.get(f"{stack.web_url}/v1/jobs", params={"limit": 200}, headers=stack.headers,
                             timeout=5).json()["items"]
        found = [j for j in items if j["prompt"] == prompt]
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no job with prompt {prompt!r}\n{stack.tail_logs()}")


def test_send_task_by_name_from_a_service_that_does_not_import_mjflow():
    with Stack(speed=100) as stack:
        task_id = str(uuid.uuid4())
        batch_id = f"contract-{uuid.uuid4().hex[:8]}"
        send(stack, [
            ["mjflow.create_job", [{"prompt": "sent by name", "then": ["U1"],
                                    "metadata": {"from": "billing"}}], {}, task_id],
            ["mjflow.create_job", [{"prompt": "sent by name", "then": ["U1"],
                                    "metadata": {"from": "billing"}}], {}, task_id],   # redelivered
            ["mjflow.create_job", [{"prompt": 42}], {}, None],                         # invalid: dropped
            ["mjflow.create_batch", [["batch item one", {"prompt": "batch item two"}]],
             {"batch_id": batch_id}, None],
        ])
        job = find_jobs(stack, "sent by name")
        time.sleep(1.0)                      # give a duplicate every chance to appear
        job = find_jobs(stack, "sent by name")
        assert len(job) == 1 and job[0]["metadata"] == {"from": "billing"}
        view = stack.wait_jobs([job[0]["id"]], timeout_s=60)[0]
        assert view["status"] == "succeeded" and [s["label"] for s in view["steps"]] == ["IMAGINE", "U1"]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            resp = requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=stack.headers, timeout=5)
            if resp.status_code == 200 and resp.json()["done"]:
                break
            time.sleep(0.3)
        batch = resp.json()
        assert batch["status"] == "succeeded" and batch["total"] == 2, batch
        # act later by name: U3 under the finished job's grid (and an impossible one dropped)
        send(stack, [["mjflow.add_steps", [view["id"], {"step": "IMAGINE", "button": "U3"}], {},
                      None],
                     ["mjflow.add_steps", [view["id"], {"step": "IMAGINE", "button": "Q9"}], {},
                      None]])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            later = stack.job(view["id"])
            if len(later["steps"]) == 3 and later["finishedAt"]:
                break
            time.sleep(0.3)
        assert [(s["label"], s["status"]) for s in later["steps"]] == [
            ("IMAGINE", "succeeded"), ("U1", "succeeded"), ("U3", "succeeded")], later
        stats = stack.sim_stats()
        assert stats["duplicate_submissions"]["count"] == 0
        assert stats["submissions"] == {"IMAGINE": 3, "UPSCALE": 2}
