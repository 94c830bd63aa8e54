"""Idempotency-Key under crashes and races, with real processes and the real Redis.

A process creating a job under a key is SIGKILLed at the exact moment its transaction
is about to reach Redis (a gate between it and Redis holds everything from ``MULTI``
on). Nothing it did may keep the key: the retry through the real app creates the job,
once. And a request held the same way while another with a different body overtakes
it must never be answered with the other's job.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.support.gate import RedisGate
from webhook import create_app
from worker import api
from worker.flow.engine import Engine, Inline
from worker.keys import Keys
from worker.settings import load_settings

KEY = "k1"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"prompt": "exactly once", "then": ["U1"]}

CHILD = textwrap.dedent("""
    import json, sys
    import redis
    from worker import api
    from worker.flow.engine import Engine, Inline
    from worker.keys import Keys
    from worker.settings import load_settings

    url, prefix, key, body = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    settings = load_settings(redis_url=url, key_prefix=prefix, allow_private_urls=True)
    r = redis.Redis.from_url(url, decode_responses=True)
    api.create_job(Engine(settings, r, Keys(prefix), Inline()), body, idempotency_key=key,
                   dispatch_now=False)
    print("created", flush=True)
""")


@pytest.fixture
def gate():  # type: ignore[no-untyped-def]
    g = RedisGate(int(REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    yield g
    g.close()


def test_a_process_killed_between_claim_and_create_leaves_the_key_usable(rds, prefix, gate):
    import json

    child = subprocess.Popen([sys.executable, "-c", CHILD, gate.url, prefix, "order-7",
                              json.dumps(BODY)], stdout=subprocess.PIPE, cwd=os.getcwd())
    try:
        assert gate.held.wait(20), "the child never reached its transaction"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    keys = Keys(prefix)
    assert rds.zcard(keys.jobs()) == 0                       # the kill came before the job
    settings = load_settings(redis_url=REDIS_URL, key_prefix=prefix, api_keys=[KEY],
                             allow_private_urls=True)
    client = create_app(settings, Engine(settings, rds, keys, Inline())).test_client()
    first = client.post("/v1/jobs", json=BODY, headers=AUTH | {"Idempotency-Key": "order-7"})
    assert first.status_code == 202, first.json
    again = client.post("/v1/jobs", json=BODY, headers=AUTH | {"Idempotency-Key": "order-7"})
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    assert rds.zcard(keys.jobs()) == 1


def test_a_left_over_claim_without_its_job_is_taken_over(engine):
    """A record written by an older mjflow that died between claiming and creating."""
    engine.r.hset(engine.keys.idem("legacy"), mapping={"job": "job_never_created"})
    view = api.create_job(engine, BODY, idempotency_key="legacy", dispatch_now=False)
    assert not view.get("replayed") and view["id"] != "job_never_created"
    assert engine.r.hget(engine.keys.idem("legacy"), "job") == view["id"]


def test_a_held_request_is_never_answered_with_another_bodys_job(rds, prefix, gate):
    keys = Keys(prefix)
    settings = load_settings(redis_url=gate.url, key_prefix=prefix, allow_private_urls=True)
    slow = Engine(settings, redis.Redis.from_url(gate.url, decode_responses=True), keys, Inline())
    fast = Engine(settings, rds, keys, Inline())
    answers: dict[str, object] = {}

    def held() -> None:
        try:
            answers["held"] = api.create_job(slow, {"prompt": "first body"},
                                             idempotency_key="race", dispatch_now=False)
        except api.Conflict as exc:
            answers["held"] = exc

    thread = threading.Thread(target=held)
    thread.start()
    assert gate.held.wait(20)
    other = api.create_job(fast, {"prompt": "second body"}, idempotency_key="race",
                           dispatch_now=False)
    gate.release()
    thread.join(20)
    assert isinstance(answers["held"], api.Conflict), answers
    assert rds.zcard(keys.jobs()) == 1
    assert rds.hget(keys.idem("race"), "job") == other["id"]
