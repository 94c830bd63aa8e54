"""Benchmark 1, the callback receiver: valid callbacks per second, latency, CPU per
callback, and zero lost in a 20,000-callback burst.

Setup: real steps, made the normal way. K imagine jobs are submitted to a simulator that
has K running slots at a crawl (speed 0.001: nothing finishes), so every step is
``submitted`` with an upstream task id. Then the Celery worker and beat are stopped: the
web app (gunicorn, 2 workers x 4 threads as in the Procfile) is alone with Redis, and
every accepted callback stays queued in Redis where it can be counted.

Each callback is the simulator's own task JSON for its step (IN_PROGRESS), POSTed to
``/hooks/mj/<step>/<token>`` by :mod:`bench.loadgen` (a separate process, 16 keep-alive
connections). The floor is :mod:`bench.floor_app`: a bare Flask app under the same
gunicorn flags that reads the body and answers 204.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness as h
from tests.support.stack import BIN
from worker.dev.localnet import Procs, free_port, wait_http

NAME = "receiver"
CONNECTIONS = 16


def loadgen(port: int, reqs_file: Path, **kw: Any) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix="mjbench-loadgen-", suffix=".json",
                                     delete=False) as fh:
        out = Path(fh.name)
    argv = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--requests",
            str(reqs_file), "--connections", str(CONNECTIONS), "--out", str(out)]
    for key, value in kw.items():
        argv += [f"--{key}", str(value)]
    subprocess.run(argv, cwd=h.ROOT, check=True, timeout=600)
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def measure(port: int, web_pid: int, reqs_file: Path, redis_pid: int | None,
            **kw: Any) -> dict[str, Any]:
    """Run the load generator against ``port``; add the server's CPU per request."""
    cpu0 = h.tree_cpu_s(web_pid)
    red0 = h.tree_cpu_s(redis_pid) if redis_pid else 0.0
    res = loadgen(port, reqs_file, **kw)
    cpu1 = h.tree_cpu_s(web_pid)
    red1 = h.tree_cpu_s(redis_pid) if redis_pid else 0.0
    sent = res["total"]  # the CPU also covers the warm-up requests
    res["server_cpu_ms"] = (cpu1 - cpu0) * 1000 / sent if sent else None
    res["redis_cpu_ms"] = (red1 - red0) * 1000 / sent if sent else None
    return res


def queue_key(stack: h.BenchStack, queue: str) -> str | None:
    """The Redis list kombu keeps ``queue`` in (under the Celery ``global_keyprefix``)."""
    for key in stack.r.scan_iter(f"{stack.prefix}:*{queue}*", count=1000):
        if stack.r.type(key) == "list":
            return key
    return None


def setup_steps(stack: h.BenchStack, k: int) -> list[tuple[str, str]]:
    """Submit ``k`` imagine jobs and wait until each step has its upstream task id."""
    batch = stack.submit_batch([{"prompt": f"receiver bench {i}"} for i in range(k)], "recv")
    job_ids = stack.batch_job_ids(batch["id"])
    deadline = time.monotonic() + 120
    steps: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        pipe = stack.r.pipeline()
        for job_id in job_ids:
            pipe.lindex(f"{stack.prefix}:job:{job_id}:steps", 0)
        step_ids = pipe.execute()
        pipe = stack.r.pipeline()
        for sid in step_ids:
            pipe.hmget(f"{stack.prefix}:step:{sid}", "status", "task_id")
        steps = [(sid, task) for sid, (status, task) in zip(step_ids, pipe.execute())
                 if task and status in ("submitted", "running")]
        if len(steps) == k:
            return steps
        time.sleep(0.2)
    raise TimeoutError(f"only {len(steps)} of {k} steps submitted\n{stack.tail_logs()}")


def callback_requests(stack: h.BenchStack, steps: list[tuple[str, str]],
                      progress: str = "46%") -> list[list[str]]:
    from worker.flow.tokens import hook_token

    reqs = []
    for sid, task_id in steps:
        task = stack.sim.sim.upstream_task(task_id)
        task.update(status="IN_PROGRESS", progress=progress)
        reqs.append([f"/hooks/mj/{sid}/{hook_token(h.HOOK_SECRET, sid)}",
                     json.dumps(task, ensure_ascii=False)])
    return reqs


def make_running(stack: h.BenchStack, steps: list[tuple[str, str]], port: int) -> None:
    """One IN_PROGRESS callback per step (the worker still runs): every step is running."""
    import requests

    with requests.Session() as http:
        for path, body in callback_requests(stack, steps, "0%"):
            http.post(f"http://127.0.0.1:{port}{path}", data=body, timeout=10,
                      headers={"Content-Type": "application/json"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pipe = stack.r.pipeline()
        for sid, _ in steps:
            pipe.hget(f"{stack.prefix}:step:{sid}", "status")
        if all(st == "running" for st in pipe.execute()):
            return
        time.sleep(0.2)
    raise TimeoutError("steps never became running")


def run(quick: bool = False) -> dict[str, Any]:
    k = 100 if quick else 500
    duration = 2.0 if quick else 10.0
    burst = 2_000 if quick else 20_000
    redis_pid = h.redis_server_pid()
    work = Path(tempfile.mkdtemp(prefix="mjbench-recv-"))
    reqs_file = work / "reqs.json"
    stack = h.BenchStack(speed=0.001, callbacks=False,
                         sim_options={"core_size": k, "queue_size": 0},
                         env_extra={"MJFLOW_MAX_IN_FLIGHT": str(k),
                                    "MJFLOW_TICK_INTERVAL_S": "0.5",
                                    "MJFLOW_POLL_INTERVAL_S": "3600",
                                    "MJFLOW_HEARTBEAT_PUSH_S": "3600"})
    details: dict[str, Any] = {"steps": k, "connections": CONNECTIONS}
    with stack:
        steps = setup_steps(stack, k)
        half = k // 2
        submitted, running = steps[:half], steps[half:]
        make_running(stack, running, stack.web_port)
        stack.kill("beat")
        stack.kill("worker")
        # the common case: progress of running steps (recorded by the receiver alone)
        reqs_file.write_text(json.dumps(callback_requests(stack, running)))
        details["body_bytes"] = len(json.loads(reqs_file.read_text())[0][1])
        web_pid = stack.pid("web")
        loadgen(stack.web_port, reqs_file, count=500)   # warm the web workers up
        mj = measure(stack.web_port, web_pid, reqs_file, redis_pid, duration=duration,
                     warmup=1.0)
        details["mjflow_throughput"] = mj
        # snapshots the worker must see (submitted steps): kept in the inbox, coalesced
        inbox_file = work / "inbox.json"
        inbox_file.write_text(json.dumps(callback_requests(stack, submitted)))
        mj_inbox = measure(stack.web_port, web_pid, inbox_file, redis_pid, duration=duration,
                           warmup=1.0)
        details["mjflow_inbox_throughput"] = mj_inbox

        qkey = queue_key(stack, "mjflow.reconcile")
        accepted0 = stack.counters("callbacks").get("accepted", 0)
        b = measure(stack.web_port, web_pid, inbox_file, redis_pid, count=burst)
        inbox_file.unlink()
        qkey = qkey or queue_key(stack, "mjflow.reconcile")
        accepted = stack.counters("callbacks").get("accepted", 0) - accepted0
        queued = stack.r.llen(qkey) if qkey else 0
        kept = stack.r.hlen(f"{stack.prefix}:inbox")
        ok = b["statuses"].get("204", 0)
        lost = burst - min(ok, accepted) + (len(submitted) - kept)
        details["burst"] = {**b, "sent": burst, "answered_204": ok, "counter_accepted": accepted,
                            "reconcile_queued": queued, "snapshots_kept": kept,
                            "queue_key": qkey, "lost": lost}

    floor_port = free_port()
    procs = Procs(work)
    floor = procs.spawn("floor", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{floor_port}",
                                  "--workers", "2", "--threads", "4", "bench.floor_app:create_app()"])
    try:
        wait_http(f"http://127.0.0.1:{floor_port}/healthz")
        loadgen(floor_port, reqs_file, count=500)
        fl = measure(floor_port, floor.pid, reqs_file, None, duration=duration, warmup=1.0)
        details["floor_throughput"] = fl
    finally:
        procs.stop_all(timeout_s=20)
        shutil.rmtree(work, ignore_errors=True)

    bd = details["burst"]
    rows = [
        h.row("valid callbacks per second (progress of running steps)", "req/s", mj["rps"],
              {"floor": fl["rps"]}, lower_is_better=False),
        h.row("valid callbacks per second (snapshots for the worker)", "req/s",
              mj_inbox["rps"], {"floor": fl["rps"]}, lower_is_better=False),
        h.row("latency p50", "ms", mj["p50_ms"], {"floor": fl["p50_ms"]}, lower_is_better=True),
        h.row("latency p99", "ms", mj["p99_ms"], {"floor": fl["p99_ms"]}, lower_is_better=True),
        h.row("gunicorn CPU per callback", "ms", mj["server_cpu_ms"],
              {"floor": fl["server_cpu_ms"]}, lower_is_better=True),
        h.row("redis-server CPU per callback", "ms", mj["redis_cpu_ms"], {"floor": 0.0},
              lower_is_better=True, ratios=False),
        h.row(f"burst of {burst:,}: answered 204", "", float(bd["answered_204"]),
              {"floor": None}, lower_is_better=False, ratios=False),
        h.row(f"burst of {burst:,}: counted accepted", "", float(bd["counter_accepted"]),
              {"floor": None}, lower_is_better=False, ratios=False),
        h.row(f"burst of {burst:,}: snapshots kept (one per step)", "", float(bd["snapshots_kept"]),
              {"floor": None}, lower_is_better=False, ratios=False),
        h.row(f"burst of {burst:,}: reconcile messages queued (all runs, one per step)", "",
              float(bd["reconcile_queued"]), {"floor": None}, lower_is_better=True,
              ratios=False),
        h.row(f"burst of {burst:,}: lost", "", float(bd["lost"]), {"floor": None},
              lower_is_better=True, ratios=False),
        h.row(f"burst of {burst:,}: rate", "req/s", bd["rps"], {"floor": None},
              lower_is_better=False, ratios=False),
    ]
    notes = [
        (f"{CONNECTIONS} keep-alive connections from bench/loadgen.py (one asyncio process on "
        f"the same 2 cores; it used {mj['client_cpu_s'] / max(mj['seconds'], 1e-9):.2f} "
        "cores during the mjflow run)"),
        ("mjflow's receiver per callback: token HMAC, JSON parse + model validation, one "
        "Lua script (check, evidence, next check, progress or the coalesced snapshot, count); "
        "a Celery publish only for the first snapshot of a step the worker has not taken yet; "
        "no log line at INFO"),
        (f"{len(running)} running steps get progress (the same 46 % each time: after the first, "
         f"a stale copy that changes nothing), {len(submitted)} submitted steps get snapshots "
         "for the worker (each one rewrites the step's inbox entry)"),
        ("the Celery worker was stopped, so the reconcile messages stayed queued and were "
        f"counted in Redis ({bd['queue_key']}); nothing else ran beside gunicorn"),
    ]
    floor_goal = 0.7 * fl["rps"]
    goals = [
        h.goal("valid callbacks/s (snapshots for the worker) vs 0.7 × the floor",
               mj_inbox["rps"], floor_goal, at_most=False, unit="req/s",
               limit=f"CPU: {mj_inbox['server_cpu_ms']:.2f} ms of gunicorn per callback against "
                     f"the floor's {fl['server_cpu_ms']:.2f} ms (Flask routing, HMAC, JSON "
                     "parsing and validation, the script's round trip)"),
        h.goal("valid callbacks/s (progress) vs 0.7 × the floor", mj["rps"], floor_goal,
               at_most=False, unit="req/s",
               limit=f"CPU: {mj['server_cpu_ms']:.2f} ms of gunicorn per callback against "
                     f"the floor's {fl['server_cpu_ms']:.2f} ms"),
    ]
    return {"name": NAME, "title": "1. Callback receiver (gunicorn, 2 workers x 4 threads)",
            "baseline_names": ["floor"], "rows": rows, "notes": notes, "details": details,
            "goals": goals, "ok": bd["lost"] == 0 and bd["statuses"] == {"204": burst}}


if __name__ == "__main__":
    print(h.report(run("--quick" in sys.argv)))
