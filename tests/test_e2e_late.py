"""A late success through the whole system: the simulator's callbacks, the receiver under
gunicorn, a Celery worker and beat, real Redis, a consumer that verifies signatures. The
step is given up by its running deadline (the job fails, first signed event); its task's
SUCCESS callback is still taken, the result stored, the follow-up run, the job finished
again with a second signed event."""
from __future__ import annotations

import time

from tests.support.stack import Stack
from worker.dev.consumer import Consumer

SECRET = "whsec_" + "bGF0ZS1zdWNjZXNzLWUyZS10ZXN0LXNlY3JldA=="


def test_a_late_success_callback_is_stored_and_sent_again_signed():
    env = {"MJFLOW_STEP_DEADLINE_S": "1", "MJFLOW_UPSCALE_DEADLINE_S": "30",
           "MJFLOW_LATE_POLL_S": "600",      # only the callback can bring it in time
           "MJFLOW_WEBHOOK_SECRET": SECRET}
    # speed 10: the imagine runs 3 s, so its 1 s running deadline gives up on it first
    with Consumer(SECRET) as consumer, Stack(speed=10, env_extra=env) as stack:
        job_id = stack.submit({"prompt": "worth the wait", "then": ["U1"],
                               "callbackUrl": consumer.url})["id"]
        view = stack.job(job_id)
        deadline = time.monotonic() + 60
        while view["status"] != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.3)
            view = stack.job(job_id)
        root, u1 = view["steps"]
        assert view["status"] == "succeeded", (view["status"], root, u1, stack.tail_logs())
        assert root["lateSucceeded"] is True and root["gaveUp"].startswith("ran for ")
        assert root["images"] and u1["status"] == "succeeded" and u1["images"]
        assert any(e["kind"] == "step.late_succeeded" for e in view["events"])
        assert stack.counters("callbacks").get("accepted_late", 0) >= 1
        assert stack.counters("late").get("revived_by_poll", 0) == 0
        deadline = time.monotonic() + 30
        while len({e["msg_id"] for e in consumer.events}) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        types = [e["type"] for e in consumer.events]
        assert types[0] == "job.failed" and types[-1] == "job.succeeded", types
        assert len({e["msg_id"] for e in consumer.events}) == 2 and not consumer.bad
        last = consumer.events[-1]["data"]
        assert last["jobId"] == job_id and last["status"] == "succeeded"
        assert sorted(last["images"]) == sorted(i["key"] for s in view["steps"]
                                                for i in s["images"])
