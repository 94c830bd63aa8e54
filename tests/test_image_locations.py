"""Where each image is, end to end through a real S3 API (moto server) under a storage
prefix: the job view, the manifest object, the signed event a loopback consumer receives
and the batch report all give the object's real key (prefix included), its bucket and an
``s3://`` URI; after ``MJFLOW_STORAGE_URL`` is switched to files the web app still builds
each image's URL from its record, and an object the store lost is shown as gone."""
from __future__ import annotations

import csv
import io
import json
import time

import requests

from tests.support.s3 import MotoServer, make_bucket, s3_client
from tests.support.stack import Stack
from worker.dev.consumer import Consumer
from worker.dev.localnet import wait_http

SECRET = "whsec_" + "bG9jYXRpb25zLXRlc3Qtc2VjcmV0LWxvY2F0aW9ucw=="
BUCKET = "where-bucket"
PREFIX = "run"


def _wait(fn, timeout_s: float = 30.0, message: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{message} not met in {timeout_s}s")


def test_real_keys_everywhere_and_images_survive_a_storage_switch(tmp_path):
    moto = MotoServer()
    endpoint = moto.start()
    make_bucket(endpoint, BUCKET)
    s3 = s3_client(endpoint)
    env = {"AWS_ENDPOINT_URL": endpoint, "MJFLOW_STORAGE_URL": f"s3://{BUCKET}/{PREFIX}",
           "MJFLOW_WEBHOOK_SECRET": SECRET}
    try:
        with Consumer(SECRET) as consumer, Stack(speed=100, env_extra=env) as stack:
            resp = requests.post(f"{stack.web_url}/v1/batches", headers=stack.headers, timeout=10,
                                 json={"name": "where", "items": [
                                     {"prompt": "a lighthouse", "then": ["U1"], "key": "sku-1",
                                      "callbackUrl": consumer.url}]})
            assert resp.status_code == 202, resp.text
            batch_id = resp.json()["id"]
            job_id = requests.get(f"{stack.web_url}/v1/batches/{batch_id}/report",
                                  headers=stack.headers, timeout=5).json()["items"][0]["jobId"]
            stack.wait_jobs([job_id], timeout_s=60)
            view = _wait(lambda: (v := stack.job(job_id))["manifest"] and v, message="manifest")
            images = [img for s in view["steps"] for img in s["images"]]
            assert [i["key"] for i in images] == [f"{PREFIX}/{job_id}/00-IMAGINE.png",
                                                  f"{PREFIX}/{job_id}/01-U1.png"]
            for img in images:                     # the key a consumer can use as it is
                assert img["bucket"] == BUCKET and img["uri"] == f"s3://{BUCKET}/{img['key']}"
                assert img["available"] is True and img["unavailableReason"] is None
                head = s3.head_object(Bucket=BUCKET, Key=img["key"])
                assert head["Metadata"]["sha256"] == img["sha256"]
                thumb = img["thumbnail"]
                assert thumb["key"] == img["key"].replace(".png", ".thumb.jpg")
                assert s3.head_object(Bucket=BUCKET, Key=thumb["key"])["ContentType"] == "image/jpeg"
            manifest_key = f"{PREFIX}/{job_id}/manifest.json"
            assert view["manifest"] == manifest_key
            assert view["manifestUri"] == f"s3://{BUCKET}/{manifest_key}"
            manifest = json.loads(
                s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
            shown = [i for s in manifest["steps"] for i in s["images"]]
            assert [(i["key"], i["bucket"], i["uri"]) for i in shown] == [
                (i["key"], BUCKET, i["uri"]) for i in images]

            _wait(lambda: consumer.events, message="the signed event")
            data = consumer.events[0]["event"]["data"]
            assert data["images"] == [i["key"] for i in images]
            assert [i["uri"] for s in data["steps"] for i in s["images"]] == [i["uri"] for i in images]

            report = requests.get(f"{stack.web_url}/v1/batches/{batch_id}/report",
                                  headers=stack.headers, timeout=5).json()["items"][0]
            assert report["imageKeys"] == [i["key"] for i in images]
            assert report["imageUris"] == [f"s3://{BUCKET}/{i['key']}" for i in images]
            text = requests.get(f"{stack.web_url}/v1/batches/{batch_id}/report?format=csv",
                                headers=stack.headers, timeout=5).text
            row = next(csv.DictReader(io.StringIO(text)))
            assert row["imageKeys"].split() == report["imageKeys"]
            assert row["imageUris"].split() == report["imageUris"]

            # the web app now stores to files; the job's images are still in S3, except
            # one the store lost (as a rerun of the in-memory local S3 would)
            stack.kill("web")
            stack.env["MJFLOW_STORAGE_URL"] = f"file://{tmp_path}/images"
            stack.env.pop("AWS_ENDPOINT_URL")    # the record carries its endpoint
            stack.start_web()
            wait_http(f"{stack.web_url}/healthz")
            lost = images[1]
            s3.delete_object(Bucket=BUCKET, Key=lost["key"])
            after = [i for s in stack.job(job_id)["steps"] for i in s["images"]]
            assert after[0]["available"] is True and after[0]["url"].startswith(
                f"{endpoint}/{BUCKET}/{PREFIX}/{job_id}/")
            body = requests.get(after[0]["url"], timeout=5)
            assert body.status_code == 200 and len(body.content) == after[0]["bytes"]
            assert after[1]["available"] is False
            gone = f"stored in s3://{BUCKET}/{lost['key']} which no longer has it"
            assert after[1]["unavailableReason"] == gone

            page = requests.get(f"{stack.web_url}/jobs/{job_id}", headers=stack.headers, timeout=5)
            assert gone in page.text and f'data-key="{lost["key"]}"' in page.text
            assert f"/media/{lost['key']}?job=" not in page.text          # no broken picture
            assert endpoint in page.headers["Content-Security-Policy"]   # redirects allowed
            media = requests.get(f"{stack.web_url}/media/{images[0]['key']}?job={job_id}&thumb=1",
                                 headers=stack.headers, timeout=5, allow_redirects=False)
            assert media.status_code == 302
            assert media.headers["Location"].startswith(f"{endpoint}/{BUCKET}/{PREFIX}/{job_id}/")
            assert ".thumb.jpg" in media.headers["Location"]
            small = requests.get(media.headers["Location"], timeout=5)
            assert small.status_code == 200 and small.headers["Content-Type"] == "image/jpeg"
    finally:
        moto.close()
