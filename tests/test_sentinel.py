"""Redis Sentinel for real: a master, a replica and three Sentinels on loopback; the web
app, a Celery worker and beat use them for the job store *and* the broker (``sentinel://``
URLs). Jobs run through a ``SENTINEL FAILOVER`` and then through a SIGKILL of the master;
every job finishes, the simulator saw each task submitted once, each side effect happened
once."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.sentinel import SentinelCluster, sentinel_argv
from tests.support.stack import Stack
from worker.redis_conn import connect
from worker.settings import load_settings

pytestmark = pytest.mark.skipif(
    sentinel_argv(Path("sentinel.conf")) is None,
    reason="neither redis-sentinel nor redis-server is installed (make test-tools installs it)")


@pytest.fixture
def cluster(tmp_path):
    c = SentinelCluster(tmp_path / "sentinel", password="s3cret-pass")
    try:
        yield c.start()
    finally:
        c.stop()


def submit(stack: Stack, spec: dict, timeout_s: float = 30.0) -> str:
    """POST a job, retrying (same Idempotency-Key) while the store is failing over."""
    key = f"test-{uuid.uuid4().hex}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            resp = requests.post(f"{stack.web_url}/v1/jobs", json=spec, timeout=30,
                                 headers=stack.headers | {"Idempotency-Key": key})
            if resp.status_code in (200, 202):
                return resp.json()["id"]
            assert resp.status_code == 503, resp.text
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "could not submit through the failover"
        time.sleep(0.3)


def wave(stack: Stack, name: str, n: int) -> list[str]:
    return [submit(stack, {"prompt": f"{name} {i} a lighthouse", "then": ["U1"]})
            for i in range(n)]


def unfinished(stack: Stack, jobs: list[str]) -> list[str]:
    return [j for j in jobs if not stack.job(j)["finishedAt"]]


def test_jobs_survive_failover_and_master_kill(cluster, make_settings, tmp_path):
    try:
        _failover_and_kill(cluster, make_settings)
    except AssertionError as exc:
        # Sentinel does not protect a write acknowledged just before the master died
        # (asynchronous replication, docs/operations.md): a job can vanish with it. Once:
        # run the whole scenario again on a fresh cluster; anything else fails at once.
        if "no job" not in str(exc):
            raise
        cluster.stop()
        again = SentinelCluster(tmp_path / "again", password="s3cret-pass")
        try:
            _failover_and_kill(again.start(), make_settings)
        finally:
            again.stop()


def _failover_and_kill(cluster, make_settings) -> None:  # type: ignore[no-untyped-def]
    # a failover takes seconds: a submit grace shorter than that (the stack's 3 s) would
    # resubmit steps whose answer is only waiting for Redis (the default grace is 60 s)
    env = {"MJFLOW_REDIS_URL": cluster.url, "MJFLOW_REDIS_SENTINEL_MASTER": cluster.master_name,
           "MJFLOW_SUBMIT_GRACE_S": "30"}
    with Stack(speed=20, env_extra=env) as stack:
        settings = make_settings(redis_url=cluster.url, key_prefix=stack.prefix)
        stack.r = connect(settings)           # counters and cleanup on the Sentinel master
        jobs = wave(stack, "a", 6)
        time.sleep(1.0)                       # some in flight, some queued
        assert unfinished(stack, jobs), "nothing in flight at the failover"
        first = cluster.failover()
        jobs += wave(stack, "b", 6)
        time.sleep(1.0)
        assert unfinished(stack, jobs), "nothing in flight at the kill"
        killed, second = cluster.kill_master()
        assert second != killed and first == killed
        jobs += wave(stack, "c", 4)
        views = stack.wait_jobs(jobs, timeout_s=90)

        assert [v["status"] for v in views] == ["succeeded"] * len(jobs), [
            (v["id"], v["status"], [(s["label"], s["status"]) for s in v["steps"]])
            for v in views]
        stats = stack.sim_stats()
        assert stats["duplicate_submissions"]["count"] == 0, stats["duplicate_submissions"]
        assert stats["submissions"].get("IMAGINE") == len(jobs), stats["submissions"]
        assert stats["submissions"].get("UPSCALE") == len(jobs), stats["submissions"]
        effects = stack.counters("effects")
        assert effects.get("job_finished") == len(jobs), effects
        assert effects.get("stored") == 2 * len(jobs), effects


def test_sentinel_url_reaches_the_master(cluster):
    settings = load_settings(redis_url=cluster.url + "/3",
                             redis_sentinel_master=cluster.master_name)
    r = connect(settings)
    r.set("mjflow-sentinel-probe", "1")
    assert r.connection_pool.get_master_address()[1] == cluster.master_port()
    assert r.connection_pool.connection_kwargs["db"] == 3
    r.delete("mjflow-sentinel-probe")
