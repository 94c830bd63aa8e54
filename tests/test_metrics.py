"""``GET /metrics`` over real HTTP: values computed from Redis at scrape time."""
from __future__ import annotations

import json
import time

import pytest
import redis
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.web import serve
from webhook import create_app
from webhook import metrics as web_metrics
from worker.flow.engine import Engine
from worker.flow.submit import apply_answer
from worker.jobs.durations import STEP_DURATION_BUCKETS, observe_step_duration
from worker.jobs.spec import JobSpec
from worker.metrics import RedisCollector, make_registry
from worker.upstream import Outcome
from worker.upstream.outcomes import Answer


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} for every sample."""
    resp = requests.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(resp.text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def app_for(engine: Engine):
    app = create_app(engine.settings, engine)
    web_metrics.init_app(app)       # no-op once create_app registers it itself
    return app


def test_metrics_over_http(engine: Engine):
    k = engine.keys
    store = engine.store
    for _ in range(3):
        store.create(JobSpec(prompt="x"))
    # one step dispatched and accepted upstream (in flight, 100 s ago)
    [first] = engine.member(None).window.claim(limit=1, lease_s=60, grace_s=60, bucket=10**13)
    apply_answer(engine, store.job_of(first), first, "imagine",
                 Answer(Outcome.ACCEPTED, "ok", task_id="1712345678901", code=1))
    times = json.loads(engine.r.hget(k.step(first), "times"))
    times["submitted"] = time.time() - 100
    times.pop("submitting", None)
    engine.r.hset(k.step(first), "times", json.dumps(times))
    # one more claimed: submitting
    assert engine.member(None).window.claim(limit=1, lease_s=60, grace_s=60, bucket=10**13)

    for _ in range(3):
        store.bump("callbacks", "accepted")
    store.bump("callbacks", "rejected_not_found", 2)
    store.bump("callbacks", "rejected_late")
    store.bump("callbacks", "reconciled_applied", 4)
    store.bump("polls", "rounds", 7)
    store.bump("polls", "recovered", 2)
    store.bump("polls", "lost")
    store.bump("polls", "surprise")
    store.bump("submits", "outcome_unknown")
    store.bump("submits", "ambiguous_resubmits", 2)
    store.bump("storage", "bytes", 123456)
    store.bump("storage", "images", 4)
    store.bump("storage", "permanent_failures")
    store.bump("effects", "slot_released", 5)
    store.bump("webhook_attempts", "2xx", 9)
    store.bump("webhook_attempts", "timeout")
    engine.member(None).window.record_answer({"outcome": "queue_full"})
    engine.r.zadd(k.deliveries_due(), {"dlv_a": time.time(), "dlv_b": time.time()})
    engine.r.zadd(k.deliveries_failed(), {"dlv_c": time.time()})
    for seconds in (3, 12.5, 700, 5000):
        observe_step_duration(engine.r, k, "IMAGINE", seconds)
    observe_step_duration(engine.r, k, "upscale", 8)
    engine.member(None).window.pause("out_of_credit: test")

    with serve(app_for(engine)) as url:
        m = scrape(url)

    assert one(m, "mjflow_redis_up") == 1
    assert one(m, "mjflow_jobs_live") == 3
    assert one(m, "mjflow_jobs_stored") == 3
    assert one(m, "mjflow_steps", state="queued") == 1
    assert one(m, "mjflow_steps", state="submitting") == 1
    assert one(m, "mjflow_steps", state="in_flight") == 1
    assert one(m, "mjflow_steps", state="storing") == 0
    assert one(m, "mjflow_slots_in_use", upstream="default") == 2
    assert one(m, "mjflow_window_max", upstream="default") == engine.settings.max_in_flight
    assert one(m, "mjflow_dispatch_paused", upstream="default") == 1
    assert 99 <= one(m, "mjflow_oldest_in_flight_step_age_seconds") < 130

    assert one(m, "mjflow_callbacks_received_total") == 6
    assert one(m, "mjflow_callbacks_accepted_total") == 3
    assert one(m, "mjflow_callbacks_rejected_total", reason="not_found") == 2
    assert one(m, "mjflow_callbacks_rejected_total", reason="late") == 1
    assert one(m, "mjflow_callbacks_reconciled_total", result="applied") == 4
    assert one(m, "mjflow_poll_rounds_total") == 7
    assert one(m, "mjflow_steps_recovered_total") == 2
    assert one(m, "mjflow_steps_lost_total") == 1
    assert one(m, "mjflow_poll_events_total", event="surprise") == 1
    assert one(m, "mjflow_submit_outcome_unknown_total") == 1
    assert one(m, "mjflow_ambiguous_resubmits_total") == 2
    assert one(m, "mjflow_upstream_answers_total", upstream="default", outcome="queue_full") == 1
    assert one(m, "mjflow_storage_bytes_total") == 123456
    assert one(m, "mjflow_storage_images_total") == 4
    assert one(m, "mjflow_storage_failures_total", kind="permanent") == 1
    assert one(m, "mjflow_storage_failures_total", kind="retryable") == 0
    assert one(m, "mjflow_effects_total", effect="slot_released") >= 5
    assert one(m, "mjflow_webhook_attempts_total", result="2xx") == 9
    assert one(m, "mjflow_deliveries_pending") == 2
    assert one(m, "mjflow_deliveries_failed") == 1

    h = "mjflow_step_duration_seconds"
    assert one(m, h + "_count", action="imagine") == 4
    assert one(m, h + "_sum", action="imagine") == pytest.approx(3 + 12.5 + 700 + 5000)
    assert one(m, h + "_bucket", action="imagine", le="5.0") == 1
    assert one(m, h + "_bucket", action="imagine", le="20.0") == 2
    assert one(m, h + "_bucket", action="imagine", le="900.0") == 3
    assert one(m, h + "_bucket", action="imagine", le="3600.0") == 3
    assert one(m, h + "_bucket", action="imagine", le="+Inf") == 4
    assert one(m, h + "_count", action="upscale") == 1
    assert one(m, h + "_bucket", action="upscale", le="5.0") == 0
    assert one(m, h + "_bucket", action="upscale", le="10.0") == 1
    # every series exposes the same bucket bounds
    les = {dict(lbl)["le"] for lbl in m[h + "_bucket"]}
    assert len(les) == len(STEP_DURATION_BUCKETS) + 1


def test_observe_in_a_transaction_pipeline(engine: Engine):
    pipe = engine.r.pipeline(transaction=True)
    observe_step_duration(pipe, engine.keys, "blend", 42)
    assert not engine.r.exists(engine.keys.counter("step_duration:blend"))  # only queued
    pipe.execute()
    h = engine.r.hgetall(engine.keys.counter("step_duration:blend"))
    assert h["count"] == "1" and float(h["sum"]) == 42 and h["le:45.0"] == "1"


def test_registry_per_app_and_idempotent_init(engine: Engine):
    engine.store.create(JobSpec(prompt="x"))
    a, b = app_for(engine), app_for(engine)
    web_metrics.init_app(a)                      # twice on one app: no error
    with serve(a) as ua, serve(b) as ub:
        assert one(scrape(ua), "mjflow_jobs_live") == one(scrape(ub), "mjflow_jobs_live") == 1


def test_redis_down_still_answers(make_engine):
    dead = redis.Redis(host="127.0.0.1", port=1, decode_responses=True,
                       socket_connect_timeout=0.2, retry_on_error=[])
    engine = make_engine(r=dead)
    text = generate_latest(make_registry(engine)).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["mjflow_redis_up"].samples[0].value == 0
    assert "mjflow_jobs_live" not in fams
    assert list(RedisCollector(engine).describe()) == []


def test_metrics_key_when_set_is_required(make_engine):
    engine = make_engine(metrics_key="scrape-secret")
    with serve(app_for(engine)) as url:
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer scrape-secreT"}
        assert requests.get(f"{url}/metrics", headers=wrong, timeout=5).status_code == 401
        ok = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer scrape-secret"},
                          timeout=5)
        assert ok.status_code == 200 and "mjflow_" in ok.text
    open_engine = make_engine()
    with serve(app_for(open_engine)) as url:                  # default: open
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 200
