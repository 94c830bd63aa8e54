"""The dashboard.

Fast checks go through Flask's test client on an in-process engine (auth, the login
cookie, CSRF, what ``/media`` agrees to serve). The end-to-end test drives headless
Chromium (Debian's chromium + chromedriver, installed when missing) against a live stack
(simulator, gunicorn, Celery worker and beat) with real jobs: pages load, thumbnails
render, a failed job shows its reason and Retry runs it again, the upstream page shows the
window and resumes a paused dispatch. Screenshots go to ``artifacts/dashboard-*.png``.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from tests.support.browser import (
    ARTIFACTS,
    chrome,
    ensure_chromium,
    images_rendered,
    screenshot,
    wait_until,
)
from tests.support.stack import WEBHOOK_SECRET, Stack
from worker.dev.consumer import Consumer

KEY = "dash-key"
CJK_FONT = "Noto Sans CJK SC"          # named in dashboard.css; Debian's fonts-noto-cjk


def _has_cjk_font() -> bool:
    if shutil.which("fc-list") is None:
        return False
    found = subprocess.run(["fc-list", f":family={CJK_FONT}", "family"], capture_output=True,
                           text=True, check=False)
    return CJK_FONT in found.stdout


def ensure_cjk_font() -> str | None:
    """Install Debian's ``fonts-noto-cjk`` when the CJK font the CSS names is missing;
    None when it is there, else why not (no apt-get, not root, the install failed)."""
    if _has_cjk_font():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{CJK_FONT} missing and apt-get is not usable here: apt-get install fonts-noto-cjk"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "install", "-y", "fonts-noto-cjk"],
                 ["apt-get", "update"], ["apt-get", "install", "-y", "fonts-noto-cjk"]):
        try:
            subprocess.run(argv, env=env, capture_output=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv)} failed: {exc}"
        if _has_cjk_font():
            return None
    return "apt-get could not install fonts-noto-cjk"


def web_app():  # type: ignore[no-untyped-def]
    """The app with the dashboard registered (gunicorn's entry point in these tests; the
    registration is idempotent, so this keeps working once ``create_app`` does it too)."""
    from webhook import create_app, dashboard

    app = create_app()
    dashboard.init_app(app)
    return app


# -- in-process: auth, CSRF, media ----------------------------------------------------------
@pytest.fixture
def client(engine, make_settings):
    from webhook import create_app, dashboard

    engine.settings = make_settings(api_keys=KEY, local_run=False)
    app = create_app(engine.settings, engine)
    dashboard.init_app(app)
    dashboard.init_app(app)                      # twice is fine
    return app.test_client()


def _png(width: int = 600, height: int = 400) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(out, "PNG")
    return out.getvalue()


def _store_image(engine, job_id: str, data: bytes, *, index: int = 0, label: str = "IMAGINE"):  # type: ignore[no-untyped-def]
    """Store ``data`` as a step's image the way the store step does: downloaded from a
    loopback server, put in the sink with its thumbnail; returns the image record."""
    from flask import Flask

    from tests.support.web import serve
    from worker.storage import StoreRequest, store_step_images

    app = Flask("images")
    app.add_url_rule("/img.png", "img", lambda: (data, 200, {"Content-Type": "image/png"}))
    with serve(app) as base:
        req = StoreRequest(job_id=job_id, step_index=index, label=label, task_id="t1",
                           prompt="a red fox", image_url=f"{base}/img.png")
        stored = store_step_images(engine.sink, engine.http, req, settings=engine.settings)
    return stored[0].to_dict()


def _job_with_image(engine) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    from worker.jobs.spec import JobSpec

    job = engine.store.create(JobSpec.model_validate({"prompt": "a red fox"}))
    record = _store_image(engine, job.id, _png())
    step_id = engine.r.lindex(engine.keys.job_steps(job.id), 0)
    engine.r.hset(engine.keys.step(step_id), "images", json.dumps([record]))
    return job.id, record["key"]


def test_login_sets_an_httponly_cookie_and_pages_need_it(client):
    resp = client.get("/")
    assert resp.status_code == 401 and b"Sign in" in resp.data
    assert resp.mimetype == "text/html"
    assert client.get("/?key=wrong").status_code == 401
    resp = client.get("/upstream?key=" + KEY)
    assert resp.status_code == 302 and resp.headers["Location"] == "/upstream"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("mjflow_session=") and KEY not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/upstream")
    assert page.status_code == 200 and b"Slots in use" in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert client.get("/", headers={"X-Dashboard-Partial": "1"}).headers["X-Dashboard-Refresh"] == "3000"
    # the login form, and a redirect that stays on this site
    client.delete_cookie("mjflow_session")
    resp = client.post("/login", data={"key": KEY, "next": "//evil.example/x"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert client.get("/login").status_code == 302            # already signed in


def test_posts_need_the_csrf_token_or_a_bearer_key(client, engine):
    job_id, _ = _job_with_image(engine)
    client.get("/?key=" + KEY)
    assert client.post(f"/jobs/{job_id}/retry").status_code == 403
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and job_id.encode() in page.data
    token = client.get_cookie("mjflow_csrf").value
    assert f'value="{token}"'.encode() in page.data
    evil = client.post(f"/jobs/{job_id}/retry", data={"csrf": token},
                       headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    ok = client.post(f"/jobs/{job_id}/retry", data={"csrf": token, "next": f"/jobs/{job_id}"})
    assert ok.status_code == 302 and ok.headers["Location"].startswith(f"/jobs/{job_id}?done=")
    client.delete_cookie("mjflow_session")
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/upstream/resume", headers=bearer).status_code == 302
    assert client.post("/jobs/job_nope/retry", headers=bearer).status_code == 404


def test_media_serves_only_images_of_known_jobs(client, engine):
    job_id, key = _job_with_image(engine)
    assert client.get(f"/media/{key}?job={job_id}").status_code == 401
    bearer = {"Authorization": f"Bearer {KEY}"}
    full = client.get(f"/media/{key}?job={job_id}", headers=bearer)
    assert full.status_code == 200 and full.mimetype == "image/png" and full.data[:4] == b"\x89PNG"
    thumb = client.get(f"/media/{key}?job={job_id}&thumb=1", headers=bearer)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    from PIL import Image

    assert Image.open(io.BytesIO(thumb.data)).size == (320, 213)   # made when stored
    again = client.get(f"/media/{key}?job={job_id}&thumb=1",
                       headers=bearer | {"If-None-Match": thumb.headers["ETag"]})
    assert again.status_code == 304
    for bad in (f"/media/{job_id}/manifest.json", f"/media/{job_id}/../../etc/passwd",
                f"/media/{key}?job=job_other", "/media/etc/passwd", f"/media/{job_id}/01-U1.png"):
        assert client.get(bad, headers=bearer).status_code == 404, bad


def test_job_page_shows_thumbnails_that_open_full_size_and_gone_images(client, engine):
    job_id, key = _job_with_image(engine)
    client.get("/?key=" + KEY)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f'src="/media/{key}?job={job_id}&amp;v=' in page and "thumb=1" in page
    assert 'class="full"' not in page                       # no full-size image on the page
    link = page.split('title="open full size"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert "thumb=1" not in link and link.startswith(f"/media/{key}?job={job_id}")
    images = page.index('id="images"')
    assert images < page.index("<h2>Deliveries</h2>") and "which no longer has it" not in page
    (engine.sink.root / key).unlink()                        # the object vanished
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f"stored in {engine.sink.root / key} which no longer has it" in page
    assert f"/media/{key}?job={job_id}&amp;v=" not in page    # no broken picture
    view = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"}).json
    img = view["steps"][0]["images"][0]
    assert img["available"] is False and "no longer has it" in img["unavailableReason"]
    assert client.get(f"/media/{key}?job={job_id}", headers={"Authorization": f"Bearer {KEY}"}
                      ).status_code == 404


def test_job_page_indents_the_step_tree(client, engine):
    from worker.jobs.spec import JobSpec

    job = engine.store.create(JobSpec.model_validate(
        {"prompt": "a chain", "then": ["U1", {"button": "V2", "then": ["U1"]}]}))
    client.get("/?key=" + KEY)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    rows = [line for line in page.splitlines() if "<tr data-step=" in line]
    assert [r.split('class="')[1].split('"')[0] for r in rows] == [
        "depth-0", "depth-1", "depth-1", "depth-2"]
    assert 'data-refresh="3000"' in page                 # still queued: keeps refreshing
    assert "Cancel" in page and "Retry failed steps" not in page
    batch_page = client.get("/batches/interactive").get_data(as_text=True)
    assert f'data-job="{job.id}"' in batch_page and "no image" in batch_page


def _never_offered(engine) -> str:  # type: ignore[no-untyped-def]
    """A finished job whose follow-up asked for a button its grid never offers."""
    from worker.jobs import machine
    from worker.jobs.model import StepStatus
    from worker.jobs.spec import JobSpec

    job = engine.store.create(JobSpec.model_validate({"prompt": "a grid", "then": ["Zoom Out 2x"]}))

    def done(tx) -> None:  # type: ignore[no-untyped-def]
        root = next(s for s in tx.steps.values() if s.parent is None)
        root.buttons = [{"customId": f"MJ::JOB::upsample::{n}::h", "label": f"U{n}"} for n in (1, 2)]
        machine.move(tx, root, StepStatus.STORING)
        machine.move(tx, root, StepStatus.SUCCEEDED)

    engine.store.mutate(job.id, done)
    return job.id


def test_retry_is_offered_only_where_it_can_help(client, engine):
    job_id = _never_offered(engine)
    bearer = {"Authorization": f"Bearer {KEY}"}
    view = client.get(f"/v1/jobs/{job_id}", headers=bearer).json
    assert view["status"] == "partial" and view["retryable"] is False
    child = view["steps"][1]
    assert child["status"] == "failed" and child["retryable"] is False
    assert "button 'Zoom Out 2x' was never offered by IMAGINE (offered: U1, U2)" in child["retryReason"]
    client.get("/?key=" + KEY)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Retry failed steps" not in page and "cannot be retried: button" in page
    batch_page = client.get("/batches/interactive").get_data(as_text=True)
    card = batch_page.split(f'data-job="{job_id}"')[1].split("</article>")[0]
    assert "Retry" not in card and "not retried: Zoom Out 2x" in card
    token = client.get_cookie("mjflow_csrf").value
    resp = client.post(f"/jobs/{job_id}/retry", data={"csrf": token, "next": f"/jobs/{job_id}"})
    assert "done=unretryable" in resp.headers["Location"]
    assert "can be fixed by a retry" in client.get(resp.headers["Location"]).get_data(as_text=True)
    answer = client.post(f"/v1/jobs/{job_id}/retry", headers=bearer).json
    assert answer["retried"] == 0 and answer["notRetried"][0]["label"] == "Zoom Out 2x"


def test_batch_title_is_the_files_name_and_cards_show_item_keys(client, engine):
    from worker import batches

    path = "/home/someone/catalogue/skus-2026.jsonl"
    view = batches.create_batch(engine, [{"prompt": "a red fox", "key": "sku-1"}], name=path)
    client.get("/?key=" + KEY)
    page = client.get(f"/batches/{view['id']}").get_data(as_text=True)
    assert "<title>skus-2026.jsonl · mjflow</title>" in page
    assert '<h1 title="/home/someone/catalogue/skus-2026.jsonl">skus-2026.jsonl' in page
    assert '<p class="item-key mono small" title="item key">sku-1</p>' in page
    assert ">skus-2026.jsonl</a>" in client.get("/").get_data(as_text=True)


def test_unknown_pages_say_so(client):
    client.get("/?key=" + KEY)
    for path in ("/jobs/job_nope", "/batches/bat_nope"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.mimetype == "text/html", path
    assert client.get("/batches/interactive").status_code == 200


# -- end to end in Chromium -------------------------------------------------------------------
@pytest.fixture
def browser(tmp_path):
    reason = ensure_chromium()
    if reason:
        pytest.skip(f"no headless Chromium: {reason}")
    driver = chrome(tmp_path / "chrome-profile")
    yield driver
    driver.quit()


@pytest.fixture
def stack():
    s = Stack(speed=100, api_key=KEY, web_app="tests.test_dashboard:web_app()").start()
    yield s
    s.stop()


@pytest.fixture
def receiver():
    """Accepts outgoing webhooks (the delivery log then has a delivered event)."""
    with Consumer(WEBHOOK_SECRET) as consumer:
        yield consumer.url


def _css(driver, selector):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _text(driver, selector):  # type: ignore[no-untyped-def]
    return " ".join(e.text for e in _css(driver, selector))


def test_dashboard_in_chromium(stack, browser, receiver):
    started = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    font_missing = ensure_cjk_font()
    items = ["a red fox in the snow", "a lighthouse at dawn",
             {"prompt": "a teapot on a table — 茶壶", "key": "sku-teapot"},
             "a nude statue"]                       # banned word: upstream code 24, failed
    resp = requests.post(f"{stack.web_url}/v1/batches", headers=stack.headers, timeout=10,
                         json={"name": "dashboard demo", "items": items, "then": ["U1"]})
    assert resp.status_code == 202, resp.text
    batch_id = resp.json()["id"]
    report = requests.get(f"{stack.web_url}/v1/batches/{batch_id}/report", headers=stack.headers,
                          timeout=10).json()["items"]
    by_prompt = {row["prompt"]: row["jobId"] for row in report}
    solo = stack.submit({"prompt": "a paper boat", "then": ["U2"], "callbackUrl": receiver})["id"]
    views = {v["id"]: v for v in stack.wait_jobs(list(by_prompt.values()) + [solo], timeout_s=60)}
    failed_id = by_prompt["a nude statue"]
    teapot = by_prompt["a teapot on a table — 茶壶"]
    assert views[failed_id]["status"] == "failed"
    assert sum(v["status"] == "succeeded" for v in views.values()) == 4

    # sign in through the form: an HttpOnly cookie
    browser.get(stack.web_url + "/")
    assert browser.title.startswith("Sign in")
    _css(browser, "input[name=key]")[0].send_keys(KEY)
    _css(browser, "section.login button")[0].click()
    wait_until(lambda: browser.title.startswith("Batches"), message="index after login")
    cookie = browser.get_cookie("mjflow_session")
    assert cookie and cookie["httpOnly"] and KEY not in cookie["value"]

    # index: the batch with its progress and counts, the interactive job
    row = _css(browser, f'tr[data-batch="{batch_id}"]')[0]
    assert "dashboard demo" in row.text and "3 succeeded" in row.text and "1 failed" in row.text
    assert _css(browser, f'tr[data-batch="{batch_id}"] progress')[0].get_attribute("value") == "1"
    assert _css(browser, f'#recent tr[data-job="{solo}"]')
    # the live part refreshes in place: a new job shows up without a page load
    browser.execute_script("window.__same_page = true;")
    extra = stack.submit({"prompt": "one more"})["id"]
    wait_until(lambda: _css(browser, f'#recent tr[data-job="{extra}"]'), timeout_s=15,
               message="new job appears on the index")
    assert browser.execute_script("return window.__same_page === true")
    screenshot(browser, ARTIFACTS / "dashboard-index.png")

    # batch page: thumbnails through the app, the failure with its reason, Retry
    _css(browser, f'tr[data-batch="{batch_id}"] a')[0].click()
    wait_until(lambda: browser.title.startswith("dashboard demo"), message="batch page")
    thumbs = images_rendered(browser, "img.thumb")
    assert len(thumbs) == 6 and all(t["src"].startswith("/media/") for t in thumbs)
    assert all(t["width"] == 320 and "thumb=1" in t["src"] for t in thumbs)   # made when stored
    assert "sku-teapot" in _css(browser, f'article[data-job="{teapot}"] .item-key')[0].text
    family = browser.execute_script("return getComputedStyle(document.body).fontFamily")
    assert CJK_FONT in family
    if font_missing is None:      # the CJK prompt is drawn with the font the CSS names
        assert _has_cjk_font()
    card = _css(browser, f'article[data-job="{failed_id}"]')[0]
    assert "banned prompt" in card.text and card.get_attribute("data-status") == "failed"
    assert len(_css(browser, "article.card")) == 4
    screenshot(browser, ARTIFACTS / "dashboard-batch.png")
    _css(browser, "nav.filters a.st-failed")[0].click()
    wait_until(lambda: len(_css(browser, "article.card")) == 1, message="status filter")
    assert "status=failed" in browser.current_url
    _css(browser, f'article[data-job="{failed_id}"] button.retry')[0].click()
    wait_until(lambda: "Retry queued" in _text(browser, ".notice"), message="retry notice")

    def ran_again() -> dict | None:
        view = stack.job(failed_id)
        return view if view["finishedAt"] and view["steps"][0]["attempts"] >= 2 else None

    retried = wait_until(ran_again, timeout_s=30, message="the failed job ran again")
    assert retried["status"] == "failed" and "retried" in retried["steps"][0]["times"]
    browser.refresh()
    wait_until(lambda: "attempts: 2" in _text(browser, f'article[data-job="{failed_id}"]'),
               message="attempts on the card")

    # job page: step tree, timeline, full-size images, task ids, delivery log
    browser.get(f"{stack.web_url}/jobs/{solo}")
    assert browser.title.startswith(f"Job {solo}")
    steps = _css(browser, "#steps tbody tr")
    assert [s.get_attribute("class") for s in steps] == ["depth-0", "depth-1"]
    for step, view in zip(steps, views[solo]["steps"]):
        assert view["taskId"] and view["taskId"] in step.text
    assert len(_css(browser, "#timeline svg.gantt rect.seg-upstream")) == 2
    assert not _css(browser, "img.full")                  # thumbnails, each opening full size
    small = images_rendered(browser, "#images img.thumb")
    assert len(small) == 2 and all(i["width"] <= 320 and "thumb=1" in i["src"] for i in small)
    height = browser.execute_script("return document.getElementById('images').offsetHeight")
    assert height < 400, height                           # the delivery log is not pushed away
    for link in _css(browser, "#images a"):
        full = requests.get(link.get_attribute("href"), headers=stack.headers, timeout=5)
        assert full.status_code == 200 and full.headers["Content-Type"] == "image/png"
        from PIL import Image

        assert Image.open(io.BytesIO(full.content)).width == 1024            # the full size
    wait_until(lambda: "delivered" in _text(browser, "#deliveries"), timeout_s=20,
               message="delivery log shows the delivered event")
    assert "job.succeeded" in _text(browser, "#deliveries")
    screenshot(browser, ARTIFACTS / "dashboard-job.png")
    browser.get(f"{stack.web_url}/jobs/{failed_id}")
    assert "banned prompt" in _text(browser, "#steps")

    # upstreams: the window, recent answers, pause shown and resumed
    browser.get(f"{stack.web_url}/upstream")
    assert browser.title.startswith("Upstreams")
    assert "Slots in use" in _text(browser, "#upstreams") and _text(browser, "#upstreams .size")
    answers = _text(browser, "#answers-default")
    assert "rejected" in answers and "accepted" in answers
    stack.r.hset(f"{stack.prefix}:window:default", mapping={"paused": "1", "since": repr(time.time()),
                                                     "reason": "out of credit (test)"})
    wait_until(lambda: "out of credit (test)" in _text(browser, "#upstreams"), timeout_s=10,
               message="paused state appears")
    screenshot(browser, ARTIFACTS / "dashboard-upstream.png")
    _css(browser, "#upstreams button")[0].click()
    wait_until(lambda: "Dispatch resumed" in _text(browser, ".notice"), message="resumed")
    assert stack.r.hget(f"{stack.prefix}:window:default", "paused") == "0"
    assert "paused" not in _text(browser, "#upstreams .badge")

    # media is only for signed-in users and known keys
    key = views[solo]["steps"][0]["images"][0]["key"]
    media = f"{stack.web_url}/media/{key}?job={solo}"
    assert requests.get(media, timeout=5).status_code == 401
    assert requests.get(media, headers=stack.headers, timeout=5).ok
    assert time.monotonic() - started < 90
