"""When MJFLOW_PUBLIC_URL does not answer, mjflow says so and polls at the no-callback
pace: the beat tick's probe, ``/readyz``, ``/metrics``, the dashboard's upstream page and
``mjflow submit`` (a subprocess), all against real HTTP servers on loopback."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.web import serve
from webhook import create_app
from worker.dev.localnet import free_port
from worker.flow import receiver
from worker.flow.engine import CALLBACK_POLL_S
from worker.flow.tick import probe_receiver, tick

MJFLOW = str(Path(sys.executable).parent / "mjflow")
KEY = "probe-key"


def test_a_dead_receiver_turns_callbacks_off_and_brings_polls_forward(make_engine):
    dead = f"http://127.0.0.1:{free_port()}"
    engine = make_engine(public_url=dead, hook_secret="s")
    profile_pace = engine.member(None).poll_interval_s
    assert engine.callbacks_on(engine.member(None)) and engine.poll_interval_s(engine.member(None)) == max(CALLBACK_POLL_S, profile_pace)
    now = time.time()
    engine.r.zadd(engine.keys.poll(), {"stp_waiting": now + CALLBACK_POLL_S})
    assert tick(engine, now)["receiver_probes"] == 1
    assert receiver.read(engine.r, engine.keys) == {"reachable": False, "checkedAt": now,
                                                    "error": "ConnectionError"}
    assert not engine.callbacks_on(engine.member(None)) and engine.poll_interval_s(engine.member(None)) == profile_pace
    assert engine.r.zscore(engine.keys.poll(), "stp_waiting") == now + profile_pace
    assert engine.hook_url(engine.member(None), "stp_x") is not None          # hooks still sent: they resume alone
    assert probe_receiver(engine, now + 1) == 0          # cached: no new probe yet
    with serve(create_app(engine.settings, engine)) as url:
        engine.settings.public_url = url                  # the receiver is back
        assert probe_receiver(engine, now + receiver.PROBE_EVERY_S) == 1
    assert engine.callbacks_on(engine.member(None)) and engine.poll_interval_s(engine.member(None)) == max(CALLBACK_POLL_S, profile_pace)


def test_readyz_metrics_and_dashboard_say_the_receiver_is_down(make_engine):
    engine = make_engine(public_url=f"http://127.0.0.1:{free_port()}", hook_secret="s",
                         api_keys=[KEY])
    with serve(create_app(engine.settings, engine)) as url:
        ready = requests.get(f"{url}/readyz", timeout=10).json()
        assert ready["status"] == "ok" and ready["callbacks"]["reachable"] is None
        receiver.probe(engine.r, engine.keys, engine.settings.public_url)
        resp = requests.get(f"{url}/readyz", timeout=10)
        assert resp.status_code == 200                    # degraded, not unready
        body = resp.json()
        assert body["status"] == "degraded" and body["callbacks"]["reachable"] is False
        assert "does not answer (ConnectionError)" in body["callbacks"]["warning"]
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert "mjflow_callbacks_reachable 0.0" in metrics
        page = requests.get(f"{url}/upstream?key={KEY}", timeout=10).text
        assert 'id="callbacks"' in page and "unreachable" in page and "does not answer" in page
        receiver.probe(engine.r, engine.keys, url)        # the app itself answers
        assert requests.get(f"{url}/readyz", timeout=10).json()["status"] == "ok"
        assert "mjflow_callbacks_reachable 1.0" in requests.get(f"{url}/metrics", timeout=10).text


def test_mjflow_submit_warns_when_the_receiver_is_down(make_engine):
    engine = make_engine()
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"PATH": "/usr/bin:/bin", "MJFLOW_REDIS_URL": engine.settings.redis_url,
           "MJFLOW_KEY_PREFIX": engine.keys.prefix, "MJFLOW_UPSTREAM_URL": "http://127.0.0.1:9",
           "MJFLOW_PUBLIC_URL": dead, "MJFLOW_HOOK_SECRET": "s"}
    res = subprocess.run([MJFLOW, "submit", "a lighthouse"], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("job_")
    assert f"warning: MJFLOW_PUBLIC_URL ({dead}) does not answer" in res.stderr
    assert f"every {engine.member(None).poll_interval_s:g} s" in res.stderr
    quiet = subprocess.run([MJFLOW, "submit", "a lighthouse"], env={**env, "MJFLOW_PUBLIC_URL": ""},
                           capture_output=True, text=True, timeout=60, check=False)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
