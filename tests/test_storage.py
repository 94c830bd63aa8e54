"""Image storage through real parts: a loopback HTTP image server, moto's S3 API as a
separate process (tests/support/s3.py), and the file sink on a temporary directory.

No mocks of mjflow's own code: what is refused is refused by the real guard on real
sockets, what is stored is read back over the S3 API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image

from tests.support.s3 import (
    TEST_AWS_ENV,
    MotoServer,
    free_port,
    make_bucket,
    moto_server,
    s3_client,
)
from worker.errors import (
    ImageRejected,
    PermanentError,
    RetryableError,
    SourceExpired,
    StorageUnavailable,
    UnsafeURL,
)
from worker.settings import load_settings
from worker.storage import (
    DownloadUnavailable,
    FileSink,
    S3Sink,
    SourceGone,
    StorageRejected,
    StoreRequest,
    build_manifest,
    check_url,
    download_image,
    guarded_get,
    sink_from_url,
    store_step_images,
    write_manifest,
)
from worker.storage.grid import quarter_boxes
from worker.storage.thumbs import THUMB_MAX_PIXELS, make_thumbnail

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRID_SIZE = (256, 192)
PROMPT = "灯台 at dawn — 100% café ✨ --ar 4:3"


# --- a loopback image server --------------------------------------------------------------


def make_grid_png(width: int, height: int) -> bytes:
    """A 2×2 grid: four differently coloured, differently patterned quarters."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            quarter = (x >= width // 2) + 2 * (y >= height // 2)
            pixels[x, y] = ((60 * quarter + x) % 256, (y * 3 + quarter * 40) % 256, (x ^ y) % 256)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class ImageServer:
    """A threaded HTTP server on 127.0.0.1 with one route per behaviour under test."""

    def __init__(self) -> None:
        self.grid_png = make_grid_png(*GRID_SIZE)
        jpeg = io.BytesIO()
        Image.new("RGB", (64, 48), "teal").save(jpeg, format="JPEG")
        self.jpeg = jpeg.getvalue()
        self.hits: Counter[str] = Counter()
        self.seen_headers: dict[str, dict[str, str]] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                server.hits[parts.path] += 1
                server.seen_headers[parts.path] = dict(self.headers.items())
                try:
                    self._route(parts.path, parse_qs(parts.query))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: that is what several tests want

            def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def _route(self, path: str, query: dict[str, list[str]]) -> None:
                if path == "/grid.png":
                    self._send(200, server.grid_png, "image/png")
                elif path == "/photo.jpg":
                    self._send(200, server.jpeg, "image/jpeg")
                elif path == "/page.html":
                    self._send(
                        200, b"<!DOCTYPE html><html><body>Access denied</body></html>", "text/html"
                    )
                elif path == "/mislabelled.png":
                    self._send(200, b"<html>" + b" " * 5000, "image/png")
                elif path == "/truncated.png":
                    self._send(200, server.grid_png[: len(server.grid_png) // 2], "image/png")
                elif path == "/huge-declared":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(10**9))
                    self.end_headers()
                    self.wfile.write(PNG_MAGIC)
                elif path == "/endless":  # close-delimited (HTTP/1.0), never ends by itself
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    self.wfile.write(PNG_MAGIC)
                    block = b"\0" * 65536
                    for _ in range(10_000):
                        self.wfile.write(block)
                elif path == "/slow":  # a byte every 50 ms: each read is quick, the whole is not
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(PNG_MAGIC + b"\0" * 8)
                    for _ in range(400):
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                        time.sleep(0.05)
                elif path.startswith("/status/"):
                    self._send(int(path.rsplit("/", 1)[1]), b"no", "text/plain")
                elif path in ("/redirect", "/loop"):
                    self.send_response(302)
                    self.send_header("Location", query["to"][0] if path == "/redirect" else "/loop")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path.startswith("/expiring/"):
                    if path.rsplit("/", 1)[1].startswith("fresh"):
                        self._send(200, server.grid_png, "image/png")
                    else:
                        self._send(403, b"This URL has expired", "text/plain")
                else:
                    self._send(404, b"not found", "text/plain")

        return Handler


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.close()


# --- S3 and settings ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto server for the module; boto3 clients find it through AWS_ENDPOINT_URL."""
    names = [*TEST_AWS_ENV, "AWS_ENDPOINT_URL"]
    saved = {name: os.environ.get(name) for name in names}
    with moto_server() as endpoint:
        os.environ.update(TEST_AWS_ENV)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        try:
            yield endpoint
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"mjflow-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_endpoint, name)
    return name


@pytest.fixture
def raw_s3(s3_endpoint: str) -> Any:
    return s3_client(s3_endpoint)


@pytest.fixture
def s3_sink(s3_endpoint: str, bucket: str) -> S3Sink:
    return S3Sink(bucket, "images")  # default client: endpoint and credentials from the env


@pytest.fixture
def settings(tmp_path: Any) -> Any:
    return load_settings(
        allow_private_urls=True, download_timeout_s=5.0, storage_url=f"file://{tmp_path}/images"
    )


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def request_for(
    url: str | None,
    *,
    split: bool = False,
    label: str = "IMAGINE",
    refresh: Any = lambda: None,
    job_id: str = "job-1",
    step_index: int = 0,
) -> StoreRequest:
    return StoreRequest(
        job_id=job_id,
        step_index=step_index,
        label=label,
        task_id="1712345678901234",
        prompt=PROMPT,
        image_url=url,
        split_grid=split,
        refresh_url=refresh,
        headers={"User-Agent": "mjflow-test"},
    )


# --- storing into S3 ----------------------------------------------------------------------


def test_store_puts_image_under_template_key_with_metadata_and_checksum(
    images: ImageServer,
    s3_sink: S3Sink,
    raw_s3: Any,
    bucket: str,
    session: requests.Session,
    settings: Any,
) -> None:
    [stored] = store_step_images(
        s3_sink, session, request_for(images.url("/grid.png")), settings=settings
    )

    expected_sha = hashlib.sha256(images.grid_png).hexdigest()
    assert stored.key == "job-1/00-IMAGINE.png"             # in the sink (below its prefix)
    record = stored.to_dict()
    thumb = record.pop("thumbnail")
    assert record == {                                         # where it really is
        "sink": "s3",
        "key": "images/job-1/00-IMAGINE.png",
        "bucket": bucket,
        "path": None,
        "uri": f"s3://{bucket}/images/job-1/00-IMAGINE.png",
        "endpoint": s3_sink.client.meta.endpoint_url,
        "sha256": expected_sha,
        "bytes": len(images.grid_png),
        "width": 256,
        "height": 192,
        "contentType": "image/png",
        "part": "",
    }
    assert thumb["key"] == "images/job-1/00-IMAGINE.thumb.jpg" and thumb["bucket"] == bucket
    assert (thumb["width"], thumb["height"], thumb["contentType"]) == (256, 192, "image/jpeg")
    small = raw_s3.get_object(Bucket=bucket, Key=thumb["key"])["Body"].read()
    assert Image.open(io.BytesIO(small)).format == "JPEG" and len(small) == thumb["bytes"]
    head = raw_s3.head_object(
        Bucket=bucket, Key="images/job-1/00-IMAGINE.png", ChecksumMode="ENABLED"
    )
    assert head["ContentType"] == "image/png"
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(expected_sha)).decode()
    meta = head["Metadata"]
    assert meta["job-id"] == "job-1"
    assert meta["task-id"] == "1712345678901234"
    assert meta["sha256"] == expected_sha
    assert meta["step"] == "0" and meta["label"] == "IMAGINE"
    assert all(ord(ch) < 128 for value in meta.values() for ch in value)  # S3 needs ASCII
    assert s3_sink.head(stored.key)["metadata"]["prompt"] == PROMPT  # decoded back
    body = raw_s3.get_object(Bucket=bucket, Key="images/job-1/00-IMAGINE.png")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == expected_sha


def test_store_is_idempotent(
    images: ImageServer,
    s3_sink: S3Sink,
    raw_s3: Any,
    bucket: str,
    session: requests.Session,
    settings: Any,
) -> None:
    req = request_for(images.url("/grid.png"), split=True, label="Upscale (Subtle)", step_index=3)
    first = store_step_images(s3_sink, session, req, settings=settings)
    listed = raw_s3.list_objects_v2(Bucket=bucket)["Contents"]
    second = store_step_images(s3_sink, session, req, settings=settings)

    assert [s.to_dict() for s in first] == [s.to_dict() for s in second]
    assert [s.key for s in first] == [
        "job-1/03-upscale-subtle.png",
        *(f"job-1/03-upscale-subtle-q{i}.png" for i in range(1, 5)),
    ]
    again = raw_s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert len(again) == len(listed) == 10                     # 5 images, 5 thumbnails
    assert {o["Key"]: o["ETag"] for o in again} == {o["Key"]: o["ETag"] for o in listed}
    assert {o["Key"]: o["LastModified"] for o in again} == {
        o["Key"]: o["LastModified"] for o in listed
    }


def test_grid_split_stores_four_quarters(
    images: ImageServer, s3_sink: S3Sink, session: requests.Session, settings: Any
) -> None:
    stored = store_step_images(
        s3_sink, session, request_for(images.url("/grid.png"), split=True), settings=settings
    )

    assert [s.part for s in stored] == ["", "q1", "q2", "q3", "q4"]
    grid = Image.open(io.BytesIO(images.grid_png))
    for part, box in zip(stored[1:], quarter_boxes(*GRID_SIZE), strict=True):
        data = s3_sink.get_bytes(part.key)
        assert hashlib.sha256(data).hexdigest() == part.sha256 and len(data) == part.bytes
        quarter = Image.open(io.BytesIO(data))
        assert quarter.format == "PNG" and quarter.size == (128, 96) == (part.width, part.height)
        assert quarter.tobytes() == grid.crop(box).tobytes()
        assert s3_sink.head(part.key)["metadata"]["part"] == part.part


def test_manifest_is_written_and_readable(
    images: ImageServer, s3_sink: S3Sink, session: requests.Session, settings: Any
) -> None:
    stored = store_step_images(
        s3_sink, session, request_for(images.url("/grid.png")), settings=settings
    )
    job = {
        "id": "job-1",
        "status": "succeeded",
        "batch": None,
        "metadata": {"sku": "A-113"},
        "spec": {"action": "IMAGINE", "prompt": PROMPT},
        "createdAt": "2025-01-01T00:00:00Z",
        "finishedAt": "2025-01-01T00:01:00Z",
    }
    steps = [
        {
            "id": "s0",
            "parent": None,
            "label": "IMAGINE",
            "action": "IMAGINE",
            "status": "succeeded",
            "progress": "100%",
            "taskId": "1712345678901234",
            "failReason": None,
            "images": [dict(s.to_dict(), url="u") for s in stored],
        }
    ]

    where = write_manifest(s3_sink, "job-1", build_manifest(job, steps))

    key = where["sinkKey"]
    assert key == "job-1/manifest.json" and where["key"] == "images/job-1/manifest.json"
    manifest = json.loads(s3_sink.get_bytes(key))
    assert manifest["spec"]["prompt"] == PROMPT
    assert manifest["steps"][0]["taskId"] == "1712345678901234"
    assert manifest["steps"][0]["images"][0]["sha256"] == stored[0].sha256
    assert manifest["steps"][0]["submittedAt"] is None  # absent fields are explicit nulls
    assert s3_sink.head(key)["contentType"] == "application/json"
    assert s3_sink.list("job-1/") == ["job-1/00-IMAGINE.png", "job-1/00-IMAGINE.thumb.jpg",
                                      "job-1/manifest.json"]


def test_presigned_url_is_downloadable(
    images: ImageServer, s3_sink: S3Sink, session: requests.Session, settings: Any
) -> None:
    [stored] = store_step_images(
        s3_sink, session, request_for(images.url("/grid.png")), settings=settings
    )
    url = s3_sink.url(stored.key, settings.presign_ttl_s)

    assert "X-Amz-Signature=" in url
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == stored.sha256


def test_expired_url_is_refreshed_once_then_stored(
    images: ImageServer, s3_sink: S3Sink, session: requests.Session, settings: Any
) -> None:
    calls: list[int] = []

    def refresh() -> str:
        calls.append(1)
        return images.url("/expiring/fresh-1.png")

    stored = store_step_images(
        s3_sink,
        session,
        request_for(images.url("/expiring/old.png"), refresh=refresh),
        settings=settings,
    )

    assert len(calls) == 1
    assert stored[0].sha256 == hashlib.sha256(images.grid_png).hexdigest()


def test_expired_url_that_refresh_cannot_fix_fails_permanently(
    images: ImageServer, s3_sink: S3Sink, session: requests.Session, settings: Any
) -> None:
    calls: list[int] = []

    def refresh() -> str:
        calls.append(1)
        return images.url("/expiring/still-old.png")

    with pytest.raises(SourceGone, match="expired and refresh did not help") as caught:
        store_step_images(
            s3_sink,
            session,
            request_for(images.url("/expiring/old.png"), refresh=refresh),
            settings=settings,
        )
    assert len(calls) == 1
    assert isinstance(caught.value, PermanentError) and isinstance(caught.value, ImageRejected)
    assert s3_sink.list() == []


def test_missing_bucket_is_a_permanent_error(
    images: ImageServer, s3_endpoint: str, session: requests.Session, settings: Any
) -> None:
    sink = S3Sink("mjflow-no-such-bucket", "images")
    with pytest.raises(StorageRejected, match="NoSuchBucket") as caught:
        store_step_images(sink, session, request_for(images.url("/grid.png")), settings=settings)
    assert isinstance(caught.value, PermanentError)


def test_s3_outage_is_retryable_and_the_retry_lands_once(
    images: ImageServer, session: requests.Session, settings: Any
) -> None:
    server = MotoServer(free_port())
    try:
        server.start()
        make_bucket(server.url, "mjflow-outage")
        sink = S3Sink(
            "mjflow-outage", "out", client=s3_client(server.url, max_attempts=2, timeout_s=2.0)
        )
        req = request_for(images.url("/grid.png"), split=True)
        server.stop()

        with pytest.raises(StorageUnavailable) as caught:
            store_step_images(sink, session, req, settings=settings)
        assert isinstance(caught.value, RetryableError)

        server.start()  # same port; moto lost its state, so the bucket comes back empty
        make_bucket(server.url, "mjflow-outage")
        first = store_step_images(sink, session, req, settings=settings)
        second = store_step_images(sink, session, req, settings=settings)

        keys = [
            o["Key"]
            for o in s3_client(server.url).list_objects_v2(Bucket="mjflow-outage")["Contents"]
        ]
        assert sorted(k for k in keys if ".thumb." not in k) == sorted(
            f"out/{s.key}" for s in first) and len(keys) == 10
        assert [s.to_dict() for s in first] == [s.to_dict() for s in second]
    finally:
        server.close()


def test_sink_from_url_builds_each_sink(
    s3_endpoint: str, bucket: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = sink_from_url(f"s3://{bucket}/some/prefix/")
    assert isinstance(sink, S3Sink) and sink.prefix == "some/prefix"
    assert s3_endpoint in sink.describe()
    sink.put_json("x/manifest.json", {"ok": True})
    assert sink.location("x/manifest.json") == f"s3://{bucket}/some/prefix/x/manifest.json"
    assert json.loads(sink.get_bytes("x/manifest.json")) == {"ok": True}

    absolute = sink_from_url(f"file://{tmp_path}/abs")
    assert isinstance(absolute, FileSink) and absolute.root == tmp_path / "abs"
    monkeypatch.chdir(tmp_path)
    relative = sink_from_url("file://./data/images")
    assert isinstance(relative, FileSink) and relative.root == tmp_path / "data" / "images"
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        sink_from_url("ftp://host/x")


# --- the file sink ------------------------------------------------------------------------


def test_file_sink_stores_atomically_and_idempotently(
    images: ImageServer, tmp_path: Any, session: requests.Session, settings: Any
) -> None:
    sink = FileSink(tmp_path / "store")
    req = request_for(images.url("/grid.png"), split=True, label="🔄")
    first = store_step_images(sink, session, req, settings=settings)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")}
    second = store_step_images(sink, session, req, settings=settings)

    assert [s.to_dict() for s in first] == [s.to_dict() for s in second]
    assert first[0].key == "job-1/00-reroll.png"
    assert sink.list() == sorted([s.key for s in first] + [
        s.key.rsplit(".", 1)[0] + ".thumb.jpg" for s in first])
    assert first[0].to_dict()["path"] == str(tmp_path / "store" / first[0].key)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")} == mtimes
    assert not [p for p in (tmp_path / "store").rglob(".*")]  # no temporary files left
    head = sink.head(first[0].key)
    assert head["sha256"] == first[0].sha256 and head["size"] == first[0].bytes
    assert (
        head["metadata"]["prompt"] == PROMPT and head["metadata"]["task-id"] == "1712345678901234"
    )
    url = sink.url(first[1].key, 60)
    assert url.startswith("file://")
    with open(urlsplit(url).path, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == first[1].sha256
    key = write_manifest(sink, "job-1", build_manifest({"id": "job-1"}, []))["sinkKey"]
    assert json.loads(sink.get_bytes(key))["id"] == "job-1"
    for bad in ("../escape.png", "/abs.png", "a/../../b.png", "a\\b.png"):
        with pytest.raises(ValueError):
            sink.put(bad, io.BytesIO(b"x"), content_type="text/plain", metadata={}, sha256_hex="0")


# --- the download and its guard -----------------------------------------------------------


def fetch(session: requests.Session, url: str, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"max_bytes": 1024 * 1024, "timeout_s": 5.0, "allow_private": True}
    options.update(kwargs)
    return download_image(session, url, **options)


def test_download_reads_format_and_size(images: ImageServer, session: requests.Session) -> None:
    with fetch(session, images.url("/photo.jpg")) as image:
        assert (image.format, image.width, image.height) == ("JPEG", 64, 48)
        assert (image.content_type, image.ext, image.bytes) == (
            "image/jpeg",
            "jpg",
            len(images.jpeg),
        )
        assert image.file.read() == images.jpeg


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        "gopher://127.0.0.1:70/_x",
        "http:///nohost",
        "http://127.0.0.1/x.png",
        "http://10.1.2.3/x.png",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://[::1]/x.png",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/x.png",
        "http://2130706433/",
        "http://[fe80::1]/",
    ],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url(url)
    assert "refused URL" in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/", "http://[fd00:ec2::254]/", "http://224.0.0.1/"]
)
def test_metadata_and_multicast_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url, allow_private=True)


def test_allowed_hosts_are_enforced() -> None:
    check_url("http://93.184.216.34/x.png")  # a public literal: no DNS needed
    check_url("http://127.0.0.1/x.png", allowed_hosts=["127.0.0.1"], allow_private=True)
    with pytest.raises(UnsafeURL, match="not in the allowed hosts"):
        check_url("http://93.184.216.34/x.png", allowed_hosts=["cdn.discordapp.com"])
    with pytest.raises(UnsafeURL, match="not in the allowed hosts"):
        check_url("https://evilexample.com/x.png", allowed_hosts=[".example.com"])


def test_loopback_download_refused_without_allow_private(
    images: ImageServer, session: requests.Session
) -> None:
    before = images.hits["/grid.png"]
    with pytest.raises(UnsafeURL, match="loopback"):
        fetch(session, images.url("/grid.png"), allow_private=False)
    assert images.hits["/grid.png"] == before  # refused before any request was sent


def test_redirect_to_metadata_address_is_refused(
    images: ImageServer, session: requests.Session
) -> None:
    target = "http://169.254.169.254/latest/meta-data/iam/"
    with pytest.raises(UnsafeURL, match="metadata"):
        fetch(session, images.url(f"/redirect?to={target}"))


def test_every_redirect_hop_is_checked(images: ImageServer, session: requests.Session) -> None:
    allowed = [f"127.0.0.1:{images.port}"]
    same_host = images.url("/redirect?to=/grid.png")
    with fetch(session, same_host, allowed_hosts=allowed) as image:
        assert image.sha256 == hashlib.sha256(images.grid_png).hexdigest()
    other_host = images.url("/redirect?to=" + images.url("/grid.png", host="localhost"))
    with pytest.raises(UnsafeURL, match=f"'localhost:{images.port}' is not in the allowed hosts"):
        fetch(session, other_host, allowed_hosts=allowed)
    with pytest.raises(UnsafeURL, match="more than 5 redirects"):
        fetch(session, images.url("/loop"))


def test_credentials_are_not_forwarded_across_hosts(
    images: ImageServer, session: requests.Session
) -> None:
    url = images.url("/redirect?to=" + images.url("/photo.jpg", host="localhost"))
    with guarded_get(
        session,
        url,
        allow_private=True,
        timeout_s=5,
        headers={"Authorization": "Bearer secret", "User-Agent": "ua"},
    ) as answer:
        assert answer.status_code == 200
    seen = images.seen_headers["/photo.jpg"]
    assert "Authorization" not in seen and seen["User-Agent"] == "ua"


@pytest.mark.parametrize("path", ["/page.html", "/mislabelled.png"])
def test_html_is_rejected_as_not_an_image(
    images: ImageServer, session: requests.Session, path: str
) -> None:
    with pytest.raises(ImageRejected, match="not an image: an HTML page|not an image: XML/HTML"):
        fetch(session, images.url(path))


def test_truncated_image_is_rejected(images: ImageServer, session: requests.Session) -> None:
    with pytest.raises(ImageRejected, match="not an image: Pillow"):
        fetch(session, images.url("/truncated.png"))


def test_declared_oversize_is_refused_before_the_body(
    images: ImageServer, session: requests.Session
) -> None:
    with pytest.raises(ImageRejected, match="image larger than 64 KB limit"):
        fetch(session, images.url("/huge-declared"), max_bytes=64 * 1024)


def test_endless_body_is_cut_at_the_limit(
    images: ImageServer, session: requests.Session, settings: Any
) -> None:
    started = time.monotonic()
    with pytest.raises(ImageRejected, match="image larger than 64 MB limit"):
        fetch(session, images.url("/endless"), max_bytes=settings.max_image_bytes)
    assert time.monotonic() - started < 15


def test_slow_body_hits_the_total_deadline(images: ImageServer, session: requests.Session) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadUnavailable, match="longer than 1 s") as caught:
        fetch(session, images.url("/slow"), timeout_s=1.0)
    assert time.monotonic() - started < 2.5
    assert isinstance(caught.value, RetryableError)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, SourceExpired),
        (404, SourceExpired),
        (410, SourceExpired),
        (500, DownloadUnavailable),
        (503, DownloadUnavailable),
        (429, DownloadUnavailable),
        (400, ImageRejected),
    ],
)
def test_status_codes_map_to_error_classes(
    images: ImageServer, session: requests.Session, status: int, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"HTTP {status}"):
        fetch(session, images.url(f"/status/{status}"))


def test_unreachable_host_is_retryable(session: requests.Session) -> None:
    with pytest.raises(DownloadUnavailable, match="unreachable"):
        fetch(session, f"http://127.0.0.1:{free_port()}/x.png")


def test_a_large_image_that_decodes_whole_gets_no_thumbnail_a_large_jpeg_does():
    """Above THUMB_MAX_PIXELS a PNG would cost all its pixels to shrink: no thumbnail (pages
    show the full size); a JPEG decodes reduced (draft mode), so it still gets one."""
    side = int(THUMB_MAX_PIXELS ** 0.5) + 8
    for fmt, expected in (("PNG", None), ("JPEG", (320, 320))):
        buf = io.BytesIO()
        Image.new("RGB", (side, side), (200, 120, 40)).save(buf, fmt)
        thumb = make_thumbnail(buf)
        assert (thumb and (thumb.width, thumb.height)) == expected, fmt
        assert buf.tell() == 0
    small = io.BytesIO()
    Image.new("RGB", (2048, 2048), (1, 2, 3)).save(small, "PNG")
    assert make_thumbnail(small).width == 320
