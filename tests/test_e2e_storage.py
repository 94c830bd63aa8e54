"""Images into a real S3 API (moto server in a subprocess) through the whole system, an S3
outage that loses nothing, the manifest beside the images, and one signed event at a
consumer that verifies it with the standardwebhooks library."""
from __future__ import annotations

import time

import boto3
import requests

from tests.support.s3 import MotoServer, make_bucket
from tests.support.stack import Stack
from tests.support.tcpproxy import TcpProxy
from worker.dev.consumer import Consumer
from worker.dev.localnet import free_port

SECRET = "whsec_" + "c2VjcmV0LWZvci1lMmUtc3RvcmFnZS10ZXN0cw=="
BUCKET = "e2e-bucket"


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def test_s3_outage_then_five_images_manifest_and_one_signed_event():
    port, moto_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{port}"          # the S3 endpoint the workers use: a proxy
    moto = MotoServer(moto_port)
    make_bucket(moto.start(), BUCKET)
    proxy = TcpProxy(port, moto_port)             # not started: S3 is down
    env = {"AWS_ENDPOINT_URL": endpoint, "MJFLOW_STORAGE_URL": f"s3://{BUCKET}/images",
           "MJFLOW_WEBHOOK_SECRET": SECRET, "MJFLOW_REDRIVE_S": "2"}
    with Consumer(SECRET) as consumer, Stack(speed=100, env_extra=env) as stack:
        try:
            job_id = stack.submit({"prompt": "a lighthouse — 灯塔", "then": ["U1", "U2", "U3", "U4"],
                                   "callbackUrl": consumer.url, "metadata": {"sku": "A-113"}})["id"]
            deadline = time.monotonic() + 30          # S3 is down: the root waits in storing
            while stack.job(job_id)["steps"][0]["status"] != "storing":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            time.sleep(3)
            view = stack.job(job_id)
            assert not any(s["status"] == "failed" for s in view["steps"])
            assert stack.counters("storage").get("retryable_failures", 0) >= 1
            proxy.start()                              # S3 comes back
            view = stack.wait_jobs([job_id], timeout_s=60)[0]
            assert view["status"] == "succeeded", [(s["label"], s["status"], s["failReason"]) for s in view["steps"]]
            deadline = time.monotonic() + 20          # the manifest follows the last step
            while not stack.job(job_id)["manifest"]:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            s3 = s3_client(endpoint)
            keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
            images = [i for s in view["steps"] for i in s["images"]]
            assert len(images) == 5 and len(keys) == 11         # 5 images, 5 thumbnails, manifest
            assert f"images/{job_id}/manifest.json" in keys
            for img in images:
                assert img["key"].startswith("images/")      # the real key, prefix included
                head = s3.head_object(Bucket=BUCKET, Key=img["key"])
                assert head["Metadata"]["sha256"] == img["sha256"]
                assert head["Metadata"]["job-id"] == job_id
                assert head["ContentLength"] == img["bytes"]
            manifest = s3.get_object(Bucket=BUCKET, Key=f"images/{job_id}/manifest.json")["Body"].read()
            assert b"A-113" in manifest and images[0]["sha256"].encode() in manifest
            deadline = time.monotonic() + 20
            while not consumer.events and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1)
            assert len(consumer.events) == 1 and consumer.rejected == 0
            event = consumer.events[0]["event"]
            assert event["type"] == "job.succeeded" and event["data"]["jobId"] == job_id
            assert event["data"]["metadata"] == {"sku": "A-113"}
            assert sorted(event["data"]["images"]) == sorted(i["key"] for i in images)
            log = stack.job(job_id)["deliveries"]
            assert log and log[0]["state"] == "delivered"
            resp = requests.post(f"{stack.web_url}/v1/jobs/{job_id}/deliveries/replay",
                                 headers=stack.headers, timeout=10)     # replay: same webhook-id
            assert resp.status_code == 200
            deadline = time.monotonic() + 20
            while len(consumer.events) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert [e["msg_id"] for e in consumer.events] == [consumer.events[0]["msg_id"]] * 2
        finally:
            proxy.stop()
            moto.close()
