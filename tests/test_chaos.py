"""The chaos soak in CI: ``python -m bench.chaos --quick`` (the ~2-minute version of
``make chaos``) must exit 0. Deselect with ``-m "not chaos"`` (or ``-m "not slow"``).

The soak's verdicts are pure functions (:mod:`bench.chaos_checks`); the small tests below
feed them synthetic runs, so a soak that passes is known to be able to fail.
"""
from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from bench.chaos_checks import Collected, evaluate

ROOT = Path(__file__).resolve().parents[1]
with warnings.catch_warnings():          # "chaos" is not in pyproject's markers list
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    _chaos = pytest.mark.chaos
pytestmark = [pytest.mark.slow, _chaos]


@pytest.mark.timeout(900)
def test_quick_chaos_soak_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "bench.chaos", "--quick", "--jobs", "40"], cwd=ROOT,
                          capture_output=True, text=True, timeout=840, check=False)
    assert proc.returncode == 0, (proc.stdout[-6000:] + "\n--- stderr ---\n"
                                  + proc.stderr[-4000:])
    assert "no violations" in proc.stdout


# -- the checks themselves, on synthetic data ------------------------------------------------
SHA = "ab" * 32


def _job(i: int, status: str = "succeeded") -> dict:
    steps = []
    for n, label in enumerate(["IMAGINE", "U1"]):
        steps.append({"id": f"stp_{i}_{n}", "label": label, "status": "succeeded",
                      "taskId": f"t{i}{n}", "failReason": None,
                      "images": [{"key": f"job_{i}/{n:02d}-{label}.png", "sha256": SHA,
                                  "bytes": 100}]})
    return {"id": f"job_{i}", "status": status, "finishedAt": "2024-01-01T00:00:00Z",
            "steps": steps, "deliveries": [{"webhook_id": f"msg_{i}", "state": "delivered"}]}


def clean_run(n: int = 3) -> Collected:
    views = {f"job_{i}": _job(i) for i in range(n)}
    objects, heads = {}, {}
    for v in views.values():
        objects[f"{v['id']}/manifest.json"] = {"size": 10, "versions": 1, "etags": ["m"],
                                               "times": [0.0]}
        for s in v["steps"]:
            key = s["images"][0]["key"]
            objects[key] = {"size": 100, "versions": 1, "etags": ["e"], "times": [0.0]}
            heads[key] = {"size": 100, "sha256": SHA}
    events = {jid: [{"msg_id": f"msg_{jid.split('_')[1]}", "type": "job.succeeded",
                     "data": {"jobId": jid, "status": "succeeded",
                              "images": [s["images"][0]["key"] for s in v["steps"]]}}]
              for jid, v in views.items()}
    timelines = {f"t{i}{k}": {"state": f"stp_{i}_{k}", "stuck": False, "willFail": False,
                              "account": "1", "events": []}
                 for i in range(n) for k in range(2)}
    return Collected(
        n_jobs=n, job_ids=list(views), submit_errors=[], views=views,
        listing_counts={"succeeded": n}, sim_stats={
            "submissions": {"IMAGINE": n, "UPSCALE": n},
            "duplicate_submissions": {"count": 0, "items": []}, "callbacks": {}, "faults": {},
            "queue_full_answers": 5},
        timelines=timelines,
        counters={"effects": {"job_finished": n, "stored": 2 * n}, "submits": {}},
        queues={"poll": 0, "deadline": 0}, celery={"mjflow.submit": 0}, celery_unacked=0,
        objects=objects, heads=heads, byte_hashes={k: SHA for k in heads}, events=events,
        bad_events=[], ambiguous_steps=[],
        chaos={"worker_kills": 3, "web_restarts": 1, "redis_restarts": 1, "s3_outages": 1,
               "redis_aof_ok": True, "terminal": {"in_time": True}},
        rss_mb={"worker (end)": 300.0}, max_rss_mb=1024.0, deadlines={"step": 1, "upscale": 1})


def test_checks_pass_a_clean_run():
    verdict = evaluate(clean_run(), expect={"worker_kills": 1, "burst": 5})
    assert verdict.ok, verdict.violations


def _violations(mutate) -> list[str]:  # type: ignore[no-untyped-def]
    c = copy.deepcopy(clean_run())
    mutate(c)
    return evaluate(c, expect={"worker_kills": 1, "burst": 5}).violations


@pytest.mark.parametrize("name,mutate,needle", [
    ("open job", lambda c: c.views["job_0"].update(status="running"), "not terminal"),
    ("late", lambda c: c.chaos["terminal"].update(in_time=False, count_at_limit=2,
                                                  duration_s=10, settled_after_chaos_s=5),
     "within --duration-s"),
    ("duplicate", lambda c: c.sim_stats["duplicate_submissions"]["items"].append(
        {"kind": "state", "taskIds": ["t00", "t99"]}), "without an ambiguous resubmit"),
    ("missing object", lambda c: c.objects.pop("job_1/01-U1.png"), "missing from S3"),
    ("extra object", lambda c: c.objects.update({"job_1/09-U9.png": {"versions": 1}}),
     "no job lists"),
    ("bad checksum", lambda c: c.heads["job_2/00-IMAGINE.png"].update(sha256="cd" * 32),
     "sha256 metadata"),
    ("bad bytes", lambda c: c.byte_hashes.update({"job_2/00-IMAGINE.png": "00"}),
     "do not hash"),
    ("changed rewrite", lambda c: c.objects["job_0/00-IMAGINE.png"].update(
        versions=2, etags=["a", "b"]), "different bytes"),
    ("stored twice", lambda c: c.counters["effects"].update(stored=7), "stored=7"),
    ("no event", lambda c: c.events.pop("job_1"), "without a signed event"),
    ("bad signature", lambda c: c.bad_events.append({"why": "WebhookVerificationError"}),
     "failed verification"),
    ("two events", lambda c: c.events["job_1"].append(
        {**c.events["job_1"][0], "msg_id": "msg_other"}), "more than one distinct event"),
    ("deadline", lambda c: c.views["job_0"]["steps"][1].update(
        status="failed", images=[], failReason="ran for 2 min without finishing (deadline 1 min)"),
     "faults do not explain"),
    ("busy queue", lambda c: c.queues.update(storing=2), "not empty"),
    ("celery", lambda c: c.celery.update({"mjflow.store": 1}), "Celery queues not empty"),
    ("no kills", lambda c: c.chaos.update(worker_kills=0), "worker kills"),
])
def test_checks_catch_each_violation(name, mutate, needle):
    found = _violations(mutate)
    assert any(needle in v for v in found), (name, found)


def test_a_deadline_failure_of_a_stuck_task_is_fine():
    def stuck(c: Collected) -> None:
        step = c.views["job_0"]["steps"][1]
        step.update(status="failed", images=[], failReason="ran for 2 min without finishing (deadline 1 min)")
        c.timelines[step["taskId"]]["stuck"] = True
        c.objects.pop("job_0/01-U1.png")
        c.counters["effects"]["stored"] -= 1
        c.views["job_0"]["status"] = "partial"
        c.listing_counts = {"succeeded": 2, "partial": 1}
        c.events["job_0"][0].update(type="job.partial")
        c.events["job_0"][0]["data"].update(status="partial", images=["job_0/00-IMAGINE.png"])

    assert _violations(stuck) == []


def test_a_duplicate_from_a_counted_ambiguous_resubmit_is_explained():
    def resubmitted(c: Collected) -> None:
        c.timelines["t99"] = {"state": "stp_0_1", "stuck": False, "account": "1", "events": []}
        c.sim_stats["duplicate_submissions"]["items"].append(
            {"kind": "action", "parentId": "t00", "customId": "MJ::up::1", "taskIds": ["t01", "t99"]})
        c.counters["submits"]["ambiguous_resubmits"] = 1
        c.ambiguous_steps = ["stp_0_1"]

    assert _violations(resubmitted) == []

    def state_unknown(c: Collected) -> None:
        resubmitted(c)
        for t in ("t01", "t99"):
            c.timelines[t]["state"] = None
        c.views["job_0"]["steps"][1].update(parent="stp_0_0", customId="MJ::up::1")

    assert _violations(state_unknown) == []


def test_a_resubmit_needs_a_lost_answer_or_an_interruption():
    def groundless(c: Collected) -> None:
        c.resubmits = [{"step": "stp_1_1", "at": 1000.0, "started": 979.0}]
        c.ambiguous_steps = ["stp_1_1"]

    assert any("neither lost" in v for v in _violations(groundless))

    def timed_out(c: Collected) -> None:
        groundless(c)
        c.lost_answers = {"stp_1_1": [982.0]}

    assert _violations(timed_out) == []

    def killed(c: Collected) -> None:
        groundless(c)
        c.chaos["timeline"] = [(20.0, "worker SIGKILL", 980.5)]

    assert _violations(killed) == []

    def redis_down(c: Collected) -> None:
        groundless(c)
        c.chaos["redis_down_wall"] = [[975.0, 981.0]]

    assert _violations(redis_down) == []
