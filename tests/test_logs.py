"""Structured logs: JSON lines with the bound ids, secrets redacted, request lines over real
HTTP never carrying the callback token."""
from __future__ import annotations

import io
import json
import logging

import pytest
import requests

from tests.support.web import serve
from webhook import create_app
from worker import logs
from worker.flow.tokens import hook_token
from worker.jobs.spec import JobSpec
from worker.logs import JsonFormatter, RedactFilter, bind, init_request_logging

UPSTREAM_KEY = "upk-Z9q8w7e6r5t4y3u2"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK_SECRET = "hook-secret-0123456789"


@pytest.fixture
def capture():
    """A JSON handler with the redact filter on a StringIO, attached to a test logger."""
    def make(settings=None, name="mjflow.test.logs", redact=True):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        if redact:
            handler.addFilter(RedactFilter(settings))
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        made.append((logger, handler))

        def lines():
            return [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
        return logger, lines, stream

    made: list = []
    yield make
    for logger, handler in made:
        logger.removeHandler(handler)


def test_json_lines_carry_bound_ids(capture):
    log, lines, _ = capture()
    with bind(job="job_abc", step="stp_def"):
        with bind(task="1712345678901"):
            log.info("progress %s", "15%", extra={"attempt": 2})
        log.warning("after inner")
    log.info("outside")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    a, b, c, d = lines()
    assert a["msg"] == "progress 15%" and a["level"] == "INFO"
    assert a["logger"] == "mjflow.test.logs" and a["ts"].endswith("Z")
    assert (a["job"], a["step"], a["task"], a["attempt"]) == ("job_abc", "stp_def",
                                                              "1712345678901", 2)
    assert b["job"] == "job_abc" and "task" not in b
    assert not {"job", "step", "task"} & set(c)
    assert "RuntimeError: boom" in d["exc"]


def test_redact_filter_removes_secrets(capture, make_settings):
    settings = make_settings(upstream_key=UPSTREAM_KEY, webhook_secret=WHSEC,
                             public_url="http://127.0.0.1:1", hook_secret=HOOK_SECRET,
                             api_keys=["api-key-abcdef123"])
    log, lines, stream = capture(settings)
    token = hook_token(HOOK_SECRET, "stp_123")
    log.info("callback POST /hooks/mj/stp_123/%s from %s", token, "10.0.0.1")
    log.info("headers %s", {"Authorization": "Bearer api-key-abcdef123", "X": "1"})
    log.info("calling upstream with mj-api-secret: %s", UPSTREAM_KEY)
    log.info("signing with %s", WHSEC)
    log.info("openai key sk-proj-abcdefghijklmnop", extra={"url": f"/hooks/mj/stp_9/{token}"})
    log.info("hook secret is %s and key %s", HOOK_SECRET, UPSTREAM_KEY)
    try:
        raise ValueError(f"bad key {UPSTREAM_KEY}")
    except ValueError:
        log.exception("oops")
    text = stream.getvalue()
    for secret in (token, UPSTREAM_KEY, WHSEC, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                   HOOK_SECRET, "api-key-abcdef123", "abcdefghijklmnop"):
        assert secret not in text
    out = lines()
    assert out[0]["msg"] == "callback POST /hooks/mj/stp_123/<redacted> from 10.0.0.1"
    assert "Bearer <redacted>" in out[1]["msg"] and "'X': '1'" in out[1]["msg"]
    assert out[2]["msg"].endswith("mj-api-secret: <redacted>")
    assert out[4]["url"] == "/hooks/mj/stp_9/<redacted>"
    assert "<redacted>" in out[6]["exc"]


def test_setup_logging_is_idempotent(make_settings):
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    logs.reset_logging()     # an app built by an earlier test may have set it up
    try:
        h1 = logs.setup_logging(make_settings(upstream_key=UPSTREAM_KEY), stream=stream)
        h2 = logs.setup_logging(make_settings(upstream_key=UPSTREAM_KEY), level="DEBUG")
        assert h1 is h2 and sum(getattr(h, "_mjflow", False) for h in root.handlers) == 1
        assert root.level == logging.DEBUG
        logging.getLogger("mjflow.anything").info("key=%s", UPSTREAM_KEY)
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["msg"] == "key=<redacted>"
    finally:
        logs.reset_logging()
        root.setLevel(level)
    assert not any(getattr(h, "_mjflow", False) for h in root.handlers)


def test_celery_signals_bind_task_ids(capture):
    from celery import signals

    log, lines, _ = capture()
    logs.connect_celery_signals()
    logs.connect_celery_signals()         # idempotent
    try:
        class FakeTask:
            name = "mjflow.reconcile"

        snapshot = {"id": "1712345678901", "status": "IN_PROGRESS", "progress": "20%"}
        signals.task_prerun.send(sender=FakeTask, task_id="cel-1", task=FakeTask,
                                 args=("stp_abc", snapshot, "callback"), kwargs={})
        log.info("inside")
        signals.task_postrun.send(sender=FakeTask, task_id="cel-1", task=FakeTask,
                                  args=(), kwargs={}, retval=None, state="SUCCESS")
        log.info("after")
        signals.task_prerun.send(sender=FakeTask, task_id="cel-2", task=FakeTask,
                                 args=(), kwargs={"job_id": "job_xyz"})
        log.info("finish")
        signals.task_postrun.send(sender=FakeTask, task_id="cel-2", task=FakeTask)
    finally:
        logs.disconnect_celery_signals()
    inside, after, finish = lines()
    assert inside["step"] == "stp_abc" and inside["task"] == "1712345678901"
    assert inside["celery_task"] == "mjflow.reconcile" and inside["celery_id"] == "cel-1"
    assert "step" not in after and "celery_id" not in after
    assert finish["job"] == "job_xyz"
    assert logs.current_context() == {}


def test_request_log_never_has_the_hook_token(make_engine, capture, caplog):
    engine = make_engine(public_url="http://127.0.0.1:1", hook_secret=HOOK_SECRET,
                         api_keys=["api-key-abcdef123"])
    settings = engine.settings
    job = engine.store.create(JobSpec(prompt="p"))
    step = engine.store.step_ids(job.id)[0]
    engine.member(None).window.claim(limit=1, lease_s=60, grace_s=60, bucket=10**13)   # its submit is out
    token = hook_token(HOOK_SECRET, step)
    app = create_app(settings, engine)
    init_request_logging(app)
    init_request_logging(app)             # idempotent
    # no redact filter here: the request line itself must be clean
    _, lines, stream = capture(name="mjflow.http", redact=False)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="urllib3")  # the test client's own URL logging
    with serve(app) as url:
        ok = requests.post(f"{url}/hooks/mj/{step}/{token}",
                           json={"id": "1712345678901", "status": "SUBMITTED", "state": step},
                           timeout=5)
        bad = requests.post(f"{url}/hooks/mj/{step}/{'0' * 40}", json={"id": "1"}, timeout=5)
        requests.get(f"{url}/healthz", timeout=5)
    assert ok.status_code == 204 and bad.status_code == 404
    text = stream.getvalue()
    assert token not in text
    assert token not in caplog.text and all(token not in r.getMessage() for r in caplog.records)
    posts = [x for x in lines() if x.get("method") == "POST"]
    assert [x["status"] for x in posts] == [204, 404]
    for x in posts:
        assert x["path"] == f"/hooks/mj/{step}/<redacted>"
        assert x["step"] == step and isinstance(x["duration_ms"], float)
        assert x["msg"] == f"POST /hooks/mj/{step}/<redacted> {x['status']}"
    health = [x for x in lines() if x.get("path") == "/healthz"]
    assert health and health[0]["level"] == "DEBUG"


def test_gunicorn_access_log_is_redacted(capsys):
    pytest.importorskip("gunicorn")
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    cfg = Config()
    cfg.set("accesslog", "-")
    glog = logs.GunicornLogger(cfg)
    token = hook_token(HOOK_SECRET, "stp_1")
    req = SimpleNamespace(method="POST", path=f"/hooks/mj/stp_1/{token}", query="",
                          uri=f"/hooks/mj/stp_1/{token}", version=(1, 1), headers=[])
    resp = SimpleNamespace(status="204 No Content", status_code=204, sent=0, headers=[],
                           response_length=0)
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "POST", "RAW_URI": req.uri,
               "PATH_INFO": req.path, "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1"}
    glog.access(resp, req, environ, timedelta(0))
    glog.error("Error handling request %s", req.uri)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "/hooks/mj/stp_1/<redacted>" in text and token not in text
    for line in text.splitlines():
        json.loads(line)
    for log in (glog.error_log, glog.access_log):
        for h in list(log.handlers):
            log.removeHandler(h)
