"""The whole upstream surface, through the job spec, against the simulator over HTTP: every
feature on a profile that has it and refused at the door (nothing created) on one that
does not. The engine runs in this process with its hand-offs done at once
(``tests/support/inline.py``); the upstream is real HTTP on loopback."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.support.inline import Rig
from tests.support.web import serve
from webhook import create_app
from worker import api
from worker.delivery.history import job_delivery_ids
from worker.flow.submit import apply_answer
from worker.flow.tick import dispatch
from worker.storage.media import check_mp4
from worker.upstream import Outcome
from worker.upstream.outcomes import Answer


def png(colour: tuple[int, int, int] = (200, 80, 40), size: int = 64) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"


def gif(frames: int) -> str:
    buf = io.BytesIO()
    images = [Image.new("RGB", (16, 16), (i * 80, 255 - i * 80, 0)) for i in range(frames)]
    images[0].save(buf, "GIF", save_all=frames > 1, append_images=images[1:])
    return f"data:image/gif;base64,{base64.b64encode(buf.getvalue()).decode()}"


@pytest.fixture
def rig(rds, make_settings, request):
    rigs: list[Rig] = []

    def make(profile: str, **kw) -> Rig:
        r = Rig(rds, make_settings, profile, **kw)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


def refused(engine, spec: dict) -> list[dict]:
    """The door's refusal of ``spec``; asserts nothing was created."""
    before = engine.r.zcard(engine.keys.jobs())
    with pytest.raises(api.SpecError) as exc:
        api.create_job(engine, spec)
    assert engine.r.zcard(engine.keys.jobs()) == before
    return exc.value.errors


def stored(engine, key: str) -> bytes:
    root = Path(engine.settings.storage_url.removeprefix("file://"))
    return (root / key).read_bytes()


# -- seed fields --------------------------------------------------------------------------------
def test_account_filter_language_swap_urls_and_same_channel_reach_the_upstream(rig):
    r = rig("trueai")
    account = {"channelId": "c-1", "instanceId": "i-2", "remark": "night", "remix": False,
               "remixAutoConsidered": True, "modes": ["RELAX", "FAST"]}
    jobs = [
        api.create_job(r.engine, {"prompt": "a lighthouse", "accountFilter": account,
                                  "then": [{"button": "U2", "chooseSameChannel": True}]}),
        api.create_job(r.engine, {"action": "DESCRIBE", "base64": png(), "language": "zh_cn"}),
        api.create_job(r.engine, {"action": "SWAP_FACE", "sourceUrl": "http://127.0.0.1/a.png",
                                  "targetUrl": "http://127.0.0.1/b.png"}),
    ]
    views = r.run([j["id"] for j in jobs])
    assert all(v["status"] == "succeeded" for v in views), views
    imagine = r.bodies("imagine")[-1]
    assert imagine["accountFilter"] == account            # the order of modes kept
    assert r.bodies("action")[-1]["chooseSameChannel"] is True
    assert r.bodies("describe")[-1]["language"] == "zh_cn"
    swap = r.bodies("swap_face")[-1]
    assert swap["sourceUrl"].endswith("a.png") and swap["targetUrl"].endswith("b.png")
    # a profile whose face swap takes base64 only refuses URLs at the door
    other = rig("newapi")
    errors = refused(other.engine, {"action": "SWAP_FACE", "sourceUrl": "http://x/a.png",
                                    "targetBase64": png()})
    assert errors[0]["path"] == "sourceUrl" and "newapi" in errors[0]["message"]


def test_mode_and_account_filter_modes_are_not_both_given(rig):
    r = rig("trueai")
    errors = refused(r.engine, {"prompt": "x", "mode": "FAST",
                                "accountFilter": {"modes": ["RELAX"]}})
    assert "not both" in errors[0]["message"]
    errors = refused(r.engine, {"prompt": "x", "accountFilter": {"modes": ["FAST", "FAST"]}})
    assert errors[0]["path"] == "accountFilter.modes"


# -- upload -------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile,filter_field", [("trueai", "accountFilter"),
                                                  ("newapi", "filter")])
def test_upload_returns_hosted_urls_then_sref_uses_one(rig, profile, filter_field):
    r = rig(profile)
    job = api.create_job(r.engine, {"action": "UPLOAD", "base64Array": [png(), png((1, 2, 3))],
                                    "accountFilter": {"instanceId": "i-9", "remark": "r"}})
    view = r.run([job["id"]])[0]
    assert view["status"] == "succeeded", view
    urls = view["steps"][0]["uploads"]
    assert len(urls) == 2 and all(u.startswith(r.sim.url) for u in urls)
    assert requests.get(urls[0], timeout=5).content.startswith(b"\x89PNG")
    assert r.bodies("upload")[-1][filter_field]["instanceId"] == "i-9"
    sref = api.create_job(r.engine, {"prompt": f"a fox --sref {urls[0]}"})
    assert r.run([sref["id"]])[0]["status"] == "succeeded"
    assert r.bodies("imagine")[-1]["prompt"] == f"a fox --sref {urls[0]}"


def test_a_data_url_reference_is_uploaded_and_its_url_put_in_the_prompt(rig):
    r = rig("trueai")
    local = png((9, 9, 9))
    job = api.create_job(r.engine, {"prompt": f"a fox --sref {local} --cref {local}"})
    view = r.run([job["id"]])[0]
    assert view["status"] == "succeeded", view
    sent = r.bodies("imagine")[-1]["prompt"]
    assert "data:" not in sent and sent.startswith("a fox --sref http://127.0.0.1:")
    url = sent.split("--sref ")[1].split()[0]
    assert sent.endswith(f"--cref {url}")                 # one upload for the same image
    assert len(r.bodies("upload")) == 1
    # an upstream without upload-discord-images refuses local references at the door
    other = rig("midjourney-proxy")
    errors = refused(other.engine, {"prompt": f"a fox --sref {local}"})
    assert errors[0]["path"] == "prompt" and "midjourney-proxy" in errors[0]["message"]
    errors = refused(other.engine, {"action": "UPLOAD", "base64Array": [local]})
    assert "upload" in errors[0]["message"]


# -- image seed ---------------------------------------------------------------------------------
def test_seed_is_fetched_and_shown_in_the_view_the_manifest_and_the_event(rig):
    r = rig("trueai")
    job = api.create_job(r.engine, {"prompt": "a seed", "seed": True, "then": ["U1"],
                                    "callbackUrl": "http://127.0.0.1:9/hook"})
    view = r.run([job["id"]])[0]
    assert view["status"] == "succeeded"
    seeds = [s["seed"] for s in view["steps"]]
    assert all(s and s.isdigit() for s in seeds)
    manifest = json.loads(stored(r.engine, view["manifest"]))
    assert [s["seed"] for s in manifest["steps"]] == seeds
    ids = job_delivery_ids(r.engine.r, r.engine.keys, job["id"])
    events = [json.loads(r.engine.r.hget(r.engine.keys.delivery(i), "body")) for i in ids]
    assert events and [s.get("seed") for s in events[-1]["data"]["steps"]] == seeds
    for profile in ("dataeyes", "novicezk"):
        errors = refused(rig(profile).engine, {"prompt": "x", "seed": True})
        assert errors[0]["path"] == "seed" and profile in errors[0]["message"]


# -- act later ----------------------------------------------------------------------------------
def test_act_later_adds_u3_to_a_finished_job_and_a_foreign_task_id_takes_a_button(rig):
    r = rig("trueai")
    job = api.create_job(r.engine, {"prompt": "a grid to pick from"})
    first = r.run([job["id"]])[0]
    assert first["status"] == "succeeded" and len(first["steps"]) == 1
    added = api.add_steps(r.engine, job["id"], {"step": "IMAGINE", "button": "U3",
                                                "then": ["Vary (Subtle)"]})
    assert len(added["added"]) == 2 and added["status"] in ("queued", "running")
    again = r.run([job["id"]])[0]
    assert [(s["label"], s["status"]) for s in again["steps"]] == [
        ("IMAGINE", "succeeded"), ("U3", "succeeded"), ("Vary (Subtle)", "succeeded")]
    assert again["steps"][1]["images"] and again["finishedAt"] != first["finishedAt"]
    # a button the grid does not have: refused, nothing added
    with pytest.raises(api.SpecError) as exc:
        api.add_steps(r.engine, job["id"], {"step": "root", "button": "Zoom Out 2x"})
    assert "not offered" in exc.value.errors[0]["message"]
    assert len(api.get_job(r.engine, job["id"])["steps"]) == 3
    with pytest.raises(api.NotFound):
        api.add_steps(r.engine, job["id"], {"step": "V9", "button": "U1"})
    # ACTION on a task mjflow did not create (made straight on the upstream)
    made = requests.post(f"{r.sim.url}/mj/submit/imagine", json={"prompt": "elsewhere"},
                         timeout=5).json()["result"]
    r.sim.sim.wait_for(made)
    foreign = api.create_job(r.engine, {"action": "ACTION", "taskId": made, "button": "U4",
                                        "then": ["Vary (Strong)"]})
    view = r.run([foreign["id"]])[0]
    assert view["status"] == "succeeded", view
    assert r.bodies("action")[-2]["taskId"] == made
    assert "upsample::4" in r.bodies("action")[-2]["customId"]
    missing = api.create_job(r.engine, {"action": "ACTION", "taskId": "1999", "button": "U1"})
    gone = r.run([missing["id"]])[0]
    assert gone["status"] == "failed" and "1999 not found" in gone["steps"][0]["failReason"]


# -- cancel -------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile,cancelled", [("trueai", True), ("midjourney-proxy", False)])
def test_cancel_cancels_running_tasks_upstream_where_the_profile_can(rig, profile, cancelled):
    r = rig(profile, sim_options={"faults": {"stuck": 1.0}})
    job = api.create_job(r.engine, {"prompt": "never ends", "then": ["U1"]})
    for _ in range(50):
        if api.get_job(r.engine, job["id"])["steps"][0]["status"] in ("submitted", "running"):
            break
        r.run_once()
    view = api.cancel_job(r.engine, job["id"])
    root = view["steps"][0]
    task = r.sim.sim.view(root["taskId"])
    if cancelled:
        assert root["status"] == "cancelled" and "cancelled upstream on trueai" in root["failReason"]
        assert task["status"] == "FAILURE" and view["status"] == "cancelled"
    else:
        assert root["status"] in ("submitted", "running") and task["status"] != "FAILURE"
        assert any("cannot cancel" in e["message"] for e in view["events"])
    assert view["steps"][1]["status"] == "cancelled"


# -- novicezk ------------------------------------------------------------------------------------
def test_novicezk_follow_ups_go_through_change(rig):
    r = rig("novicezk")
    job = api.create_job(r.engine, {"prompt": "open source", "then": [
        "U1", {"button": "V2", "then": ["U3"]}, "🔄"]})
    view = r.run([job["id"]])[0]
    assert view["status"] == "succeeded", view
    changes = r.bodies("change")
    assert sorted((c["action"], c.get("index")) for c in changes) == [
        ("REROLL", None), ("UPSCALE", 1), ("UPSCALE", 3), ("VARIATION", 2)]
    assert r.bodies("action") == []
    errors = refused(r.engine, {"prompt": "x", "then": ["Zoom Out 2x"]})
    assert "only U1–U4, V1–V4 and reroll" in errors[0]["message"]
    errors = refused(r.engine, {"prompt": "x", "then": [{"button": "U1", "then": ["U2"]}]})
    assert "grid" in errors[0]["message"]


# -- video --------------------------------------------------------------------------------------
def test_video_is_stored_as_checked_mp4_with_posters_and_extend_follows(rig):
    r = rig("trueai")
    job = api.create_job(r.engine, {"action": "VIDEO", "prompt": "a drifting boat", "image": png(),
                                    "motion": "high", "batchSize": 2, "loop": True,
                                    "then": [{"button": "extend", "index": 1, "motion": "low"}]})
    view = r.run([job["id"]], timeout_s=40)[0]
    assert view["status"] == "succeeded", view
    sent = r.bodies("video")
    assert sent[0]["motion"] == "high" and sent[0]["batchSize"] == 2 and sent[0]["loop"] is True
    assert sent[1]["action"] == "extend" and sent[1]["index"] == 1
    assert sent[1]["taskId"] == view["steps"][0]["taskId"]
    root = view["steps"][0]
    clips = [i for i in root["images"] if i["contentType"] == "video/mp4"]
    posters = [i for i in root["images"] if i["part"].startswith("poster")]
    assert len(clips) == 2 and len(posters) == 2 and root["video"] is True
    for clip in clips:
        assert clip["key"].endswith(".mp4") and clip["poster"] in {p["key"] for p in posters}
        data = stored(r.engine, clip["key"])
        assert check_mp4(io.BytesIO(data), len(data)) == "isom" and len(data) == clip["bytes"]
    manifest = json.loads(stored(r.engine, view["manifest"]))
    assert manifest["steps"][0]["images"][0]["contentType"] == "video/mp4"


def test_animate_after_an_upscale_makes_a_video(rig):
    r = rig("trueai")
    job = api.create_job(r.engine, {"prompt": "a cat", "then": [
        {"button": "U1", "then": ["Animate (Low motion)"]}]})
    view = r.run([job["id"]], timeout_s=40)[0]
    assert view["status"] == "succeeded", view
    animate = view["steps"][2]
    assert animate["video"] and animate["images"][0]["key"].endswith(".mp4")


def test_video_through_newapi_and_refused_where_there_is_none(rig):
    r = rig("newapi")
    job = api.create_job(r.engine, {"action": "VIDEO", "prompt": "waves",
                                    "image": "http://127.0.0.1/frame.png"})
    view = r.run([job["id"]], timeout_s=40)[0]
    assert view["status"] == "succeeded", view
    assert all(i["key"].endswith(".mp4") for i in view["steps"][0]["images"])
    errors = refused(r.engine, {"prompt": "x", "then": [{"button": "U1", "then": [
        "Animate (High motion)"]}]})
    assert "Animate" in errors[0]["message"] and "VIDEO" in errors[0]["message"]
    for profile in ("midjourney-proxy", "uniapi"):
        errors = refused(rig(profile).engine, {"action": "VIDEO", "prompt": "x",
                                               "image": "http://a/b.png"})
        assert errors[0]["path"] == "action" and profile in errors[0]["message"]


def test_a_video_without_a_first_frame_is_refused_at_the_door(rig):
    errors = refused(rig("trueai").engine, {"action": "VIDEO", "prompt": "no frame"})
    assert "first frame" in errors[0]["message"]
    errors = refused(rig("trueai").engine, {"prompt": "x", "then": ["extend"]})
    assert "follows a video" in errors[0]["message"]


# -- edits, retexture ---------------------------------------------------------------------------
def test_edits_and_retexture_make_grids_with_the_usual_follow_ups(rig):
    r = rig("trueai")
    jobs = [api.create_job(r.engine, {"action": action, "prompt": "make it red",
                                      "image": png(), "then": ["U2"]})
            for action in ("EDITS", "RETEXTURE")]
    views = r.run([j["id"] for j in jobs])
    assert all(v["status"] == "succeeded" for v in views), views
    assert [v["steps"][0]["action"] for v in views] == ["EDIT", "RETEXTURE"]
    assert all(len(v["steps"][1]["images"]) == 1 for v in views)
    newapi = rig("newapi")
    edits = api.create_job(newapi.engine, {"action": "EDITS", "prompt": "blue",
                                           "image": "http://127.0.0.1/x.png"})
    assert newapi.run([edits["id"]])[0]["steps"][0]["action"] == "EDITS"
    errors = refused(newapi.engine, {"action": "RETEXTURE", "prompt": "x",
                                     "image": "http://a/b.png"})
    assert "retexture" in errors[0]["message"] and "newapi" in errors[0]["message"]


# -- V8 -----------------------------------------------------------------------------------------
def test_v8_follow_ups_the_upstream_no_longer_offers_fail_naming_what_is_offered(rig):
    r = rig("trueai")
    job = api.create_job(r.engine, {"prompt": "a tower --v 8.1", "then": [
        {"button": "U1", "then": ["Zoom Out 2x", "Vary (Subtle)", "⬅️"]}]})
    view = r.run([job["id"]])[0]
    steps = {s["label"]: s for s in view["steps"]}
    assert steps["Vary (Subtle)"]["status"] == "succeeded"
    for label in ("Zoom Out 2x", "⬅️"):
        reason = steps[label]["failReason"]
        assert steps[label]["status"] == "failed" and "V8.1" in reason
        assert "offered: Vary (Subtle), Vary (Strong), Vary (Region), Animate" in reason
    v6 = api.create_job(r.engine, {"prompt": "a tower --v 6.1", "then": [
        {"button": "U1", "then": ["Zoom Out 2x"]}]})
    assert r.run([v6["id"]])[0]["status"] == "succeeded"


# -- four full-size images ----------------------------------------------------------------------
@pytest.mark.parametrize("profile,full_size", [("trueai", True), ("midjourney-proxy", False)])
def test_split_grid_stores_the_four_full_size_images_where_the_task_has_them(rig, profile,
                                                                             full_size):
    r = rig(profile)
    job = api.create_job(r.engine, {"prompt": "four", "splitGrid": True})
    view = r.run([job["id"]])[0]
    images = view["steps"][0]["images"]
    quarters = [i for i in images if i["part"].startswith("q")]
    assert [q["part"] for q in quarters] == ["q1", "q2", "q3", "q4"]
    grid = images[0]
    # full size: each is as large as the grid (1024 px); cut: half of it
    assert {q["width"] for q in quarters} == {grid["width"] if full_size else grid["width"] // 2}


# -- door limits and requeue bound --------------------------------------------------------------
def test_images_over_the_profile_limit_and_animated_gifs_are_refused_naming_the_limit(rig):
    newapi = rig("newapi")
    raw = base64.b64decode(png().split(",", 1)[1]) + b"\0" * (4 * 1024 * 1024)  # 4 MB + a bit
    big = "data:image/png;base64," + base64.b64encode(raw).decode()
    errors = refused(newapi.engine, {"action": "BLEND", "base64Array": [big, png()]})
    assert errors[0]["path"] == "base64Array[0]"
    assert "4 MB limit of profile newapi" in errors[0]["message"]
    assert api.create_job(rig("trueai").engine, {"action": "BLEND", "base64Array": [big, png()]})
    errors = refused(newapi.engine, {"action": "DESCRIBE", "base64": gif(3)})
    assert errors[0]["path"] == "base64" and "animated GIF" in errors[0]["message"]
    assert api.create_job(newapi.engine, {"action": "DESCRIBE", "base64": gif(1)})


def test_a_step_that_only_ever_hears_retry_later_fails_after_the_bound(rig):
    r = rig("newapi", max_requeues=3, queue_full_backoff_s=0.01)
    r.sim.sim.set_faults({"queue_full_burst": 50})
    job = api.create_job(r.engine, {"prompt": "always busy"})
    view = r.run([job["id"]])[0]
    reason = view["steps"][0]["failReason"]
    assert view["status"] == "failed" and "3 times" in reason and "MJFLOW_MAX_REQUEUES" in reason


def test_the_dashboard_plays_a_stored_video_with_its_poster(rig):
    r = rig("trueai", api_keys=["dash-key"])
    job = api.create_job(r.engine, {"action": "VIDEO", "prompt": "a boat", "batchSize": 1,
                                    "image": "http://127.0.0.1/f.png"})
    view = r.run([job["id"]], timeout_s=40)[0]
    clip = next(i for i in view["steps"][0]["images"] if i["contentType"] == "video/mp4")
    auth = {"Authorization": "Bearer dash-key"}
    with serve(create_app(r.engine.settings, r.engine)) as url:
        page = requests.get(f"{url}/jobs/{job['id']}", headers=auth, timeout=5).text
        assert "<video" in page and 'poster="/media/' in page
        src = page.split('<video', 1)[1].split('src="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        media = requests.get(f"{url}{src}", headers=auth, timeout=5)
        assert media.headers["Content-Type"] == "video/mp4" and len(media.content) == clip["bytes"]


def test_batch_lines_are_checked_against_the_profile_too(rig):
    r = rig("midjourney-proxy")
    with pytest.raises(api.SpecError) as exc:
        api.create_batch(r.engine, ["a fine prompt", {"action": "VIDEO", "prompt": "x",
                                                      "image": "http://a/b.png"}])
    assert exc.value.errors[0]["path"] == "items[1].action"
    assert "midjourney-proxy" in exc.value.errors[0]["message"]
    assert r.engine.r.zcard(r.engine.keys.jobs()) == 0


def test_a_modal_step_is_abandoned_when_its_job_is_cancelled(engine):
    job = api.create_job(engine, {"prompt": "remix me"}, dispatch_now=False)
    assert dispatch(engine)
    root = job["steps"][0]["id"]
    apply_answer(engine, job["id"], root, "imagine",
                 Answer(Outcome.NEEDS_MODAL, "modal", task_id="1712345678901234"))
    assert api.get_job(engine, job["id"])["steps"][0]["status"] == "modal"
    view = api.cancel_job(engine, job["id"])
    step = view["steps"][0]
    assert step["status"] == "cancelled" and "abandoned at the modal" in step["failReason"]
    assert view["status"] == "cancelled"


def test_novicezk_takes_a_foreign_task_id_through_change(rig):
    r = rig("novicezk")
    made = requests.post(f"{r.sim.url}/mj/submit/imagine", json={"prompt": "made elsewhere"},
                         timeout=5).json()["result"]
    r.sim.sim.wait_for(made)
    job = api.create_job(r.engine, {"action": "ACTION", "taskId": made, "button": "V2"})
    assert r.run([job["id"]])[0]["status"] == "succeeded"
    assert r.bodies("change")[-1] == {"taskId": made, "action": "VARIATION", "index": 2,
                                      "state": job["steps"][0]["id"]}
    errors = refused(r.engine, {"action": "ACTION", "taskId": made, "customId": "MJ::x"})
    assert errors[0]["path"] == "customId"
