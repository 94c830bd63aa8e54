"""End-to-end tests of the upstream simulator over real loopback HTTP (no mocks)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from PIL import Image

from simulator.faults import Faults, load_faults
from simulator.server import SimServer, start

SPEED = 200.0  # IMAGINE 30 s → 0.15 s
PROFILES = ["midjourney-proxy", "trueai", "newapi", "uniapi", "dataeyes"]
UA = {"User-Agent": "mjflow-tests/1.0"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def data_url(colour: tuple[int, int, int] = (200, 30, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Upstream:
    """A small client for one simulator: HTTP helpers plus polling."""

    def __init__(self, srv: SimServer, key: str = "") -> None:
        self.srv = srv
        self.url = srv.url
        self.http = requests.Session()
        self.http.headers.update(UA)
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.http.post(self.url + path, json=body, timeout=kw.pop("timeout", 10), **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=10, **kw)

    def fetch(self, task_id: str) -> dict[str, Any]:
        return self.get(f"/mj/task/{task_id}/fetch").json()

    def wait(
        self,
        task_id: str,
        statuses: tuple[str, ...] = ("SUCCESS", "FAILURE"),
        timeout_s: float = 8.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            task = self.fetch(task_id)
            if task["status"] in statuses:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} stuck at {task['status']} {task['progress']}")
            time.sleep(0.02)

    def imagine(self, prompt: str = "a red fox in snow --v 6", **extra: Any) -> dict[str, Any]:
        return self.post("/mj/submit/imagine", {"prompt": prompt, **extra}).json()

    def imagine_done(self, prompt: str = "a red fox in snow --v 6", **extra: Any) -> dict[str, Any]:
        ans = self.imagine(prompt, **extra)
        assert ans["code"] == 1, ans
        return self.wait(ans["result"])

    def button(self, task: dict[str, Any], label: str) -> str:
        for b in task["buttons"]:
            if label in (b["label"], b["emoji"]):
                return b["customId"]
        raise AssertionError(f"no button {label!r} in {task['buttons']}")


@pytest.fixture
def upstream() -> Iterator[Any]:
    """Factory: ``upstream(profile=..., **start_kwargs)`` → :class:`Upstream` (stopped after)."""
    servers: list[SimServer] = []

    def make(profile: str = "midjourney-proxy", key: str = "", **kw: Any) -> Upstream:
        kw.setdefault("speed", SPEED)
        srv = start(profile=profile, api_key=key, **kw)
        servers.append(srv)
        return Upstream(srv, key)

    yield make
    for srv in servers:
        srv.stop()


class Receiver:
    """A threaded loopback HTTP server that records callback POSTs."""

    def __init__(self, status: int = 200) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls.append(
                    {"ctype": self.headers.get("Content-Type"), "body": json.loads(raw)}
                )
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def for_task(self, task_id: str) -> list[dict[str, Any]]:
        return [c["body"] for c in self.calls if c["body"]["id"] == task_id]

    def wait_for(self, task_id: str, status: str, count: int = 1, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(b["status"] == status for b in self.for_task(task_id)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {status} callback for {task_id}: {self.for_task(task_id)}"
                )
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


# ----------------------------------------------------------------------------- lifecycle
@pytest.mark.parametrize("profile", PROFILES)
def test_imagine_upscale_lifecycle(upstream: Any, profile: str) -> None:
    up = upstream(profile)
    task = up.imagine_done()
    assert task["status"] == "SUCCESS" and task["progress"] == "100%"
    labels = [b["label"] or b["emoji"] for b in task["buttons"]]
    assert labels == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]
    u1 = up.button(task, "U1")
    assert u1.startswith("MJ::JOB::upsample::1::")
    assert up.button(task, "🔄").endswith("::SOLO")
    img_url = task["imageUrl"]
    if profile == "dataeyes":
        assert img_url == f"www.yourdomain.com/mj/image/{task['id']}"
        img_url = f"{up.url}/mj/image/{task['id']}"
    img = up.http.get(img_url, timeout=10)
    assert img.status_code == 200 and img.content.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(img.content)).size == (1024, 1024)

    if profile == "newapi":  # the gateway must have polled SUCCESS before actions pass
        time.sleep(0.1)
    ans = up.post("/mj/submit/action", {"taskId": task["id"], "customId": u1}).json()
    assert ans["code"] == 1, ans
    child = up.wait(ans["result"])
    assert child["action"] == "UPSCALE" and child["status"] == "SUCCESS"
    labels = [b["label"] or b["emoji"] for b in child["buttons"]]
    assert labels[:8] == [
        "Upscale (Subtle)",
        "Upscale (Creative)",
        "Vary (Subtle)",
        "Vary (Strong)",
        "Vary (Region)",
        "Zoom Out 2x",
        "Zoom Out 1.5x",
        "Custom Zoom",
    ]
    if profile in ("trueai", "newapi"):  # video enabled: Animate, then 🔄 (trueai generator)
        assert labels[8:] == ["⬅️", "➡️", "⬆️", "⬇️", "Animate (High motion)",
                              "Animate (Low motion)", "🔄"]
    else:
        assert labels[8:] == ["⬅️", "➡️", "⬆️", "⬇️", "❤️"]
    assert up.button(child, "Custom Zoom").startswith("MJ::CustomZoom::")


def test_status_sequence_and_task_json(upstream: Any) -> None:
    up = upstream("midjourney-proxy")
    task = up.imagine_done(state="order-7")
    assert task["state"] == "order-7" and task["id"].isdigit() and len(task["id"]) == 16
    for key in ("submitTime", "startTime", "finishTime"):
        assert isinstance(task[key], int)
    props = task["properties"]
    assert props["messageHash"] in task["buttons"][0]["customId"]
    assert props["finalPrompt"] and props["discordInstanceId"]
    assert "?ex=" in task["imageUrl"] and "&is=" in task["imageUrl"] and "&hm=" in task["imageUrl"]
    events = up.get(f"/_sim/tasks/{task['id']}/timeline").json()["events"]
    seq = [(e["status"], e["progress"]) for e in events if e["event"] == "state"]
    assert seq[0] == ("SUBMITTED", "0%") and seq[1] == ("IN_PROGRESS", "0%")
    assert ("IN_PROGRESS", "93%") in seq and seq[-1] == ("SUCCESS", "100%")


def test_preview_url_while_in_progress(upstream: Any) -> None:
    up = upstream("trueai", speed=5)  # IMAGINE takes 6 s
    ans = up.imagine()
    task = up.wait(ans["result"], statuses=("IN_PROGRESS",))
    deadline = time.monotonic() + 3
    while task["progress"] in ("0%",) and time.monotonic() < deadline:
        time.sleep(0.05)
        task = up.fetch(ans["result"])
    assert task["status"] == "IN_PROGRESS" and "preview_" in task["imageUrl"]
    assert up.http.get(task["imageUrl"], timeout=10).content.startswith(PNG_MAGIC)


# ----------------------------------------------------------------------------- modal flows
def test_custom_zoom_and_inpaint_modal(upstream: Any) -> None:
    up = upstream("trueai")
    grid = up.imagine_done()
    ups = up.wait(
        up.post(
            "/mj/submit/action", {"taskId": grid["id"], "customId": up.button(grid, "U2")}
        ).json()["result"]
    )
    ans = up.post(
        "/mj/submit/action", {"taskId": ups["id"], "customId": up.button(ups, "Custom Zoom")}
    ).json()
    assert ans["code"] == 21 and ans["properties"]["remix"] is True
    assert ans["properties"]["finalPrompt"]
    assert up.fetch(ans["result"])["status"] == "MODAL"
    modal = up.post(
        "/mj/submit/modal", {"taskId": ans["result"], "prompt": "a red fox --zoom 1.8 --ar 1:1"}
    ).json()
    assert modal["code"] == 1 and modal["result"] == ans["result"]
    done = up.wait(ans["result"])
    assert done["status"] == "SUCCESS" and done["action"] == "ZOOM"
    assert [b["label"] for b in done["buttons"]][:4] == ["U1", "U2", "U3", "U4"]

    inpaint = up.post(
        "/mj/submit/action", {"taskId": ups["id"], "customId": up.button(ups, "Vary (Region)")}
    ).json()
    assert inpaint["code"] == 21
    no_mask = up.post("/mj/submit/modal", {"taskId": inpaint["result"], "prompt": "a hat"}).json()
    assert no_mask["code"] == 4
    ok = up.post(
        "/mj/submit/modal",
        {"taskId": inpaint["result"], "prompt": "a hat", "maskBase64": data_url()},
    ).json()
    assert ok["code"] == 1
    assert up.wait(inpaint["result"])["action"] == "INPAINT"
    missing = up.post("/mj/submit/modal", {"taskId": "1234567890123456"})
    assert missing.status_code == 404 and missing.json()["code"] == 3


def test_action_validation(upstream: Any) -> None:
    up = upstream("trueai", speed=40)
    missing = up.post("/mj/submit/action", {"taskId": "1", "customId": "MJ::JOB::upsample::1::x"})
    assert missing.status_code == 404 and missing.json()["code"] == 3
    running = up.imagine()["result"]
    not_done = up.post(
        "/mj/submit/action", {"taskId": running, "customId": "MJ::JOB::upsample::1::x"}
    )
    assert not_done.json()["code"] == 4
    task = up.wait(running)
    bad = up.post(
        "/mj/submit/action", {"taskId": running, "customId": "MJ::JOB::upsample::1::nope"}
    )
    assert bad.json() == {
        "code": 4,
        "description": "未知的 Action 类型",
        "result": None,
        "properties": {},
    }
    remix = up.post(
        "/mj/submit/action",
        {"taskId": task["id"], "customId": up.button(task, "V1"), "enableRemix": True},
    ).json()
    assert remix["code"] == 21
    plain = upstream("midjourney-proxy")
    assert plain.post("/mj/submit/action", {"taskId": "1", "customId": "x"}).json()["code"] == 3


def test_describe_shorten_blend_swap_upload(upstream: Any) -> None:
    up = upstream("trueai")
    d = up.post("/mj/submit/describe", {"base64": data_url()}).json()
    assert d["code"] == 1
    desc = up.wait(d["result"])
    assert desc["action"] == "DESCRIBE" and desc["status"] == "SUCCESS"
    assert desc["prompt"].startswith("1️⃣ ") and "\n\n4️⃣ " in desc["prompt"]
    assert desc["properties"]["finalPrompt"] == desc["prompt"]
    assert up.button(desc, "1️⃣") == "MJ::Job::PicReader::1"
    pick = up.post(
        "/mj/submit/action", {"taskId": desc["id"], "customId": "MJ::Job::PicReader::2"}
    ).json()
    assert pick["code"] == 21
    assert up.post("/mj/submit/modal", {"taskId": pick["result"]}).json()["code"] == 1
    assert up.wait(pick["result"])["action"] == "IMAGINE"
    assert up.post("/mj/submit/describe", {"link": "ftp://x"}).json()["code"] == 4
    assert up.post("/mj/submit/describe", {"link": "https://example.com/a.png"}).json()["code"] == 1

    s = up.post(
        "/mj/submit/shorten", {"prompt": "a very detailed red fox in deep snow --v 6"}
    ).json()
    short = up.wait(s["result"])
    assert short["action"] == "SHORTEN" and "2️⃣" in short["properties"]["finalPrompt"]
    assert short["buttons"][0]["customId"].startswith("MJ::Job::PromptAnalyzer::")

    assert up.post("/mj/submit/blend", {"base64Array": [data_url()]}).json()["code"] == 4
    assert (
        up.post("/mj/submit/blend", {"base64Array": [data_url()] * 2, "dimensions": "WIDE"}).json()[
            "code"
        ]
        == 4
    )
    b = up.post(
        "/mj/submit/blend",
        {"base64Array": [data_url(), data_url((0, 0, 255))], "dimensions": "PORTRAIT"},
    ).json()
    blend = up.wait(b["result"])
    assert blend["action"] == "BLEND" and len(blend["buttons"]) == 9
    assert Image.open(io.BytesIO(up.http.get(blend["imageUrl"]).content)).size == (896, 1344)

    sw = up.post(
        "/mj/insight-face/swap", {"sourceBase64": data_url(), "targetBase64": data_url((0, 255, 0))}
    ).json()
    swap = up.wait(sw["result"])
    assert swap["action"] == "SWAP_FACE" and swap["botType"] == "INSIGHT_FACE"
    assert (
        up.post(
            "/mj/insight-face/swap", {"sourceBase64": data_url(), "targetBase64": data_url()}
        ).json()["code"]
        == 4
    )

    upl = up.post("/mj/submit/upload-discord-images", {"base64Array": [data_url()]}).json()
    assert upl["code"] == 1 and isinstance(upl["result"], list)
    assert up.http.get(upl["result"][0]).content.startswith(PNG_MAGIC)


def test_change_and_simple_change(upstream: Any) -> None:
    up = upstream("uniapi")
    grid = up.imagine_done()
    ans = up.post(
        "/mj/submit/change", {"taskId": grid["id"], "action": "UPSCALE", "index": 2}
    ).json()
    assert up.wait(ans["result"])["action"] == "UPSCALE"
    ans = up.post("/mj/submit/simple-change", {"content": f"{grid['id']} V3"}).json()
    var = up.wait(ans["result"])
    assert var["action"] == "VARIATION" and len(var["buttons"]) == 9
    assert up.post("/mj/submit/simple-change", {"content": "nonsense"}).json()["code"] == 4
    assert (
        up.post("/mj/submit/change", {"taskId": grid["id"], "action": "ZOOM"}).json()["code"] == 4
    )


def test_mode_prefixes_recorded(upstream: Any) -> None:
    for profile in ("uniapi", "midjourney-proxy", "trueai"):
        up = upstream(profile)
        for prefix, mode in (("/mj-fast", "FAST"), ("/mj-relax", "RELAX"), ("/mj-turbo", "TURBO")):
            ans = up.post(f"{prefix}/mj/submit/imagine", {"prompt": "cat"}).json()
            assert ans["code"] == 1
            assert up.get(f"/_sim/tasks/{ans['result']}/timeline").json()["mode"] == mode
            assert up.get(f"{prefix}/mj/task/{ans['result']}/fetch").json()["id"] == ans["result"]
        ans = up.imagine(accountFilter={"modes": ["RELAX"]})
        assert up.get(f"/_sim/tasks/{ans['result']}/timeline").json()["mode"] == "RELAX"
    assert up.wait(ans["result"])["mode"] == "RELAX"  # trueai shows it in the task JSON


# ----------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    ("profile", "status", "body"),
    [
        ("midjourney-proxy", 401, ""),
        ("trueai", 403, "未登录"),
        (
            "newapi",
            401,
            '{"error": {"message": "无效的令牌", "type": "new_api_error", "code": ""}}',
        ),
    ],
)
def test_auth_failures(upstream: Any, profile: str, status: int, body: str) -> None:
    up = upstream(profile, key="sk-right")
    wrong = requests.post(
        up.url + "/mj/submit/imagine",
        json={"prompt": "x"},
        headers={**UA, "mj-api-secret": "sk-wrong"},
        timeout=5,
    )
    assert wrong.status_code == status and wrong.text == body
    assert requests.get(up.url + "/mj/task/1/fetch", headers=UA, timeout=5).status_code == status
    by_secret = requests.post(
        up.url + "/mj/submit/imagine",
        json={"prompt": "x"},
        headers={**UA, "mj-api-secret": "sk-right"},
        timeout=5,
    )
    assert by_secret.json()["code"] == 1
    assert up.imagine()["code"] == 1  # Authorization: Bearer


# ----------------------------------------------------------------------------- gateways
def test_newapi_gateway_behaviour(upstream: Any, receiver: Receiver) -> None:
    up = upstream("newapi", speed=100)  # refresh every 150 ms
    ans = up.imagine(notifyHook=receiver.url)
    first = up.fetch(ans["result"])
    assert first["status"] == "" and first["progress"] == "0%" and first["imageUrl"] == ""
    assert first["buttons"] is None and first["properties"] is None and first["startTime"] == 0
    # the upstream is already running while the gateway still shows ""
    assert up.srv.sim.upstream_task(ans["result"])["status"] in ("SUBMITTED", "IN_PROGRESS")
    early = up.post(
        "/mj/submit/action", {"taskId": ans["result"], "customId": "MJ::JOB::upsample::1::x"}
    )
    assert early.status_code == 400 and early.json()["description"] == "task_status_not_success "
    task = up.wait(ans["result"])
    assert task["imageUrl"] == f"{up.url}/mj/image/{task['id']}"
    assert task["customId"] == "" and set(task["properties"]) == {"finalPrompt", "finalZhPrompt"}
    img = up.get(f"/mj/image/{task['id']}")
    assert img.headers["Content-Type"] == "image/png" and img.content.startswith(PNG_MAGIC)
    assert up.get("/mj/image/42").json() == {"error": "midjourney_task_not_found"}
    unknown = up.get("/mj/task/42/fetch")
    assert unknown.status_code == 400
    assert unknown.json() == {"description": "task_no_found ", "type": "upstream_error", "code": 4}
    # Custom Zoom keeps 21; a remixed variation is rewritten to 1
    cz = up.post(
        "/mj/submit/action",
        {"taskId": task["id"], "customId": up.button(task, "V1"), "enableRemix": True},
    ).json()
    assert cz["code"] == 1
    time.sleep(0.3)
    assert receiver.calls == [] and up.srv.sim.stats()["callbacks"]["scheduled"] == 0


def test_newapi_keeps_21_for_custom_zoom(upstream: Any) -> None:
    up = upstream("newapi", speed=400)
    grid = up.imagine_done()
    ups = up.wait(
        up.post(
            "/mj/submit/action", {"taskId": grid["id"], "customId": up.button(grid, "U1")}
        ).json()["result"]
    )
    ans = up.post(
        "/mj/submit/action", {"taskId": ups["id"], "customId": up.button(ups, "Custom Zoom")}
    ).json()
    assert ans["code"] == 21


def test_dataeyes_behaviour(upstream: Any) -> None:
    up = upstream("dataeyes")
    no_ua = requests.post(
        up.url + "/mj/submit/imagine", json={"prompt": "x"}, headers={"User-Agent": ""}, timeout=5
    )  # urllib3 adds one if absent
    assert no_ua.status_code == 403 and no_ua.text == "error code: 1010"
    assert no_ua.headers["Content-Type"].startswith("text/plain")
    task = up.imagine_done()
    assert task["imageUrl"] == f"www.yourdomain.com/mj/image/{task['id']}"
    img = up.get(f"/mj/image/{task['id']}")
    assert img.status_code == 200 and img.content.startswith(PNG_MAGIC)
    assert up.post("/mj/task/list-by-condition", {"ids": [task["id"]]}).status_code == 404
    u1 = up.button(task, "U1")
    first = up.post("/mj/submit/action", {"taskId": task["id"], "customId": u1}).json()
    again = up.post("/mj/submit/action", {"taskId": task["id"], "customId": u1}).json()
    assert first["code"] == 1 and again["code"] == 21 and again["description"] == "任务已存在"
    assert again["result"] == first["result"]


# ----------------------------------------------------------------------------- queue full
@pytest.mark.parametrize(
    ("profile", "queued_code", "full_code", "full_has_id"),
    [
        ("midjourney-proxy", 22, 23, False),
        ("trueai", 22, 9, False),
        ("uniapi", 22, 23, True),
        ("newapi", 1, 23, False),
        ("dataeyes", 1, 23, False),
    ],
)
def test_queue_full(
    upstream: Any, profile: str, queued_code: int, full_code: int, full_has_id: bool
) -> None:
    up = upstream(profile, speed=1, core_size=1, queue_size=1)
    a, b, c = (up.imagine(f"cat {i}") for i in range(3))
    assert a["code"] == 1
    assert b["code"] == queued_code and b["properties"]["numberOfQueues"] == 0
    assert "前面还有0个任务" in b["description"]
    assert c["code"] == full_code and (c["result"] is not None) == full_has_id
    stats = up.get("/_sim/stats").json()
    assert stats["queue_full_answers"] == 1 and stats["peak_running"] == 1
    assert up.srv.sim.upstream_task(b["result"])["status"] == "NOT_START"


# ----------------------------------------------------------------------------- callbacks
def test_callbacks_arrive(upstream: Any, receiver: Receiver) -> None:
    up = upstream("midjourney-proxy")
    task = up.imagine_done(notifyHook=receiver.url)
    receiver.wait_for(task["id"], "SUCCESS")
    bodies = receiver.for_task(task["id"])
    assert all(c["ctype"] == "application/json" for c in receiver.calls)
    assert {b["status"] for b in bodies} >= {"SUBMITTED", "IN_PROGRESS", "SUCCESS"}
    assert "NOT_START" not in {b["status"] for b in bodies}
    final = next(b for b in bodies if b["status"] == "SUCCESS")
    assert final["properties"]["notifyHook"] == receiver.url and final["buttons"]
    # a child without its own notifyHook never calls back; with one it does
    silent = up.post(
        "/mj/submit/action", {"taskId": task["id"], "customId": up.button(task, "U1")}
    ).json()["result"]
    loud = up.post(
        "/mj/submit/action",
        {"taskId": task["id"], "customId": up.button(task, "U2"), "notifyHook": receiver.url},
    ).json()["result"]
    up.wait(silent)
    receiver.wait_for(loud, "SUCCESS")
    assert receiver.for_task(silent) == []


def test_callback_receiver_errors_are_counted(upstream: Any) -> None:
    bad = Receiver(status=500)
    try:
        up = upstream("trueai")
        task = up.imagine_done(notifyHook=bad.url)
        bad.wait_for(task["id"], "SUCCESS")
        time.sleep(0.1)
        cb = up.get("/_sim/stats").json()["callbacks"]
        assert cb["failed"] >= 3 and cb["delivered"] == 0 and cb["sent"] == cb["failed"]
    finally:
        bad.server.shutdown()


# ----------------------------------------------------------------------------- faults
def test_fault_drop_and_duplicate(upstream: Any, receiver: Receiver) -> None:
    up = upstream("midjourney-proxy", faults={"drop_callbacks": 1.0})
    t1 = up.imagine_done(notifyHook=receiver.url)
    time.sleep(0.15)
    assert receiver.for_task(t1["id"]) == []
    assert up.get("/_sim/stats").json()["callbacks"]["dropped"] >= 3
    assert up.http.put(
        up.url + "/_sim/faults", json={"drop_callbacks": 0, "duplicate_callbacks": 1.0}
    ).ok
    t2 = up.imagine_done(notifyHook=receiver.url)
    receiver.wait_for(t2["id"], "SUCCESS", count=2)
    assert up.get("/_sim/stats").json()["callbacks"]["duplicated"] >= 3


def test_fault_reorder_and_delay(upstream: Any, receiver: Receiver) -> None:
    up = upstream("uniapi", faults={"reorder_callbacks": True, "delay_callbacks_ms": 20, "seed": 7})
    task = up.imagine_done(notifyHook=receiver.url)
    receiver.wait_for(task["id"], "IN_PROGRESS", count=7, timeout_s=3)
    order = [b["status"] for b in receiver.for_task(task["id"])]
    assert order.index("SUCCESS") < len(order) - 1, order  # something arrived after SUCCESS


def test_fault_stuck_and_fail(upstream: Any) -> None:
    up = upstream("midjourney-proxy", faults={"stuck": 1.0})
    ans = up.imagine()
    time.sleep(0.4)  # > 2× the IMAGINE duration
    task = up.fetch(ans["result"])
    assert task["status"] == "IN_PROGRESS" and task["progress"] == "93%"
    up.http.put(up.url + "/_sim/faults", json={"stuck": 0, "fail": 1.0})
    failed = up.wait(up.imagine()["result"])
    assert failed["status"] == "FAILURE" and failed["progress"] == ""
    assert failed["failReason"].startswith("[") and failed["finishTime"]


def test_fault_stuck_timeout(upstream: Any) -> None:
    up = upstream("trueai", faults={"stuck": 1.0, "stuck_timeout_s": 0.3})
    task = up.wait(up.imagine()["result"], timeout_s=3)
    assert task["status"] == "FAILURE" and task["failReason"] == "任务超时"


def test_fault_http_500(upstream: Any) -> None:
    up = upstream("trueai", faults={"http_500": 1.0})
    r = up.post("/mj/submit/imagine", {"prompt": "x"})
    assert r.status_code == 500 and r.json()["message"] == "操作失败"
    assert up.get("/mj/task/1/fetch").status_code == 500
    assert up.get("/_sim/stats").json()["faults"]["http_500"] == 2  # admin is exempt
    up.http.put(up.url + "/_sim/faults", json={"http_500": 0})
    assert up.imagine()["code"] == 1


def test_fault_http_500_on_submits_only(upstream: Any) -> None:
    up = upstream("midjourney-proxy", faults={"http_500_submits": 1.0})
    assert up.post("/mj/submit/imagine", {"prompt": "x"}).status_code == 500
    assert up.get("/mj/task/list").status_code == 200 and up.get("/mj/task/list").json() == []
    stats = up.get("/_sim/stats").json()
    assert stats["faults"] == {"http_500_submits": 1} and not stats["submissions"]


def test_fault_hung_submit_still_creates_task(upstream: Any) -> None:
    up = upstream("midjourney-proxy", faults={"hung_submit": 1.0, "hung_submit_ms": 1200})
    with pytest.raises(requests.exceptions.ReadTimeout):
        up.post("/mj/submit/imagine", {"prompt": "lost answer", "state": "job-1"}, timeout=0.3)
    tasks = up.get("/mj/task/list").json()
    assert [t["state"] for t in tasks] == ["job-1"]
    assert up.get("/_sim/stats").json()["submissions"] == {"IMAGINE": 1}


def test_fault_queue_full_burst_balance_banned(upstream: Any) -> None:
    up = upstream("midjourney-proxy", faults={"queue_full_burst": 2})
    assert [up.imagine()["code"] for _ in range(3)] == [23, 23, 1]
    up.http.put(up.url + "/_sim/faults", json={"balance_after": 1})
    assert up.imagine()["code"] == 1
    assert up.imagine() == {"code": 25, "description": "余额不足", "result": None, "properties": {}}
    up.http.put(up.url + "/_sim/faults", json={"balance_after": None})
    banned = up.imagine("a nude statue")
    assert banned["code"] == 24 and banned["properties"]["bannedWord"] == "nude"
    assert banned["properties"]["promptEn"] == "a nude statue"
    assert up.imagine("a nudeish colour")["code"] == 1  # whole words only

    newapi = upstream("newapi", faults={"balance_after": 0})
    r = newapi.post("/mj/submit/imagine", {"prompt": "x"})
    assert r.status_code == 400 and r.json()["description"] == "quota_not_enough "
    trueai = upstream("trueai", faults={"balance_after": 0})
    body = trueai.post("/mj/submit/imagine", {"prompt": "x"}).json()
    assert body["success"] is False and body["code"] == -1 and body["message"] == "余额不足"
    assert body["timestamp"]


def test_faults_admin_validation_and_files(upstream: Any, tmp_path: Any) -> None:
    up = upstream("midjourney-proxy")
    assert up.http.put(up.url + "/_sim/faults", json={"stuck": 2}).status_code == 400
    assert up.http.put(up.url + "/_sim/faults", json={"bogus": 1}).status_code == 400
    assert up.get("/_sim/faults").json()["banned_words"] == ["nude", "gore"]
    (tmp_path / "f.json").write_text('{"fail": 0.5, "seed": 3}')
    (tmp_path / "f.yaml").write_text("http_500: 0.25\nbanned_words: [blood]\n")
    assert load_faults(tmp_path / "f.json") == Faults(fail=0.5, seed=3)
    assert load_faults(tmp_path / "f.yaml").banned_words == ["blood"]


def test_large_images(upstream: Any) -> None:
    up = upstream("midjourney-proxy", faults={"large_image_bytes": 3_000_000})
    task = up.imagine_done()
    r = up.http.get(task["imageUrl"], timeout=20)
    assert r.content.startswith(PNG_MAGIC) and len(r.content) > 2_500_000
    assert up.http.get(task["imageUrl"], timeout=20).content == r.content  # cached, same bytes


# ----------------------------------------------------------------------------- URLs
def test_signed_url_expiry_and_resign(upstream: Any) -> None:
    up = upstream("midjourney-proxy", url_ttl_s=60)
    task = up.imagine_done()
    url = task["imageUrl"]
    assert up.http.get(url).status_code == 200
    assert up.http.get(url.replace("hm=", "hm=0")).status_code == 404
    assert up.post("/_sim/clock", {"advance_s": 120}).ok
    expired = up.http.get(url)
    assert expired.status_code == 404 and "no longer available" in expired.text
    fresh = up.fetch(task["id"])["imageUrl"]
    assert fresh != url and up.http.get(fresh).content.startswith(PNG_MAGIC)
    assert up.http.get(fresh).content == up.http.get(fresh).content

    # new-api stores the upstream URL once and streams it: after expiry /mj/image breaks
    gw = upstream("newapi", url_ttl_s=60)
    done = gw.imagine_done()
    assert gw.get(f"/mj/image/{done['id']}").status_code == 200
    gw.srv.sim.advance_clock(120)
    broken = gw.get(f"/mj/image/{done['id']}")
    assert broken.status_code == 404 and "no longer available" in broken.json()["error"]


# ----------------------------------------------------------------------------- queries, stats
def test_queries_cancel_seed(upstream: Any) -> None:
    up = upstream("trueai", speed=2)
    done_up = upstream("trueai")
    task = done_up.imagine_done()
    listed = done_up.post("/mj/task/list-by-condition", {"ids": [task["id"], "nope", task["id"]]})
    assert [t["id"] for t in listed.json()] == [task["id"]]
    assert done_up.post("/mj/task/list-by-condition", {}).json() == []
    seed = done_up.get(f"/mj/task/{task['id']}/image-seed").json()
    assert seed["code"] == 1 and seed["result"].isdigit()
    assert done_up.get("/mj/task/404/image-seed").status_code == 404
    assert up.get("/mj/task/404/fetch").status_code == 204

    running = up.imagine()["result"]
    assert up.get(f"/mj/task/{running}/image-seed").status_code == 400
    assert up.post(f"/mj/task/{running}/cancel").status_code == 200
    cancelled = up.fetch(running)
    assert cancelled["status"] == "FAILURE" and cancelled["failReason"] == "取消任务"
    assert [t["id"] for t in up.get("/mj/task/list").json()] == [running]


def test_bad_input_is_400_not_500(upstream: Any) -> None:
    for profile in PROFILES:
        up = upstream(profile)
        r = up.http.post(
            up.url + "/mj/submit/imagine",
            data="{not json",
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert r.status_code == 400 and r.json()["code"] == 4
        r = up.post("/mj/submit/imagine", [1, 2])
        assert r.status_code == 400
        assert up.imagine("   ")["code"] == 4
        assert (
            up.post("/mj/submit/imagine", {"prompt": "x", "base64Array": ["nope"]}).json()["code"]
            == 4
        )
        assert up.post("/mj/submit/action", {"taskId": 5, "customId": None}).json()["code"] == 4
        assert up.post("/mj/submit/imagine", {"prompt": "x", "state": {"a": 1}}).json()["code"] == 4


def test_a_click_refused_as_queue_full_is_not_a_duplicate_when_sent_again(upstream: Any) -> None:
    """The account is full: the click creates nothing, so the same click accepted later is
    its first task, not a duplicate (the detector counts created tasks only)."""
    up = upstream("midjourney-proxy", faults={"fail": 0.0}, core_size=1, queue_size=0)
    first = up.imagine_done()
    u1 = up.button(first, "U1")
    blocker = up.imagine()                          # holds the account's only slot
    refused = up.post("/mj/submit/action", {"taskId": first["id"], "customId": u1}).json()
    assert refused["code"] == 23, refused
    up.wait(blocker["result"])
    again = up.post("/mj/submit/action", {"taskId": first["id"], "customId": u1}).json()
    assert again["code"] in (1, 22), again
    assert up.get("/_sim/stats").json()["duplicate_submissions"]["count"] == 0


def test_stats_duplicates_and_reset(upstream: Any) -> None:
    up = upstream("midjourney-proxy", faults={"fail": 0.0, "banned_words": ["gore"]})
    first = up.imagine_done(state="job-42")
    up.imagine(state="job-42")
    up.imagine(state="other")
    u3 = up.button(first, "U3")
    for _ in range(2):
        ans = up.post("/mj/submit/action", {"taskId": first["id"], "customId": u3}).json()
        assert ans["code"] in (1, 22)  # 3 running slots: the action may queue
    stats = up.get("/_sim/stats").json()
    dup = stats["duplicate_submissions"]
    assert dup["count"] == 2
    assert {d["kind"] for d in dup["items"]} == {"state", "action"}
    assert stats["submissions"] == {"IMAGINE": 3, "UPSCALE": 2}
    assert stats["requests"]["submit_imagine"] == 3 and stats["peak_in_flight"] >= 1
    assert up.post("/_sim/reset").json() == {"ok": True}
    stats = up.get("/_sim/stats").json()
    assert stats["tasks"] == {} and stats["duplicate_submissions"]["count"] == 0
    assert up.get("/_sim/faults").json()["banned_words"] == ["gore"]
    up.post("/_sim/reset", {"faults": True})
    assert up.get("/_sim/faults").json()["banned_words"] == ["nude", "gore"]
    assert up.get(f"/mj/task/{first['id']}/fetch").text == ""


# -- the newer surface: video, edits, V8, full-size images, novicezk --------------------------
def test_trueai_video_validation_prompt_rewrite_and_the_mp4(upstream: Any) -> None:
    up = upstream("trueai")
    assert up.post("/mj/submit/video", {"prompt": " "}).json()["code"] == 4
    assert up.post("/mj/submit/video", {"prompt": "x", "image": "nope"}).json() == {
        "code": 4, "description": "base64格式错误", "result": None, "properties": {}}
    assert up.post("/mj/submit/video", {"prompt": "x", "taskId": "1"}).json()["code"] == 4
    missing = up.post("/mj/submit/video", {"prompt": "x", "action": "extend", "taskId": "17"})
    assert missing.status_code == 404 and missing.json()["code"] == 3
    ans = up.post("/mj/submit/video", {"prompt": "a boat", "image": "http://h/f.png",
                                       "loop": True, "batchSize": 1}).json()
    task = up.wait(ans["result"])
    assert task["action"] == "VIDEO" and task["status"] == "SUCCESS"
    assert task["prompt"] == "http://h/f.png a boat --video 1 --end loop --motion low --bs 1"
    assert task["imageUrl"].split("?")[0].endswith("_0.mp4") and len(task["videoUrls"]) == 1
    clip = up.http.get(task["videoUrls"][0]["url"], timeout=5)
    assert clip.headers["Content-Type"] == "video/mp4" and clip.content[4:8] == b"ftyp"
    thumb = up.http.get(task["videoUrls"][0]["thumbnail"], timeout=5)
    assert thumb.content.startswith(PNG_MAGIC)
    assert [b["label"] or b["emoji"] for b in task["buttons"]] == ["U1", "🔄"]
    no_frame = up.wait(up.post("/mj/submit/video", {"prompt": "x"}).json()["result"])
    assert no_frame["failReason"] == "invalid_request, No start frame provided"


def test_edits_retexture_and_what_newapi_routes(upstream: Any) -> None:
    up = upstream("trueai")
    assert up.post("/mj/submit/edits", {"prompt": "x"}).json()["description"] == "image或prompt不能为空"
    edit = up.wait(up.post("/mj/submit/edit", {"prompt": "red", "image": "http://h/a.png"})
                   .json()["result"])
    assert edit["action"] == "EDIT" and [b["label"] for b in edit["buttons"]][:4] == [
        "U1", "U2", "U3", "U4"]
    re_ = up.wait(up.post("/mj/submit/retexture", {"prompt": "red", "image": "http://h/a.png"})
                  .json()["result"])
    assert re_["action"] == "RETEXTURE" and re_["prompt"] == "red --dref http://h/a.png"
    gw = upstream("newapi")
    assert gw.post("/mj/submit/retexture", {"prompt": "x", "image": "http://h/a.png"}
                   ).status_code == 404
    assert gw.post("/mj/submit/edit", {"prompt": "x", "image": "http://h/a.png"}).status_code == 404
    rid = gw.post("/mj/submit/edits", {"prompt": "x", "image": "http://h/a.png"}).json()["result"]
    assert gw.wait(rid, timeout_s=15)["action"] == "EDITS"


def test_v8_upscale_buttons_animate_and_newapi_refusing_it(upstream: Any) -> None:
    up = upstream("trueai")
    grid = up.imagine_done("a tower --v 8")
    assert len(grid["imageUrls"]) == 4
    full = up.http.get(grid["imageUrls"][1]["url"], timeout=5)
    assert Image.open(io.BytesIO(full.content)).size == (1024, 1024)
    u1 = up.wait(up.post("/mj/submit/action", {"taskId": grid["id"], "customId": up.button(
        grid, "U1")}).json()["result"])
    assert [b["label"] or b["emoji"] for b in u1["buttons"]] == [
        "Vary (Subtle)", "Vary (Strong)", "Vary (Region)", "Animate (High motion)",
        "Animate (Low motion)", "🔄"]
    video = up.wait(up.post("/mj/submit/action", {"taskId": u1["id"], "customId": up.button(
        u1, "Animate (High motion)")}).json()["result"])
    assert video["action"] == "VIDEO" and len(video["videoUrls"]) == 4
    gw = upstream("newapi")
    g = gw.imagine_done("a tower")
    time.sleep(0.1)
    gu = gw.wait(gw.post("/mj/submit/action", {"taskId": g["id"], "customId": gw.button(
        g, "U1")}).json()["result"], timeout_s=15)
    time.sleep(0.1)
    refused = gw.post("/mj/submit/action", {"taskId": gu["id"],
                                            "customId": gw.button(gu, "Animate (Low motion)")})
    assert refused.status_code == 400 and "unknown_action" in refused.json()["description"]


def test_novicezk_has_no_buttons_and_no_action_route(upstream: Any) -> None:
    up = upstream("novicezk")
    task = up.imagine_done()
    assert "buttons" not in task
    assert up.post("/mj/submit/action", {"taskId": task["id"], "customId": "x"}).status_code == 404
    assert up.post("/mj/submit/modal", {"taskId": task["id"]}).status_code == 404
    ans = up.post("/mj/submit/change", {"taskId": task["id"], "action": "UPSCALE", "index": 2})
    assert up.wait(ans.json()["result"])["action"] == "UPSCALE"
    simple = up.post("/mj/submit/simple-change", {"content": f"{task['id']} V3"}).json()
    assert up.wait(simple["result"])["action"] == "VARIATION"
