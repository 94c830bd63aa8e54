"""``POST /v1/batches`` bodies are bounded while they are read: 12 MiB of one-letter lines
or a JSON array of millions of tiny items is refused with a 422 after item 10,001, at a
memory cost of megabytes (measured with tracemalloc through the real app), and a body
above the route's limit is a 413 before it is read. The stream readers themselves parse
what the old whole-body parser did, across any chunk boundary."""
from __future__ import annotations

import io
import json
import socket
import tracemalloc
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.web import serve
from webhook import create_app
from webhook.api import MAX_BATCH_BODY_BYTES
from worker import api
from worker.batch_stream import read_json_stream, read_jsonl_stream
from worker.flow.engine import Engine, Inline
from worker.keys import Keys

KEY = "k1"
AUTH = {"Authorization": f"Bearer {KEY}"}
MB = 1 << 20
LINES = b"a\n" * (6 * MB)                       # 12 MiB, six million prompts
ARRAY = b"[" + b"1," * (6 * MB) + b"1]"          # 12 MiB, six million items


@pytest.fixture
def app_engine(rds, make_settings):
    settings = make_settings(api_keys=[KEY])
    engine = Engine(settings, rds, Keys(settings.key_prefix), Inline())
    return create_app(settings, engine), engine


def _post_measured(app, body: bytes, ctype: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    stream = io.BytesIO(body)
    tracemalloc.start()
    try:
        resp = client.post("/v1/batches", input_stream=stream, content_length=len(body),
                           content_type=ctype, headers=AUTH)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return resp, peak


@pytest.mark.parametrize(("body", "ctype"), [
    (LINES, "application/x-ndjson"),
    (ARRAY, "application/json"),
    (b'{"name": "big", "items": ' + ARRAY + b"}", "application/json"),
])
def test_a_huge_batch_is_refused_after_the_limit_without_reading_it_all(app_engine, body, ctype):
    app, engine = app_engine
    resp, peak = _post_measured(app, body, ctype)
    assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
    assert "at most 10000 items per request" in resp.get_json()["message"]
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MiB"
    assert engine.r.zcard(engine.keys.batches()) == 0 and engine.r.zcard(engine.keys.jobs()) == 0


def test_over_http_the_answers_are_a_clear_422_and_413(app_engine):
    app, _engine = app_engine
    with serve(app) as url:
        resp = requests.post(f"{url}/v1/batches", data=LINES, timeout=30,
                             headers=AUTH | {"Content-Type": "application/x-ndjson"})
        assert resp.status_code == 422 and resp.json()["error"] == "invalid_request"
        # a declared length above the route's limit: refused before the body is read
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k1\r\n"
                         b"Content-Type: application/json\r\n"
                         + f"Content-Length: {MAX_BATCH_BODY_BYTES + 1}\r\n\r\n[".encode())
            head = b""
            while chunk := sock.recv(65536):      # the server closes after its answer
                head += chunk
            head = head.decode("latin-1")
        assert head.startswith("HTTP/1.1 413"), head[:200]
        assert "request_entity_too_large" in head


def _chunked(data: bytes, size: int = 7) -> io.BufferedReader:
    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self.left = data

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            n = min(len(b), size, len(self.left))
            b[:n], self.left = self.left[:n], self.left[n:]
            return n

    return io.BufferedReader(Trickle(), buffer_size=size)


def test_the_stream_readers_parse_like_the_whole_body_parser():
    items = [{"prompt": "x" * 200_000}, "plain", 12345678901234567890, 1.5e300, [], {"a": [1, {}]},
             "ünïcödé ✓"]
    body = json.dumps({"name": "n", "then": ["U1"], "items": items}, ensure_ascii=False).encode()
    got = read_json_stream(_chunked(body, 4096), max_items=10, max_value_chars=1 << 20)
    assert got == json.loads(body)
    assert read_json_stream(io.BytesIO(b" [ ] "), max_items=1, max_value_chars=10) == []
    lines = b'{"prompt": "a"}\n\n"b"\r\nplain c\n{bad\n'
    entries, errors = read_jsonl_stream(_chunked(lines), max_items=10, max_line_bytes=100)
    assert entries == [(1, {"prompt": "a"}), (3, "b"), (4, "plain c")]
    assert [e["line"] for e in errors] == [5]


@pytest.mark.parametrize("body", [b"[1,", b"[1 2]", b"[NaN]", b"{\"items\": [1]", b"[1] x",
                                  b"[" * 100_000, b"\xff[1]", b'{"items": [1], }'])
def test_malformed_bodies_are_400_material(body: bytes):
    with pytest.raises(api.SpecError) as caught:
        read_json_stream(io.BytesIO(body), max_items=10, max_value_chars=1 << 20)
    assert caught.value.errors[0]["path"] == "body"


def test_an_item_above_its_bound_is_refused_without_reading_on():
    body = b'["' + b"x" * (4 * MB) + b'"]'
    with pytest.raises(api.SpecError, match="larger than"):
        read_json_stream(io.BytesIO(body), max_items=10, max_value_chars=MB)
    with pytest.raises(api.SpecError, match="longer than"):
        read_jsonl_stream(io.BytesIO(b"y" * (2 * MB)), max_items=10, max_line_bytes=MB)
