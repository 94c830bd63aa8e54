"""The caller SDK (``mjflow.Client``) against the real web app on loopback: typed results,
the API's error bodies as typed errors, the cursor followed, retries only where safe (a
loopback server that fails on purpose shows when a request is sent again), and no import
of the service's packages."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import redis
from werkzeug.wrappers import Request, Response

import mjflow
from tests.support.web import serve
from webhook import create_app
from worker.flow.engine import Engine, Inline
from worker.keys import Keys

KEY = "sdk-key"


@pytest.fixture
def client(rds, make_settings):
    settings = make_settings(api_keys=[KEY], max_in_flight=1)
    engine = Engine(settings, rds, Keys(settings.key_prefix), Inline())
    with serve(create_app(settings, engine)) as url, \
            mjflow.Client(url, api_key=KEY, timeout=10, retries=0) as c:
        yield c


def test_sdk_imports_nothing_of_the_service():
    code = ("import sys, mjflow, mjflow.errors, mjflow.models, mjflow.events, mjflow.images;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'worker', 'webhook', 'simulator', 'celery', 'flask', 'redis', 'pydantic', 'boto3'});"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_submit_get_and_idempotent_replay_are_typed(client):
    job = client.submit({"prompt": "a red fox", "then": ["U1"], "metadata": {"order": 7}},
                        idempotency_key="order-7")
    assert isinstance(job, mjflow.Job) and job.id.startswith("job_")
    assert job.status in ("queued", "running") and not job.finished
    assert job.metadata == {"order": 7}
    assert [s.label for s in job.steps] == ["IMAGINE", "U1"]
    assert isinstance(job.steps[0], mjflow.Step) and job.raw["id"] == job.id
    again = client.submit({"prompt": "a red fox", "then": ["U1"], "metadata": {"order": 7}},
                          idempotency_key="order-7")
    assert again.id == job.id
    assert client.get(job.id).id == job.id
    assert "sdk-key" not in repr(client)


def test_errors_map_to_the_tree(client):
    with pytest.raises(mjflow.InvalidSpec) as err:
        client.submit({"prompt": "x", "then": [{"nope": 1}]})
    assert err.value.status == 422 and "then[0].button" in err.value.paths
    with pytest.raises(mjflow.InvalidSpec) as err:
        list(client.iter_jobs(status="sideways"))
    assert err.value.status == 400 and err.value.paths == ["status"]
    with pytest.raises(mjflow.NotFound) as nf:
        client.get("job_doesnotexist")
    assert nf.value.code == "not_found" and isinstance(nf.value, mjflow.MjflowAPIError)
    client.submit("a blue whale", idempotency_key="whale")
    with pytest.raises(mjflow.Conflict):
        client.submit("another body", idempotency_key="whale")
    bad = mjflow.Client(client.base_url, api_key="wrong", retries=0)
    with pytest.raises(mjflow.AuthError) as auth:
        bad.get("job_x")
    assert auth.value.status == 401


def test_iter_jobs_follows_the_cursor_and_batches_are_typed(client):
    batch = client.create_batch([f"prompt {i}" for i in range(5)], name="sdk-batch")
    assert isinstance(batch, mjflow.Batch) and batch.total == 5
    assert batch.submitted and batch.submitted["created"] == 5
    again = client.create_batch([f"prompt {i}" for i in range(5)], name="sdk-batch")
    assert again.id == batch.id and again.submitted["created"] == 0
    seen = [j.id for j in client.iter_jobs(batch=batch.id, page_size=2)]
    assert len(seen) == len(set(seen)) == 5
    assert client.get_batch(batch.id).total == 5
    queued = {j.id for j in client.iter_jobs(batch=batch.id, status="queued", page_size=1)}
    assert queued and queued <= set(seen)      # one holds the only slot, four wait


def test_cancel_retry_and_wait_timeout(client):
    running = client.submit("holds the one slot")
    job = client.submit({"prompt": "cancel me", "then": ["U1"]})
    cancelled = client.cancel(job.id)
    assert cancelled.id == job.id and cancelled.finished and cancelled.status == "cancelled"
    assert client.retry(running.id).raw["retried"] == 0
    with pytest.raises(mjflow.WaitTimeout) as err:
        client.wait(running.id, timeout=0.3, poll=0.1)
    assert err.value.job.id == running.id


def test_redis_down_is_unavailable(make_settings):
    settings = make_settings(api_keys=[KEY], redis_url="redis://127.0.0.1:1/0")
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=None, decode_responses=True)
    engine = Engine(settings, dead, Keys(settings.key_prefix), Inline())
    with serve(create_app(settings, engine)) as url, pytest.raises(mjflow.Unavailable) as err:
        mjflow.Client(url, api_key=KEY, retries=0).get("job_x")
    assert err.value.status == 503 and err.value.code == "unavailable"


# -- retries, against a loopback server that fails on purpose -----------------------------------
class Flaky:
    """Answers ``failures`` errors (status, headers, body) then 200/202 with a job."""

    def __init__(self, failures: list[tuple[int, dict[str, str], str]]) -> None:
        self.failures = list(failures)
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        req = Request(environ)
        with self.lock:
            self.requests.append((req.method, req.path, req.headers.get("Idempotency-Key")))
            failure = self.failures.pop(0) if self.failures else None
        if failure:
            status, headers, body = failure
            resp = Response(body, status=status, headers=headers,
                            content_type="application/json" if body.startswith("{") else "text/plain")
        else:
            resp = Response(json.dumps({"id": "job_1", "status": "queued", "steps": [],
                                        "items": [], "next": None}),
                            status=202 if req.method == "POST" else 200,
                            content_type="application/json")
        return resp(environ, start_response)


BUSY = (503, {"Retry-After": "0"}, '{"error": "unavailable", "message": "retry later"}')


def test_gets_and_keyed_posts_are_retried_honouring_retry_after():
    app = Flaky([BUSY, (502, {}, "<html>bad gateway</html>"), BUSY])
    with serve(app) as url:
        c = mjflow.Client(url, api_key=KEY, retries=3, backoff=0.01)
        assert c.get("job_1").id == "job_1"
        assert len(app.requests) == 4                  # three failures, then the answer
        app.failures = [BUSY]
        assert c.submit("x", idempotency_key="k-1").id == "job_1"
        assert [r[2] for r in app.requests[4:]] == ["k-1", "k-1"]


def test_unkeyed_posts_are_sent_once_and_errors_keep_their_details():
    app = Flaky([BUSY])
    with serve(app) as url:
        c = mjflow.Client(url, retries=5, backoff=0.01)
        with pytest.raises(mjflow.Unavailable):
            c.submit("x")
        assert len(app.requests) == 1
        app.failures = [(429, {"Retry-After": "7"}, '{"error": "rate_limited", "message": "slow"}')]
        with pytest.raises(mjflow.RateLimited) as err:
            c.submit("x")
        assert err.value.retry_after == 7.0
        for status, cls in ((413, mjflow.PayloadTooLarge), (415, mjflow.UnsupportedMediaType),
                            (500, mjflow.ServerError), (502, mjflow.Unavailable)):
            app.failures = [(status, {}, "not json")]
            with pytest.raises(cls) as e:
                c.submit("x")
            assert e.value.status == status and "not json" in e.value.message


def test_retries_are_capped_and_no_answer_is_a_transport_error():
    app = Flaky([BUSY] * 10)
    with serve(app) as url:
        c = mjflow.Client(url, retries=2, backoff=0.01)
        with pytest.raises(mjflow.Unavailable):
            c.get("job_1")
        assert len(app.requests) == 3
    with pytest.raises(mjflow.TransportError):
        mjflow.Client("http://127.0.0.1:1", retries=1, backoff=0.01).get("job_1")
    with pytest.raises(ValueError):
        mjflow.Client("ftp://nope")
