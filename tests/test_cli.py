"""The ``mjflow`` command line as a user runs it: a subprocess against a whole stack
(simulator, web, worker, beat). Exit codes, --json, bad files, Ctrl-C, and a batch that
is killed mid-run and rerun without any upstream task submitted twice."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.stack import Stack
from worker.batches import batch_id_for

MJFLOW = str(Path(sys.executable).parent / "mjflow")


@pytest.fixture(scope="module")
def stack():
    with Stack(speed=100) as s:
        yield s


def run(stack: Stack, *args: str, cwd: Path | None = None, timeout_s: float = 120,
        env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([MJFLOW, *args], env=env or stack.env, cwd=cwd, capture_output=True, check=False,
                          text=True, timeout=timeout_s)


def batch_view(stack: Stack, batch_id: str) -> dict:
    return requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=stack.headers, timeout=5).json()


def test_bad_lines_are_all_reported_and_nothing_is_submitted(stack, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('a good prompt\n{"prompt": 12}\n\n{broken\n{"action": "BLEND", "base64Array": []}\n'
                 '{"prompt": "x", "colour": "red"}\nanother good one\n', encoding="utf-8")
    res = run(stack, "batch", str(f))
    assert res.returncode == 2, res.stderr
    for line, words in [(2, "prompt: Input should be a valid string"), (4, "malformed JSON"),
                        (5, "BLEND needs base64Array"), (6, "colour: Extra inputs are not permitted")]:
        assert f"{f}:{line}: {words}" in res.stderr, res.stderr
    assert "4 bad line(s)" in res.stderr and "nothing submitted" in res.stderr
    assert stack.r.zcard(f"{stack.prefix}:batches") == 0
    as_json = run(stack, "batch", str(f), "--json")
    assert as_json.returncode == 2
    assert [e["line"] for e in json.loads(as_json.stdout)["errors"]] == [2, 4, 5, 6]
    skipped = run(stack, "batch", str(f), "--skip-invalid", "--detach", "--json")
    assert skipped.returncode == 0, skipped.stderr
    view = json.loads(skipped.stdout)
    assert view["total"] == 2 and view["submitted"]["created"] == 2
    assert run(stack, "batch", str(tmp_path / "missing.jsonl")).returncode == 2


def test_skip_invalid_counts_duplicate_keys_and_a_retry_that_cannot_help(stack, tmp_path):
    f = tmp_path / "skus.jsonl"
    f.write_text('{"prompt": "a red fox", "key": "sku-1"}\n'
                 '{"prompt": "a blue fox", "key": "sku-1"}\n'
                 '{"prompt": "a green fox", "then": ["U5"]}\n'
                 '{"prompt": "a zoomed fox", "key": "sku-2", "then": ["Zoom Out 2x"]}\n',
                 encoding="utf-8")
    res = run(stack, "batch", str(f))
    assert res.returncode == 2
    assert (f"{f}:2: key: key 'sku-1' is used by more than one item (lines 1 and 2)"
            in res.stderr), res.stderr
    assert f"{f}:3: then[0]: button 'U5' can never be offered" in res.stderr
    assert "valid labels: U1, U2, U3, U4" in res.stderr and "2 bad line(s)" in res.stderr
    done = run(stack, "batch", str(f), "--skip-invalid", "--json")
    assert "skipping 2 bad line(s): 2, 3" in done.stderr, done.stderr
    view = json.loads(done.stdout)
    assert view["submitted"] == {"created": 2, "done": 0, "inProgress": 0, "retried": 0,
                                 "renewed": 0, "skipped": 2}
    assert view["total"] == 2 and view["counts"]["succeeded"] == 1 and view["counts"]["partial"] == 1
    # the Zoom Out a grid never offers failed: a retry cannot help, and says so (exit 1)
    retried = run(stack, "retry", str(f), "--failed")
    assert retried.returncode == 1, retried.stdout + retried.stderr
    assert "0 step(s) of 0 job(s) retried" in retried.stdout
    assert "(sku-2) Zoom Out 2x: button 'Zoom Out 2x' was never offered by IMAGINE" in retried.stdout


def test_batch_killed_interrupted_and_rerun_submits_each_task_once(stack, tmp_path):
    lines = [json.dumps({"prompt": f"resume item {i}", "then": ["U1"]}) if i % 3 == 0
             else f"resume item {i} --ar 3:2" for i in range(12)]
    f = tmp_path / "prompts.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tasks_expected = 12 + 4
    bid = batch_id_for(str(f.resolve()))
    before = stack.sim_stats()["submissions"]

    # 1: SIGKILL once a few items finished
    proc = subprocess.Popen([MJFLOW, "batch", str(f)], env=stack.env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    view: dict = {}
    while time.monotonic() < deadline:
        if stack.r.exists(f"{stack.prefix}:batch:{bid}"):
            view = batch_view(stack, bid)
            if view["finished"] >= 2:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert view and not view["done"], view

    # 2: rerun to the end
    res = run(stack, "batch", str(f), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    final = json.loads(res.stdout)
    assert final["status"] == "succeeded" and final["counts"]["succeeded"] == 12
    assert final["submitted"]["created"] == 0
    stats = stack.sim_stats()
    assert stats["duplicate_submissions"]["count"] == 0, stats["duplicate_submissions"]
    made = {k: v - before.get(k, 0) for k, v in stats["submissions"].items()}
    assert made == {"IMAGINE": 12, "UPSCALE": 4}, made
    assert sum(made.values()) == tasks_expected

    # 3: once more: nothing new at all
    again = run(stack, "batch", str(f), "--detach", "--json", cwd=tmp_path)
    assert again.returncode == 0
    assert json.loads(again.stdout)["submitted"] == {"created": 0, "done": 12, "inProgress": 0,
                                                     "retried": 0, "renewed": 0, "skipped": 0}
    assert stack.sim_stats()["submissions"] == stats["submissions"]

    # the report, by file path
    out = tmp_path / "report.csv"
    rep = run(stack, "report", str(f), "--format", "csv", "-o", str(out), cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and {r["status"] for r in rows} == {"succeeded"}
    assert all(r["imageKeys"] for r in rows)
    assert [r["key"].split(":")[0] for r in rows] == [f"line-{i}" for i in range(1, 13)]
    rep_json = run(stack, "report", bid, "--json")
    assert len(json.loads(rep_json.stdout)["items"]) == 12
    st = run(stack, "status", str(f))
    assert st.returncode == 0 and "12/12 finished" in st.stdout


def test_submit_status_cancel_retry_and_exit_codes(stack, tmp_path):
    res = run(stack, "submit", "a quick lighthouse", "--then", "U1", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    view = json.loads(res.stdout)
    assert view["status"] == "succeeded" and all(s["images"] for s in view["steps"])
    plain = run(stack, "submit", "another", "--wait")
    assert plain.returncode == 0 and plain.stdout.startswith("job_") and "IMAGINE: " in plain.stdout
    st = run(stack, "status", view["id"], "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["id"] == view["id"]
    assert run(stack, "status", "job_doesnotexist").returncode == 4
    assert run(stack, "report", "bat_doesnotexist").returncode == 4
    assert run(stack, "cancel", "job_doesnotexist").returncode == 4
    assert run(stack, "submit", "x", "--priority", "12").returncode == 2

    # a batch that cannot finish soon: pause dispatch, then cancel it
    stack.set_faults(stuck=1.0)
    f = tmp_path / "stuck.jsonl"
    f.write_text("stuck one\nstuck two\n")
    res = run(stack, "batch", str(f), "--detach", "--json")
    assert res.returncode == 0
    bid = json.loads(res.stdout)["id"]
    pending = run(stack, "status", bid)
    assert pending.returncode == 5, pending.stdout
    waited = run(stack, "batch", str(f), "--timeout", "1", "--json")
    assert waited.returncode == 5
    # Ctrl-C while it watches: exit 130, the batch goes on
    err = tmp_path / "watch.err"
    with err.open("w") as fh:
        proc = subprocess.Popen([MJFLOW, "batch", str(f)], env=stack.env, stdout=subprocess.DEVNULL,
                                stderr=fh)
    deadline = time.monotonic() + 30
    while f"batch {bid}:" not in err.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=15)
    assert code == 130, err.read_text()
    assert "goes on in the workers" in err.read_text() and "0 new" in err.read_text()
    cancelled = run(stack, "cancel", bid, "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["cancelled"] == 2
    stack.set_faults(stuck=0.0)
    retried = run(stack, "retry", bid, "--failed", "--json")
    assert retried.returncode == 0 and "retried" in json.loads(retried.stdout)
    resumed = run(stack, "resume", "--json")
    assert resumed.returncode == 0
    assert [u["window"]["paused"] for u in json.loads(resumed.stdout)["upstreams"]] == [False]


def test_config_and_service_errors_exit_3(stack):
    env = {**stack.env, "MJFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    res = run(stack, "status", "job_x", env=env)
    assert res.returncode == 3 and "Redis unreachable" in res.stderr
    env = {**stack.env, "MJFLOW_STORAGE_URL": "ftp://nope"}
    res = run(stack, "status", "job_x", env=env)
    assert res.returncode == 3 and "MJFLOW_STORAGE_URL" in res.stderr


def test_sim_forwards_its_arguments(stack):
    res = run(stack, "sim", "--help")
    assert res.returncode == 0 and "--profile" in res.stdout
