"""The fleet without processes: its configuration, which upstream a job can go to, the
dispatch order, failover of queued roots, pinned follow-ups, and budgets (real Redis,
in-process engine; no request leaves: dispatch only claims slots)."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from worker.errors import ConfigError, SpecError
from worker.flow import budget
from worker.flow.submit import apply_answer
from worker.flow.tick import dispatch
from worker.job_ops import create_job, get_job
from worker.jobs.parse import parse_spec
from worker.jobs.routes import parse_route, route_of
from worker.jobs.spec import JobSpec
from worker.settings import load_settings
from worker.upstream import Answer, Outcome

SECRET = "sk-very-secret-key"


def fleet(*items: dict) -> str:
    out = []
    for i, item in enumerate(items):
        out.append({"url": f"http://127.0.0.1:{9000 + i}", "key": SECRET, **item})
    return json.dumps(out)


def test_a_malformed_list_fails_at_start_naming_the_item_and_field_never_the_key():
    cases = [
        ([{"name": "a", "url": "http://127.0.0.1:1"}, {"name": "a", "url": "http://127.0.0.1:2"}],
         "MJFLOW_UPSTREAMS[1].name: 'a' is used twice"),
        ([{"name": "ok", "url": "http://127.0.0.1:1", "key": SECRET, "profile": "nope"}],
         "MJFLOW_UPSTREAMS[0].profile"),
        ([{"name": "ok", "url": "http://127.0.0.1:1", "key": SECRET, "modes": ["SLOW"]}],
         "MJFLOW_UPSTREAMS[0].modes.0"),
        ([{"name": "ok", "url": "http://127.0.0.1:1", "costs": {"IMAGINE": -1}}],
         "MJFLOW_UPSTREAMS[0].costs: Value error, cost of IMAGINE is negative"),
    ]
    for items, needle in cases:
        with pytest.raises(ConfigError) as err:
            load_settings(upstreams=json.dumps(items))
        assert needle.replace("Value error, ", "") in str(err.value), str(err.value)
        assert SECRET not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(upstreams=fleet({"name": "a"}), upstream_url="http://127.0.0.1:1")
    assert "MJFLOW_UPSTREAMS and MJFLOW_UPSTREAM_URL are both set" in str(err.value)


def test_the_list_from_a_yaml_file_and_the_single_settings_as_a_fleet_of_one(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("- name: own\n  url: http://127.0.0.1:1\n  key: " + SECRET +
                    "\n  profile: trueai\n  maxInFlight: 26\n- name: overflow\n"
                    "  url: http://127.0.0.1:2\n  profile: uniapi\n  priority: 2\n")
    s = load_settings(upstreams_file=str(path))
    assert [(c.name, c.profile, c.max_in_flight, c.priority) for c in s.fleet] == [
        ("own", "trueai", 26, 1), ("overflow", "uniapi", None, 2)]
    assert SECRET not in repr(s.fleet) and SECRET not in repr(s)
    one = load_settings(upstream_url="http://127.0.0.1:3", upstream_profile="newapi",
                        max_in_flight=7)
    assert [(c.name, c.profile, c.max_in_flight) for c in one.fleet] == [("default", "newapi", 7)]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_settings(upstreams_file=str(bad))
    assert "MJFLOW_UPSTREAMS_FILE" in str(err.value) and "YAML" in str(err.value)


def test_a_job_goes_only_where_it_can_run(make_settings):
    s = make_settings(upstreams=fleet(
        {"name": "plain", "profile": "midjourney-proxy"},
        {"name": "video", "profile": "trueai", "modes": ["FAST"]},
        {"name": "fast-only", "profile": "dataeyes", "modes": ["FAST"]}))
    spec = JobSpec(action="VIDEO", prompt="waves", image="https://cdn.discordapp.com/a.png")
    assert s.fits(spec) == [] and spec.upstream == ["video"]       # only trueai has video
    blend = JobSpec(action="BLEND", base64Array=[PNG, PNG], mode="FAST")
    assert s.fits(blend) == [] and blend.upstream is None      # plain and video both can
    assert s.fits(JobSpec(prompt="x", mode="RELAX", upstream="fast-only")) == [
        ("upstream", "no enabled upstream among fast-only serves IMAGINE in RELAX")]
    assert s.fits(JobSpec(prompt="x", upstream=["nope"]))[0][1].startswith("no upstream 'nope'")
    action = JobSpec(action="ACTION", taskId="1712345678901", button="U1")
    assert "must name the one upstream" in s.fits(action)[0][1]
    with pytest.raises(SpecError) as err:
        parse_spec({"prompt": "x", "upstream": "Bad Name"}, max_image_bytes=1 << 20, fits=s.fits)
    assert err.value.errors[0]["path"] == "upstream"


def test_routes_follow_the_parent_and_the_pins(engine):
    job = engine.store.create(JobSpec(prompt="x", mode="RELAX", then=["U1"]))
    loaded, steps = engine.store.load(job.id)
    root, child = steps
    assert route_of(loaded, root, None) == "any.IMAGINE.RELAX.-"
    root.upstream = "beta"
    assert route_of(loaded, child, root) == "at.beta"
    assert parse_route("in.a+b.BLEND.FAST+RELAX.NIJI_JOURNEY").pins == ("a", "b")
    assert parse_route("any.IMAGINE.-.-").modes == ()


def _fleet_engine(make_engine, **extra):
    return make_engine(upstreams=fleet(
        {"name": "alpha", "priority": 1, "maxInFlight": 2, "costs": {"IMAGINE": 2}},
        {"name": "beta", "priority": 2, "maxInFlight": 2, "costs": {"IMAGINE": 1}}), **extra)


def _where(engine, job_ids):
    return [get_job(engine, j)["steps"][0]["upstream"] for j in job_ids]


def test_priority_first_then_overflow_and_a_paused_upstream_loses_its_queued_roots(make_engine):
    engine = _fleet_engine(make_engine)
    jobs = [create_job(engine, {"prompt": f"p{i}", "then": ["U1"]}, dispatch_now=False)["id"]
            for i in range(6)]
    claimed = dispatch(engine)
    assert len(claimed) == 4
    assert _where(engine, jobs) == ["alpha", "alpha", "beta", "beta", None, None]
    # alpha runs out of credit on its first submit: that root goes back to the queue and,
    # alpha paused, beta takes it when it has room; nothing is failed
    first = get_job(engine, jobs[0])["steps"][0]["id"]
    assert apply_answer(engine, jobs[0], first, "imagine",
                        Answer(Outcome.OUT_OF_CREDIT, "余额不足", code=25)) == "paused"
    assert engine.member("alpha").window.state()["paused"]
    assert dispatch(engine) == []                     # beta is full, alpha is paused
    second = get_job(engine, jobs[1])["steps"][0]["id"]
    apply_answer(engine, jobs[1], second, "imagine", Answer(Outcome.ACCEPTED, "ok", task_id="T2"))
    view = get_job(engine, jobs[1])
    child = view["steps"][1]
    assert view["steps"][0]["upstream"] == "alpha" and child["status"] == "waiting"


def test_equal_priorities_share_the_steps_by_free_slots_times_weight(make_engine):
    engine = make_engine(upstreams=fleet(
        *({"name": name, "maxInFlight": 13} for name in ("a", "b", "c", "d"))))
    jobs = [create_job(engine, {"prompt": f"p{i}"}, dispatch_now=False)["id"]
            for i in range(12)]
    assert len(dispatch(engine)) == 12
    assert sorted(Counter(_where(engine, jobs)).values()) == [3, 3, 3, 3]


def test_a_weight_of_three_takes_steps_while_its_free_slots_times_three_lead(make_engine):
    engine = make_engine(upstreams=fleet(
        {"name": "heavy", "maxInFlight": 4, "weight": 3}, {"name": "light", "maxInFlight": 4}))
    jobs = [create_job(engine, {"prompt": f"w{i}"}, dispatch_now=False)["id"] for i in range(4)]
    dispatch(engine)
    assert Counter(_where(engine, jobs)) == {"heavy": 3, "light": 1}


def test_cheapest_routing_and_budgets(make_engine):
    engine = _fleet_engine(make_engine, routing="cheapest", budget_per_day=3)
    jobs = [create_job(engine, {"prompt": f"p{i}"}, dispatch_now=False)["id"] for i in range(3)]
    dispatch(engine)
    assert _where(engine, jobs) == ["beta", "beta", "alpha"]      # beta costs 1, alpha 2
    for job_id in jobs:
        step = get_job(engine, job_id)["steps"][0]["id"]
        apply_answer(engine, job_id, step, "imagine",
                     Answer(Outcome.ACCEPTED, "ok", task_id=f"T-{job_id[-6:]}"))
    assert budget.spent_today(engine.store) == 4.0
    assert budget.spent_today(engine.store, "alpha") == 2.0
    assert get_job(engine, jobs[2])["spend"] == {"total": 2.0, "byUpstream": {"alpha": 2.0}}
    assert budget.blocker(engine.store, jobs[0], {}, None, 1.0, 3.0) == (
        "budget of 3 reached (MJFLOW_BUDGET_PER_DAY; spent 4)")
    assert budget.blocker(engine.store, jobs[0], {}, None, 0.0, 3.0) is None   # free: goes on
    assert budget.blocker(engine.store, jobs[0], {"maxCost": 1}, None, 1.0, None) == (
        "budget of 1 reached (the job's maxCost; spent 1)")


PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
       "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
