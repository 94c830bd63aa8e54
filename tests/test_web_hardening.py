"""The web front doors against the review's smaller findings, through the real app and the
real Redis: ids outside the id alphabet are a 404 before Redis, ``/v1`` changes need the
Bearer key (a signed-in browser cannot be made to cancel from another site), the
dashboard cookie is a revocable session (never the key), a CRLF in ``next`` is refused
cleanly, bad callback URLs are refused at the door, CSV reports are inert in a
spreadsheet, and a filtered job list bounds its work per page."""
from __future__ import annotations

import csv
import io

import pytest

from webhook import create_app
from webhook.sessions import SESSION_COOKIE, SESSION_TTL_S
from worker.flow.engine import Engine, Inline
from worker.job_ops import MAX_SCAN_PER_PAGE
from worker.jobs import machine
from worker.jobs.spec import JobSpec
from worker.keys import Keys

KEY = "web-key-0123456789"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def web(rds, make_settings):
    settings = make_settings(api_keys=[KEY], local_run=False, max_in_flight=1)
    engine = Engine(settings, rds, Keys(settings.key_prefix), Inline())
    return engine, create_app(settings, engine).test_client()


def _job(engine) -> str:  # type: ignore[no-untyped-def]
    return engine.store.create(JobSpec(prompt="a fox")).id


def _sign_in(client) -> str:  # type: ignore[no-untyped-def]
    resp = client.post("/login", data={"key": KEY, "next": "/"})
    assert resp.status_code == 302
    return client.get_cookie(SESSION_COOKIE).value


# -- ids at the door ----------------------------------------------------------------------------
def test_ids_outside_the_alphabet_are_404_not_store_errors(web):
    engine, client = web
    job = _job(engine)
    batch = client.post("/v1/batches", json={"name": "b", "items": ["x"]}, headers=BEARER).json["id"]
    for method, path in [("get", f"/v1/jobs/{job}:steps"), ("post", f"/v1/jobs/{job}:events/cancel"),
                         ("post", f"/v1/jobs/{job}:steps/retry"), ("get", f"/v1/batches/{batch}:keys"),
                         ("get", f"/v1/batches/{batch}:jobs/report"),
                         ("post", f"/v1/jobs/{job}:x/deliveries/replay")]:
        resp = getattr(client, method)(path, headers=BEARER)
        assert resp.status_code == 404 and resp.json["error"] == "not_found", (path, resp.json)
    assert client.get("/v1/jobs", query_string={"batch": f"{batch}:keys"},
                      headers=BEARER).status_code == 400
    page = client.get(f"/jobs/{job}:steps", headers=BEARER)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert client.get(f"/media/{job}:steps/x.png", headers=BEARER).status_code == 404
    assert client.get(f"/v1/jobs/{job}:steps").status_code == 401      # auth still comes first


# -- /v1 takes the Bearer key for changes --------------------------------------------------------
def test_v1_changes_refuse_the_dashboard_cookie(web):
    engine, client = web
    job = _job(engine)
    _sign_in(client)
    engine.member(None).window.pause("out of credit")
    for origin in ({"Origin": "https://evil.com"}, {}):
        assert client.post(f"/v1/jobs/{job}/cancel", headers=origin).status_code == 401
        assert client.post("/v1/upstream/resume", headers=origin).status_code == 401
        assert client.post("/v1/jobs", json={"prompt": "x"}, headers=origin).status_code == 401
    assert engine.r.hget(engine.keys.job(job), "status") == "queued"
    assert engine.member(None).window.state()["paused"]
    # reads with the cookie still work (the dashboard links to the CSV report) ...
    assert client.get(f"/v1/jobs/{job}").status_code == 200
    # ... and the Bearer key does everything
    client.delete_cookie(SESSION_COOKIE)
    assert client.post(f"/v1/jobs/{job}/cancel", headers=BEARER).status_code == 200


# -- the cookie is a session ---------------------------------------------------------------------
def test_the_cookie_is_a_revocable_expiring_session(web, make_settings):
    engine, client = web
    session_id = _sign_in(client)
    assert KEY not in session_id and len(session_id) >= 40
    [stored] = list(engine.r.scan_iter(engine.keys.session("*")))
    assert session_id not in stored and 0 < engine.r.ttl(stored) <= SESSION_TTL_S
    assert client.get("/upstream").status_code == 200
    csrf = client.get_cookie("mjflow_csrf").value
    assert client.post("/logout", data={"csrf": csrf}).status_code == 302
    assert not engine.r.exists(stored)
    client.set_cookie(SESSION_COOKIE, session_id)           # a stolen copy of the old cookie
    assert client.get("/upstream").status_code == 401
    # a session ends when its key is removed from MJFLOW_API_KEYS
    _sign_in(client)
    engine.settings = make_settings(api_keys=["another-key"], local_run=False)
    assert client.get("/upstream").status_code == 401


def test_a_crlf_in_next_is_refused_cleanly(web):
    _engine, client = web
    for target in ("/x\r\nSet-Cookie: evil=1", "/ok\nLocation: https://evil.com", "/\x00"):
        resp = client.post("/login", data={"key": KEY, "next": target})
        assert resp.status_code == 302 and resp.headers["Location"] == "/"
        assert "evil" not in str(resp.headers)
        assert client.get("/login", query_string={"next": target}).status_code in (200, 302)


# -- callback URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://a b/c", "http://", "http:///path", "http://x:99999/",
                                 "http://ok.example/a b", "ftp://x/", "http://x/\r\nX: y"])
def test_bad_callback_urls_are_refused_at_the_door(web, url):
    engine, client = web
    resp = client.post("/v1/jobs", json={"prompt": "x", "callbackUrl": url}, headers=BEARER)
    assert resp.status_code == 422 and resp.json["details"][0]["path"] == "callbackUrl"
    assert engine.r.zcard(engine.keys.jobs()) == 0


def test_a_good_callback_url_passes(web):
    _engine, client = web
    resp = client.post("/v1/jobs", json={"prompt": "x", "callbackUrl": "https://ok.example:8443/h?a=1"},
                       headers=BEARER)
    assert resp.status_code == 202


# -- CSV reports ------------------------------------------------------------------------------------
def test_csv_report_cells_cannot_be_formulas(web):
    _engine, client = web
    prompts = ["=HYPERLINK(\"https://evil.com\")", "+1+1", "-2", "@SUM(A1)", "\tx", "plain"]
    items = [{"prompt": p, "key": f"{p[:1]}k{i}"} for i, p in enumerate(prompts)]
    items[1]["key"] = "=key"
    resp = client.post("/v1/batches", json={"name": "csv", "items": items}, headers=BEARER)
    assert resp.status_code == 202, resp.json
    report = client.get(f"/v1/batches/{resp.json['id']}/report", query_string={"format": "csv"},
                        headers=BEARER)
    rows = list(csv.DictReader(io.StringIO(report.get_data(as_text=True))))
    by_prompt = {row["prompt"].lstrip("'"): row for row in rows}
    for p in prompts[:-1]:
        assert by_prompt[p]["prompt"] == "'" + p
    assert by_prompt["plain"]["prompt"] == "plain"
    assert by_prompt["+1+1"]["key"] == "'=key"


# -- filtered lists are bounded -------------------------------------------------------------------
def test_a_status_filter_bounds_the_work_per_page_and_continues(web):
    engine, client = web
    oldest = engine.store.create(JobSpec(prompt="old"), now=1_000.0).id
    engine.store.mutate(oldest, machine.cancel)
    for i in range(MAX_SCAN_PER_PAGE + 20):
        engine.store.create(JobSpec(prompt=f"p{i}"), now=2_000.0 + i)
    first = client.get("/v1/jobs", query_string={"status": "cancelled"}, headers=BEARER).json
    assert first["items"] == [] and first["next"]
    second = client.get("/v1/jobs", query_string={"status": "cancelled", "cursor": first["next"]},
                        headers=BEARER).json
    assert [j["id"] for j in second["items"]] == [oldest] and second["next"] is None
