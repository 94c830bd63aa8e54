"""UpstreamClient against real HTTP servers on loopback (requests is never mocked).

Two servers:

- ``shape``: a tiny ``http.server`` that answers whatever a test scripts (HTML pages,
  truncated JSON, 204, wrong types, 5xx then 200, redirects) and records every request;
- ``simulator.server``: the fake midjourney-proxy upstream, one per profile, with its
  fault knobs driven through its admin API (``PUT /_sim/faults``, ``GET /_sim/stats``).
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.support.recorder import Recorder
from worker.dev.localnet import free_port
from worker.errors import BadUpstreamAnswer, InvalidSpec, UpstreamUnavailable
from worker.upstream import (
    PROFILES,
    Outcome,
    Task,
    UpstreamAuthFailed,
    UpstreamClient,
    UpstreamOutOfCredit,
    UpstreamRetryLater,
)

O = Outcome
KEY = "sk-test-secret-0123456789"
FAST = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05}  # quick retries in tests


# =========================================================================================
# A scriptable loopback server for answer shapes
# =========================================================================================

@dataclasses.dataclass
class Scripted:
    status: int = 200
    body: bytes | str | dict | list | None = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ShapeServer:
    """Answers scripted responses per (method, path); the last one of a list repeats."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[Scripted]] = {}
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                path = self.path.split("?", 1)[0]
                outer.seen.append(Seen(self.command, path, dict(self.headers), body))
                queue = outer.script.get((self.command, path)) or [Scripted(404, b"", None)]
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                payload = answer.body
                if isinstance(payload, (dict, list)):
                    payload = json.dumps(payload, ensure_ascii=False)
                data = payload.encode() if isinstance(payload, str) else (payload or b"")
                self.send_response(answer.status)
                if answer.content_type:
                    self.send_header("Content-Type", answer.content_type)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.status != 204:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if answer.status != 204:
                    self.wfile.write(data)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, *answers: Scripted) -> None:
        self.script[(method, path)] = list(answers)

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if s.method == method and s.path == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def shape() -> Iterator[ShapeServer]:
    server = ShapeServer()
    yield server
    server.stop()


def client_for(url: str, profile: str = "midjourney-proxy", key: str = KEY,
               **kwargs: Any) -> UpstreamClient:
    return UpstreamClient(url, key, profile, **{**FAST, **kwargs})


TASK = {"id": "1712345678901234", "action": "IMAGINE", "status": "SUCCESS",
        "progress": "100%", "imageUrl": "https://cdn.discordapp.com/attachments/1/2/a.png",
        "buttons": None, "properties": None, "submitTime": 0}


# --- submits: shapes -------------------------------------------------------------------------

SUBMIT = "/mj/submit/imagine"


@pytest.mark.parametrize("answer,expected", [
    (Scripted(200, {"code": 1, "description": "提交成功", "result": 1320098173412546}),
     O.ACCEPTED),
    (Scripted(200, '{"code": "22", "description": "排队中", "result": "7", '
                   '"properties": {"numberOfQueues": "4"}}'), O.ACCEPTED),
    (Scripted(502, "<html><head><title>502 Bad Gateway</title></head></html>", "text/html"),
     O.RETRY_LATER),
    (Scripted(200, '{"code": 1, "description": "提交成功", "result": "171'), O.OUTCOME_UNKNOWN),
    (Scripted(200, b"", None), O.OUTCOME_UNKNOWN),
    (Scripted(204, None, None), O.OUTCOME_UNKNOWN),
    (Scripted(200, "<!doctype html><title>New API</title>", "text/html"), O.REJECTED),
    (Scripted(200, [1, 2, 3]), O.OUTCOME_UNKNOWN),
    (Scripted(429, {"error": {"message": "slow down", "type": "one_hub_error"}},
              headers={"Retry-After": "3"}), O.RETRY_LATER),
    (Scripted(401, {"error": {"message": "无效的令牌", "type": "new_api_error", "code": ""}}),
     O.AUTH_FAILED),
    (Scripted(302, b"", None, headers={"Location": "https://elsewhere.example/mj"}),
     O.REJECTED),
], ids=["number-result", "string-code", "html-502", "truncated", "empty-200", "204",
        "html-200", "json-list", "429", "openai-401", "redirect"])
def test_submit_shapes_are_classified(shape: ShapeServer, answer: Scripted,
                                      expected: Outcome) -> None:
    shape.on("POST", SUBMIT, answer)
    result = client_for(shape.url).imagine("a cat")
    assert result.outcome is expected, result.message
    assert shape.count("POST", SUBMIT) == 1  # a submit is never repeated
    if expected is O.ACCEPTED:
        assert isinstance(result.task_id, str)
    if answer.status == 429:
        assert result.retry_after_s == 3.0


def test_submit_headers_body_and_mode(shape: ShapeServer) -> None:
    shape.on("POST", SUBMIT, Scripted(200, {"code": 1, "result": "1"}))
    client = UpstreamClient(shape.url, KEY, "midjourney-proxy", "relax")
    client.imagine("a cat", state="job-1:0", notify_hook="https://me.example/hook")
    client.imagine("a dog", modes=["TURBO"], account_filter={"remix": True})
    first, second = shape.seen[0], shape.seen[1]
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert first.headers["mj-api-secret"] == KEY
    assert first.headers["User-Agent"].startswith("mjflow/")
    assert first.body == {"prompt": "a cat", "state": "job-1:0",
                          "notifyHook": "https://me.example/hook",
                          "accountFilter": {"modes": ["RELAX"]}}
    assert second.body == {"prompt": "a dog", "accountFilter": {"remix": True, "modes": ["TURBO"]}}


def test_action_has_no_account_filter_and_none_is_omitted(shape: ShapeServer) -> None:
    shape.on("POST", "/mj/submit/action", Scripted(200, {"code": 1, "result": "2"}))
    client = UpstreamClient(shape.url, KEY, "midjourney-proxy", "FAST")
    client.action("1", "MJ::JOB::upsample::1::abc")
    assert shape.seen[0].body == {"taskId": "1", "customId": "MJ::JOB::upsample::1::abc"}


def test_path_prefix_mode(shape: ShapeServer) -> None:
    shape.on("POST", "/mj-relax/mj/submit/imagine", Scripted(200, {"code": 1, "result": "3"}))
    shape.on("POST", "/mj-turbo/mj/submit/action", Scripted(200, {"code": 1, "result": "4"}))
    client = UpstreamClient(shape.url, KEY, "uniapi", "RELAX")
    assert client.imagine("a cat").task_id == "3"
    assert "accountFilter" not in shape.seen[0].body
    assert client.submit("action", {"taskId": "3", "customId": "x"}, modes=["TURBO"]).task_id == "4"


def test_trueai_sends_the_raw_key_as_authorization(shape: ShapeServer) -> None:
    """trueai compares the raw ``Authorization`` value with the user token."""
    shape.on("POST", SUBMIT, Scripted(200, {"code": 1, "result": "1"}))
    client_for(shape.url, "trueai").imagine("a cat")
    assert shape.seen[0].headers["Authorization"] == KEY
    assert shape.seen[0].headers["mj-api-secret"] == KEY


def test_submit_paths_table(shape: ShapeServer) -> None:
    shape.on("POST", "/mj/insight-face/swap", Scripted(200, {"code": 1, "result": "9"}))
    client = client_for(shape.url)
    assert client.submit("swap-face", {"sourceBase64": "a", "targetBase64": "b"}).task_id == "9"
    assert client.submit("/mj/insight-face/swap", {"sourceBase64": "a"}).task_id == "9"
    with pytest.raises(InvalidSpec):
        client.submit("teleport", {})


def test_local_validation_refuses_without_sending(shape: ShapeServer) -> None:
    client = client_for(shape.url)
    assert client.blend(["data:image/png;base64,AA=="]).outcome is O.REJECTED
    assert client.imagine("  ").outcome is O.REJECTED
    assert client.describe().outcome is O.REJECTED
    assert client.change("1", "UPSCALE").outcome is O.REJECTED
    assert shape.seen == []


def test_hung_submit_is_outcome_unknown(shape: ShapeServer) -> None:
    shape.on("POST", SUBMIT, Scripted(200, {"code": 1, "result": "1"}, delay_s=1.0))
    answer = client_for(shape.url, submit_timeout_s=0.2).imagine("a cat")
    assert answer.outcome is O.OUTCOME_UNKNOWN
    assert "may or may not" in answer.message
    assert shape.count("POST", SUBMIT) == 1


def test_connection_refused_submit_is_retry_later() -> None:
    port = free_port()                      # nothing listens there
    answer = client_for(f"http://127.0.0.1:{port}").imagine("a cat")
    assert answer.outcome is O.RETRY_LATER
    assert "nothing was submitted" in answer.message
    with pytest.raises(UpstreamRetryLater) as info:
        client_for(f"http://127.0.0.1:{port}").fetch("1")
    assert info.value.attempts == 3


# --- queries: shapes -------------------------------------------------------------------------

FETCH = "/mj/task/1712345678901234/fetch"


@pytest.mark.parametrize("answer", [
    Scripted(200, b"", None), Scripted(204, None, None), Scripted(200, "null"),
    Scripted(404, "<html><title>404</title></html>", "text/html"),
    Scripted(400, {"description": "task_no_found ", "type": "upstream_error", "code": 4}),
], ids=["empty-200", "204", "null", "404", "task_no_found"])
def test_fetch_unknown_is_none(shape: ShapeServer, answer: Scripted) -> None:
    shape.on("GET", FETCH, answer)
    assert client_for(shape.url).fetch("1712345678901234") is None


def test_fetch_tolerates_real_shapes(shape: ShapeServer) -> None:
    shape.on("GET", FETCH, Scripted(200, {**TASK, "id": 1712345678901234}))
    task = client_for(shape.url).fetch("1712345678901234")
    assert isinstance(task, Task) and task.id == "1712345678901234"
    assert task.buttons == [] and task.properties == {} and task.submitTime is None


@pytest.mark.parametrize("answer,error", [
    (Scripted(200, "<html><body>Cloudflare</body></html>", "text/html"), BadUpstreamAnswer),
    (Scripted(200, '{"id": "1712345678901234", "status": "SUCC'), BadUpstreamAnswer),
    (Scripted(200, [TASK]), BadUpstreamAnswer),
    (Scripted(200, '"1712345678901234"'), BadUpstreamAnswer),
    (Scripted(401, b"", None), UpstreamAuthFailed),
    (Scripted(403, "error code: 1010", "text/plain"), UpstreamAuthFailed),
    (Scripted(400, {"description": "quota_not_enough ", "code": 4}), UpstreamOutOfCredit),
    (Scripted(500, "<html><title>500</title></html>", "text/html"), UpstreamRetryLater),
], ids=["html", "truncated", "list", "string", "401", "1010", "quota", "500"])
def test_fetch_bad_answers_raise(shape: ShapeServer, answer: Scripted,
                                 error: type[Exception]) -> None:
    shape.on("GET", FETCH, answer)
    with pytest.raises(error) as info:
        client_for(shape.url).fetch("1712345678901234")
    assert "fetch" in str(info.value)


def test_fetch_retries_5xx_then_succeeds(shape: ShapeServer) -> None:
    shape.on("GET", FETCH, Scripted(502, "<html>bad gateway</html>", "text/html"),
             Scripted(503, b"", None), Scripted(200, TASK))
    task = client_for(shape.url).fetch("1712345678901234")
    assert task is not None and task.status == "SUCCESS"
    assert shape.count("GET", FETCH) == 3


def test_fetch_retry_is_capped(shape: ShapeServer) -> None:
    shape.on("GET", FETCH, Scripted(500, b"", None))
    with pytest.raises(UpstreamRetryLater) as info:
        client_for(shape.url, query_attempts=4).fetch("1712345678901234")
    assert isinstance(info.value, UpstreamUnavailable)
    assert shape.count("GET", FETCH) == 4


def test_long_retry_after_is_not_slept(shape: ShapeServer) -> None:
    shape.on("GET", FETCH, Scripted(429, b"", None, headers={"Retry-After": "120"}))
    started = time.monotonic()
    with pytest.raises(UpstreamRetryLater) as info:
        client_for(shape.url).fetch("1712345678901234")
    assert time.monotonic() - started < 2
    assert info.value.retry_after_s == 120.0
    assert shape.count("GET", FETCH) == 1


def test_fetch_read_timeout_is_retried(shape: ShapeServer) -> None:
    shape.on("GET", FETCH, Scripted(200, TASK, delay_s=0.5), Scripted(200, TASK))
    task = client_for(shape.url, timeout_s=0.2).fetch("1712345678901234")
    assert task is not None
    assert shape.count("GET", FETCH) == 2


def test_list_by_condition_chunks_and_skips_junk(shape: ShapeServer) -> None:
    items = [dict(TASK, id=str(i)) for i in range(3)] + ["junk", {"no": "id"}]
    shape.on("POST", "/mj/task/list-by-condition", Scripted(200, items))
    profile = dataclasses.replace(PROFILES["midjourney-proxy"], batch_size=2)
    client = UpstreamClient(shape.url, KEY, profile, **FAST)
    tasks = client.list_by_condition(["1", "2", "2", "3", " 4 ", "5"])
    assert [s.body for s in shape.seen] == [{"ids": ["1", "2"]}, {"ids": ["3", "4"]},
                                           {"ids": ["5"]}]
    assert len(tasks) == 9 and all(isinstance(t, Task) for t in tasks)
    assert client.list_by_condition([]) == []


def test_list_by_condition_falls_back_on_404(shape: ShapeServer) -> None:
    shape.on("POST", "/mj/task/list-by-condition", Scripted(404, "<html>nope</html>",
                                                            "text/html"))
    shape.on("GET", "/mj/task/1/fetch", Scripted(200, dict(TASK, id="1")))
    shape.on("GET", "/mj/task/2/fetch", Scripted(204, None, None))
    client = client_for(shape.url)
    assert [t.id for t in client.list_by_condition(["1", "2"])] == ["1"]
    assert [t.id for t in client.list_by_condition(["1"])] == ["1"]
    assert shape.count("POST", "/mj/task/list-by-condition") == 1  # remembered


def test_list_by_condition_bad_answer(shape: ShapeServer) -> None:
    shape.on("POST", "/mj/task/list-by-condition", Scripted(200, {"code": 1}))
    with pytest.raises(BadUpstreamAnswer):
        client_for(shape.url).list_by_condition(["1"])


def test_image_endpoint_shapes(shape: ShapeServer) -> None:
    shape.on("GET", "/mj/image/1", Scripted(200, b"\x89PNG....", "image/png"))
    shape.on("GET", "/mj/image/2", Scripted(200, {"ok": True}))
    shape.on("GET", "/mj/image/3", Scripted(400, {"error": "midjourney_task_not_found"}))
    shape.on("GET", "/mj/image/4", Scripted(403, {"error": "request blocked: private ip"}))
    client = client_for(shape.url, "newapi")
    with client.image("1") as response:
        assert response.content.startswith(b"\x89PNG")
    for task_id in ("2", "3", "4"):
        with pytest.raises(BadUpstreamAnswer):
            client.image(task_id)


def test_image_seed_and_cancel_shapes(shape: ShapeServer) -> None:
    shape.on("GET", "/mj/task/1/image-seed", Scripted(200, {"code": 1, "result": 123}))
    shape.on("GET", "/mj/task/2/image-seed", Scripted(400, {"code": 4, "description": "no hash"}))
    shape.on("GET", "/mj/task/3/image-seed", Scripted(404, {"code": 3, "description": "x"}))
    shape.on("POST", "/mj/task/1/cancel", Scripted(200, b"", None))
    shape.on("POST", "/mj/task/2/cancel", Scripted(400, {"code": 4,
                                                         "description": "演示模式，禁止操作"}))
    client = client_for(shape.url, "trueai")
    assert client.image_seed("1") == "123"
    assert client.image_seed("2") is None and client.image_seed("3") is None
    assert client.cancel("1") is True and client.cancel("2") is False
    assert client_for(shape.url, "dataeyes").cancel("1") is False  # no cancel there


def test_image_url_for_per_profile() -> None:
    mjp = UpstreamClient("https://mj.example.com/", KEY)
    task = Task(id="17", imageUrl="https://cdn.discordapp.com/attachments/1/2/x.png?ex=1")
    assert mjp.image_url_for(task) == task.imageUrl
    assert mjp.image_url_for(Task(id="17", imageUrl="http://localhost:3000/mj/image/17")) == \
        "https://mj.example.com/mj/image/17"
    assert mjp.image_url_for(Task(id="17", imageUrl="/mj/image/17")) == \
        "https://mj.example.com/mj/image/17"
    assert mjp.image_url_for(Task(id="17", imageUrls=[{"url": "https://cdn.discordapp.com/a"}])) \
        == "https://cdn.discordapp.com/a"
    with pytest.raises(BadUpstreamAnswer):
        mjp.image_url_for(Task(id="17"))
    dataeyes = UpstreamClient("https://cloud.dataeyes.ai", KEY, "dataeyes")
    placeholder = Task(id="1781524258075013",
                       imageUrl="www.yourdomain.com/mj/image/1781524258075013")
    assert dataeyes.image_url_for(placeholder) == \
        "https://cloud.dataeyes.ai/mj/image/1781524258075013"
    local = UpstreamClient("http://127.0.0.1:8080", KEY)
    loopback = Task(id="1", imageUrl="http://127.0.0.1:8080/cdn/attachments/1/x.png")
    assert local.image_url_for(loopback) == loopback.imageUrl
    assert "cdn.discordapp.com" in mjp.allowed_image_hosts
    # the upstream's own host, compared with its port (an entry without one is port 443/80)
    assert "mj.example.com" in mjp.allowed_image_hosts


def test_key_never_in_logs_or_repr(shape: ShapeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    shape.on("POST", SUBMIT, Scripted(200, {"code": 1, "result": "1"}))
    shape.on("GET", "/mj/task/1/fetch", Scripted(500, b"", None), Scripted(200, TASK))
    client = client_for(shape.url)
    client.imagine("a cat")
    client.fetch("1")
    assert KEY not in repr(client) and "key=set" in repr(client)
    assert KEY not in caplog.text
    assert caplog.text  # something was logged


def test_base_url_and_mode_checks() -> None:
    assert UpstreamClient("https://x.example/mj/").base_url == "https://x.example"
    with pytest.raises(ValueError):
        UpstreamClient("x.example")
    with pytest.raises(ValueError):
        UpstreamClient("https://x.example", mode="warp")


def test_from_settings(make_settings: Any) -> None:
    settings = make_settings(upstream_url="http://127.0.0.1:1", upstream_key=KEY,
                             upstream_profile="uniapi", upstream_mode="TURBO",
                             upstream_timeout_s=7, upstream_connect_timeout_s=2)
    client = UpstreamClient.from_settings(settings)
    assert (client.profile.name, client.mode, client.timeout_s, client.connect_timeout_s) == \
        ("uniapi", "TURBO", 7.0, 2.0)
    with pytest.raises(SystemExit):
        UpstreamClient.from_settings(make_settings(upstream_url=None))


# =========================================================================================
# Against the simulator, for every profile
# =========================================================================================

sim_server = pytest.importorskip("simulator.server")
ALL_PROFILES = ["midjourney-proxy", "trueai", "newapi", "uniapi", "dataeyes"]
SIM_KEY = "k"
HOOK = "http://127.0.0.1:9/hook"  # nothing listens: callbacks are dropped, which is fine


def _png(color: tuple[int, int, int]) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


RED, BLUE, GREEN = _png((255, 0, 0)), _png((0, 0, 255)), _png((0, 255, 0))


class Sim:
    """A running simulator plus an admin helper and a client for it."""

    def __init__(self, profile: str, speed: float = 200.0) -> None:
        self.profile = profile
        self.srv = sim_server.start(port=0, profile=profile, speed=speed, api_key=SIM_KEY)
        self.url = self.srv.url

    def client(self, key: str = SIM_KEY, **kwargs: Any) -> UpstreamClient:
        return UpstreamClient(self.url, key, self.profile, **{**FAST, **kwargs})

    def faults(self, **knobs: Any) -> None:
        response = requests.put(f"{self.url}/_sim/faults", json=knobs, timeout=5)
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sim/stats", timeout=5).json()

    def reset(self) -> None:
        requests.post(f"{self.url}/_sim/reset", json={"faults": True}, timeout=5)

    def routes(self) -> set[str]:
        return set(self.srv.sim.profile.routes)


@pytest.fixture(scope="module", params=ALL_PROFILES)
def sim_module(request: pytest.FixtureRequest) -> Iterator[Sim]:
    sim = Sim(request.param)
    yield sim
    sim.srv.stop()


@pytest.fixture
def sim(sim_module: Sim) -> Sim:
    sim_module.reset()
    return sim_module


def wait_done(client: UpstreamClient, task_id: str, timeout_s: float = 15.0,
              statuses: tuple[str, ...] = ("SUCCESS", "FAILURE")) -> Task:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = client.fetch(task_id)
        if task is not None and task.status in statuses:
            return task
        time.sleep(0.03)
    raise AssertionError(f"task {task_id} did not reach {statuses}")


def imagine_done(sim: Sim, client: UpstreamClient, prompt: str = "a red fox") -> Task:
    answer = client.imagine(prompt, state="job-7", notify_hook=HOOK)
    assert answer.outcome is O.ACCEPTED, answer.message
    return wait_done(client, answer.task_id)


def test_sim_imagine_fetch_image_action(sim: Sim) -> None:
    client = sim.client(mode="RELAX")
    answer = client.imagine("a red fox", state="job-7", notify_hook=HOOK)
    assert answer.outcome is O.ACCEPTED and answer.task_id
    task = wait_done(client, answer.task_id)
    assert task.status == "SUCCESS" and task.progress_pct == 100 and task.is_terminal
    assert task.state == "job-7"
    assert task.message_hash and len(task.buttons) == 9
    timeline = sim.srv.sim.timeline(answer.task_id)
    assert timeline["mode"] == "RELAX"  # accountFilter.modes or the /mj-relax prefix
    expected_hook = HOOK if PROFILES[sim.profile].callbacks_expected else None
    assert timeline["notifyHook"] == expected_hook
    # the final image, from wherever this profile serves it
    url = client.image_url_for(task)
    if PROFILES[sim.profile].image_source == "image_endpoint":
        assert url == f"{sim.url}/mj/image/{task.id}"
        with client.image(task.id) as response:
            assert response.content.startswith(b"\x89PNG")
    else:
        assert url == task.imageUrl
        download = requests.get(url, timeout=5)
        assert download.headers["Content-Type"] == "image/png"
        assert download.content.startswith(b"\x89PNG")
    # U1 on the grid
    upscale = client.action(task.id, task.button("U1").customId, notify_hook=HOOK)
    assert upscale.outcome is O.ACCEPTED, upscale.message
    assert wait_done(client, upscale.task_id).action == "UPSCALE"


def test_sim_queries(sim: Sim) -> None:
    client = sim.client()
    done = imagine_done(sim, client)
    other = client.imagine("a blue whale")
    assert client.fetch("1000000000000000") is None
    found = client.list_by_condition([done.id, other.task_id, "1000000000000000"])
    assert sorted(t.id for t in found) == sorted([done.id, other.task_id])
    requests_seen = sim.stats()["requests"]
    if PROFILES[sim.profile].batch_query:
        assert requests_seen.get("task_list_by_condition") == 1
    else:
        assert "task_list_by_condition" not in requests_seen  # fetched one by one
    seed = client.image_seed(done.id)
    assert (seed is not None) == PROFILES[sim.profile].has_image_seed
    listed = client.task_list()
    assert (done.id in {t.id for t in listed}) == PROFILES[sim.profile].has_task_list


def test_sim_list_by_condition_chunks(sim: Sim) -> None:
    if not PROFILES[sim.profile].batch_query:
        pytest.skip("no list-by-condition on this profile")
    profile = dataclasses.replace(PROFILES[sim.profile], batch_size=2)
    client = UpstreamClient(sim.url, SIM_KEY, profile, **FAST)
    ids = [client.imagine(f"a cat number {n}").task_id for n in range(5)]
    assert len(client.list_by_condition(ids)) == 5
    assert sim.stats()["requests"]["task_list_by_condition"] == 3


def test_sim_cancel(sim: Sim) -> None:
    slow = Sim(sim.profile, speed=0.5)  # tasks stay running long enough to cancel
    try:
        client = slow.client()
        answer = client.imagine("a slow snail")
        cancelled = client.cancel(answer.task_id)
        assert cancelled is PROFILES[sim.profile].has_cancel
        if cancelled:
            task = client.fetch(answer.task_id)
            assert task.status == "FAILURE" and task.failReason == "取消任务"
            assert client.cancel("1000000000000000") is False
    finally:
        slow.srv.stop()


SUBMITS = [
    ("blend", "blend", lambda c: c.blend([RED, BLUE], "PORTRAIT", notify_hook=HOOK)),
    ("describe", "describe", lambda c: c.describe(RED, state="d")),
    ("describe-link", "describe", lambda c: c.describe(link="https://example.com/a.png")),
    ("shorten", "shorten", lambda c: c.shorten("a very very long prompt about a cat")),
    ("swap-face", "swap_face", lambda c: c.swap_face(RED, BLUE)),
    ("upload", "upload", lambda c: c.upload_discord_images([RED, GREEN])),
]


@pytest.mark.parametrize("name,route,call", SUBMITS, ids=[s[0] for s in SUBMITS])
def test_sim_other_submits(sim: Sim, name: str, route: str, call: Any) -> None:
    answer = call(sim.client())
    if route not in sim.routes():
        assert answer.outcome is O.REJECTED, answer.message  # 404: endpoint not offered
        assert "not supported" in answer.message
        return
    assert answer.outcome is O.ACCEPTED, answer.message
    if name == "upload":
        assert answer.task_id is None
        assert isinstance(answer.result, list) and len(answer.result) == 2
        assert requests.get(answer.result[0], timeout=5).content.startswith(b"\x89PNG")
    else:
        assert wait_done(sim.client(), answer.task_id).status == "SUCCESS"


def test_sim_change_and_simple_change(sim: Sim) -> None:
    client = sim.client()
    parent = imagine_done(sim, client)
    change = client.change(parent.id, "VARIATION", 2)
    simple = client.simple_change(f"{parent.id} U3")
    for answer, route in ((change, "change"), (simple, "simple_change")):
        if route in sim.routes():
            assert answer.outcome is O.ACCEPTED, answer.message
            assert wait_done(client, answer.task_id).status == "SUCCESS"
        else:
            assert answer.outcome is O.REJECTED, answer.message


def test_sim_modal_flow(sim: Sim) -> None:
    if not PROFILES[sim.profile].has_modal:
        pytest.skip("no modal on this profile")
    client = sim.client()
    grid = imagine_done(sim, client)
    upscaled = wait_done(client, client.action(grid.id, grid.button("U1").customId).task_id)
    zoom = upscaled.button("MJ::CustomZoom")
    assert zoom is not None
    answer = client.action(upscaled.id, zoom.customId, notify_hook=HOOK)
    assert answer.outcome is O.NEEDS_MODAL, answer.message
    confirm = client.modal(answer.task_id, prompt="a red fox --zoom 2")
    assert confirm.outcome is O.ACCEPTED, confirm.message
    assert confirm.task_id == answer.task_id
    assert wait_done(client, answer.task_id).status == "SUCCESS"


def test_sim_action_missing_parent(sim: Sim) -> None:
    answer = sim.client().action("1000000000000000", "MJ::JOB::upsample::1::x")
    assert answer.outcome is O.NOT_FOUND, answer.message
    if sim.profile == "trueai":
        assert answer.http_status == 404 and answer.code == 3


def test_sim_newapi_action_before_gateway_sees_success() -> None:
    slow = Sim("newapi", speed=1.0)  # the gateway refreshes every 15 s
    try:
        client = slow.client()
        answer = client.imagine("a cat")
        early = client.action(answer.task_id, "MJ::JOB::upsample::1::x")
        assert early.outcome is O.RETRY_LATER  # task_status_not_success
        assert slow.stats()["submissions"] == {"IMAGINE": 1}
    finally:
        slow.srv.stop()


def test_sim_dataeyes_repeat_action_is_existing_task() -> None:
    sim = Sim("dataeyes")
    try:
        client = sim.client()
        grid = imagine_done(sim, client)
        first = client.action(grid.id, grid.button("U2").customId)
        again = client.action(grid.id, grid.button("U2").customId)
        assert first.outcome is again.outcome is O.ACCEPTED
        assert again.task_id == first.task_id and again.code == 21
    finally:
        sim.srv.stop()


# --- faults --------------------------------------------------------------------------------

def test_sim_http_500_on_submit_is_not_resubmitted(sim: Sim) -> None:
    sim.faults(http_500=1.0)
    answer = sim.client().imagine("a cat")
    assert answer.outcome is O.RETRY_LATER and answer.http_status == 500
    stats = sim.stats()
    assert stats["requests"]["submit_imagine"] == 1
    assert stats["submissions"] == {}


def test_sim_http_500_on_fetch_is_retried(sim: Sim) -> None:
    client = sim.client()
    task_id = client.imagine("a cat").task_id
    sim.faults(http_500=1.0)
    with pytest.raises(UpstreamRetryLater) as info:
        client.fetch(task_id)
    assert info.value.attempts == 3
    assert sim.stats()["requests"]["task_fetch"] == 3
    sim.faults(http_500=0.0)
    assert client.fetch(task_id) is not None


def test_sim_http_500_sometimes_then_fine(sim: Sim) -> None:
    client = sim.client(query_attempts=20)
    task_id = client.imagine("a cat").task_id
    sim.faults(http_500=0.5, seed=7)
    for _ in range(5):
        assert client.fetch(task_id) is not None
    assert sim.stats()["faults"].get("http_500", 0) >= 1


def test_sim_hung_submit_is_outcome_unknown(sim: Sim) -> None:
    sim.faults(hung_submit=1.0, hung_submit_ms=1500)
    answer = sim.client(submit_timeout_s=0.3).imagine("a cat", state="job-hung")
    assert answer.outcome is O.OUTCOME_UNKNOWN, answer.message
    stats = sim.stats()
    assert stats["requests"]["submit_imagine"] == 1
    assert stats["submissions"] == {"IMAGINE": 1}  # created exactly once upstream


def test_sim_queue_full(sim: Sim) -> None:
    sim.faults(queue_full_burst=2)
    client = sim.client()
    first, second = client.imagine("a cat"), client.imagine("a cat")
    for answer in (first, second):
        assert answer.outcome is O.RETRY_LATER, answer.message
        assert answer.task_id is None
        assert answer.code == (9 if sim.profile == "trueai" else 23)
    assert client.imagine("a cat").outcome is O.ACCEPTED
    assert sim.stats()["submissions"] == {"IMAGINE": 1}


def test_sim_real_queue_full(sim: Sim) -> None:
    slow = Sim(sim.profile, speed=0.1)
    try:
        client = slow.client()
        answers = [client.imagine(f"a cat {n}") for n in range(15)]
        outcomes = [a.outcome for a in answers]
        assert outcomes[:13] == [O.ACCEPTED] * 13  # 3 running + 10 waiting
        assert outcomes[13:] == [O.RETRY_LATER] * 2
        assert [a.queued_ahead for a in answers[4:13]] == list(range(1, 10))
        assert slow.stats()["submissions"] == {"IMAGINE": 13}
    finally:
        slow.srv.stop()


def test_sim_balance(sim: Sim) -> None:
    sim.faults(balance_after=1)
    client = sim.client()
    assert client.imagine("a cat").outcome is O.ACCEPTED
    answer = client.imagine("a cat")
    assert answer.outcome is O.OUT_OF_CREDIT, answer.message


def test_sim_banned_word(sim: Sim) -> None:
    sim.faults(banned_words=["nude"])
    answer = sim.client().imagine("a nude statue")
    assert answer.outcome is O.REJECTED, answer.message
    assert answer.banned_word == "nude"
    assert answer.message == "banned prompt: word 'nude'"


def test_sim_auth_failure(sim: Sim) -> None:
    client = sim.client(key="wrong")
    answer = client.imagine("a cat")
    assert answer.outcome is O.AUTH_FAILED, answer.message
    with pytest.raises(UpstreamAuthFailed):
        client.fetch("1000000000000000")
    with pytest.raises(UpstreamAuthFailed):
        client.list_by_condition(["1000000000000000"])
    assert sim.stats()["submissions"] == {}


def test_sim_dataeyes_user_agent_wall() -> None:
    sim = Sim("dataeyes")
    try:
        no_agent = dataclasses.replace(PROFILES["dataeyes"], user_agent="")
        client = UpstreamClient(sim.url, SIM_KEY, no_agent, **FAST)
        answer = client.imagine("a cat")
        assert answer.outcome is O.AUTH_FAILED
        assert "1010" in answer.message and "User-Agent" in answer.message
        assert sim.client().imagine("a cat").outcome is O.ACCEPTED  # our default UA passes
    finally:
        sim.srv.stop()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_queries_never_follow_redirects_so_the_key_stays_home(status: int) -> None:
    target = Recorder(body=b'{"id": "17", "status": "SUCCESS"}',
                      headers={"Content-Type": "application/json"})
    upstream = Recorder(status=status, body=b"",
                        headers={"Location": target.url("/mj/task/17/fetch")})
    try:
        with UpstreamClient(upstream.url("").rstrip("/"), KEY, query_attempts=1) as client:
            with pytest.raises(BadUpstreamAnswer, match="redirected"):
                client.fetch("17")
            with pytest.raises(BadUpstreamAnswer, match="redirected"):
                client.list_by_condition(["17"])
            with pytest.raises((BadUpstreamAnswer, UpstreamUnavailable)):
                client.image("17")
        assert upstream.seen and all(s.headers.get("mj-api-secret") == KEY for s in upstream.seen)
        assert target.seen == []              # the secret never reached the redirect target
    finally:
        upstream.stop()
        target.stop()
