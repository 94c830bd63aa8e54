"""The SDK and the consumer helper on a real run: a job submitted with ``mjflow.Client``
through the web app, run by a real Celery worker against the simulator, its images in a
real S3 API (moto server), its signed event delivered to a Flask consumer built on
``mjflow.flask.events_blueprint``; the event verified and typed, its images fetched by
presigned URL and by bucket + key; forged, stale and tampered events refused."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime

import boto3
import pytest
import requests
from flask import Flask, request
from standardwebhooks.webhooks import Webhook

import mjflow
from mjflow.flask import events_blueprint
from tests.support.s3 import make_bucket, moto_server
from tests.support.stack import Stack
from tests.support.web import serve

SECRET = "whsec_" + base64.b64encode(b"sdk-events-secret-0123456789").decode()
BUCKET = "sdk-events"


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_server() as endpoint:
        make_bucket(endpoint, BUCKET)
        yield endpoint


def consumer_app(received: list, raw: list) -> Flask:
    app = Flask("consumer")

    def on_event(event: mjflow.Event) -> None:
        received.append(event)

    app.register_blueprint(events_blueprint(SECRET, on_event), url_prefix="/hooks")

    @app.before_request
    def _keep():  # type: ignore[no-untyped-def]
        raw.append((request.get_data(), dict(request.headers)))

    return app


def test_submit_wait_event_and_images_from_a_real_run(s3_endpoint):
    received: list[mjflow.Event] = []
    raw: list[tuple[bytes, dict]] = []
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "MJFLOW_STORAGE_URL": f"s3://{BUCKET}/images",
           "MJFLOW_WEBHOOK_SECRET": SECRET}
    with serve(consumer_app(received, raw)) as consumer, \
            Stack(speed=100, env_extra=env) as stack:
        client = mjflow.Client(stack.web_url, api_key=stack.api_key, timeout=10)
        job = client.submit({"prompt": "a lighthouse at dawn", "then": ["U1"],
                             "metadata": {"order": 42},
                             "callbackUrl": f"{consumer}/hooks/mjflow"},
                            idempotency_key="sdk-events-1")
        done = client.wait(job.id, timeout=60, poll=0.3)
        assert done.status == "succeeded" and [s.status for s in done.steps] == ["succeeded"] * 2
        assert len(done.images) >= 2 and all(i.url and i.sha256 for i in done.images)

        deadline = time.monotonic() + 20
        while not received:
            assert time.monotonic() < deadline, stack.tail_logs()
            time.sleep(0.2)
        event = received[0]
        assert event.type == "job.succeeded" and event.job_id == job.id
        assert event.status == "succeeded" and event.metadata == {"order": 42}
        assert event.id == raw[0][1]["Webhook-Id"]
        assert event.images == [i.key for i in done.images]

        # images: by presigned URL (no credentials) and by bucket + key
        first = event.stored_images[0]
        data = mjflow.download(first)
        assert hashlib.sha256(data).hexdigest() == first.sha256
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        assert first.bucket == BUCKET and first.key.startswith("images/")
        assert first.uri == f"s3://{BUCKET}/{first.key}"
        obj = s3.get_object(Bucket=first.bucket, Key=first.key)["Body"].read()
        assert obj == data

        # the same body and headers verify again (and with a rotated secret list)
        body, headers = raw[0]
        assert mjflow.verify_event(body, headers, SECRET).job_id == job.id
        other = "whsec_" + base64.b64encode(b"the-new-secret-after-rotation!").decode()
        assert mjflow.verify_event(body, headers, [other, SECRET]).id == event.id

        check_refusals(body, headers, f"{consumer}/hooks/mjflow", len(received))
        assert len(received) == 1


def check_refusals(body: bytes, headers: dict, url: str, count: int) -> None:
    tampered = body.replace(b"succeeded", b"failed", 1)
    with pytest.raises(mjflow.EventVerificationError, match="signature"):
        mjflow.verify_event(tampered, headers, SECRET)
    wrong = "whsec_" + base64.b64encode(b"not-the-secret-not-the-secret").decode()
    with pytest.raises(mjflow.EventVerificationError):
        mjflow.verify_event(body, headers, wrong)
    with pytest.raises(mjflow.EventVerificationError, match="Missing"):
        mjflow.verify_event(body, {}, SECRET)
    with pytest.raises(mjflow.EventVerificationError, match="malformed"):
        mjflow.verify_event(body, headers | {"Webhook-Signature": "garbage"}, SECRET)
    with pytest.raises(mjflow.InvalidSecret):
        mjflow.verify_event(body, headers, "")
    signer = Webhook(SECRET)
    old = time.time() - 3600
    stale = {"webhook-id": "msg_x", "webhook-timestamp": str(int(old)),
             "webhook-signature": signer.sign("msg_x", datetime.fromtimestamp(old, UTC),
                                              body.decode())}
    with pytest.raises(mjflow.EventVerificationError, match="too old"):
        mjflow.verify_event(body, stale, SECRET)
    not_ours = json.dumps({"hello": "world"})
    now = datetime.now(UTC)
    signed = {"webhook-id": "msg_y", "webhook-timestamp": str(int(now.timestamp())),
              "webhook-signature": signer.sign("msg_y", now, not_ours)}
    with pytest.raises(mjflow.EventVerificationError, match="not an mjflow event"):
        mjflow.verify_event(not_ours, signed, SECRET)
    # the blueprint answers 400 to a tampered event and does not call the handler
    resp = requests.post(url, data=tampered, headers=headers, timeout=5)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_event"
