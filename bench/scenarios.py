"""One run of a workload through mjflow or a baseline, against a fresh simulator.

Both return the same shape, so every benchmark compares like with like::

    {"who", "jobs", "tasks", "start_s", "end_s", "makespan_s",
     "steps": [{"job", "label", "task_id", "status", "finish_s", "detected_s", "stored_s"}],
     "events": {job: seconds from the last step's upstream finish to the event},
     "sim": the simulator's /_sim/stats, "queue_full": queue-full answers received,
     "cpu_s": {process: CPU seconds during the run}, "contention": {...}}

``finish_s`` is when the simulator moved the task to SUCCESS (its own record), so
"SUCCESS → stored" is measured the same way for everyone. Task durations vary ±30 %
around the simulator's (:func:`bench.harness.varied_durations`), the same for every side.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import harness as h
from worker.dev.consumer import Consumer

#: Simulator endpoints that are API calls (the rest are image downloads).
API_ENDPOINTS = ("submit_imagine", "submit_action", "submit_modal", "task_fetch",
                 "task_list_by_condition", "task_list")
DOWNLOAD_ENDPOINTS = ("cdn", "mj_image")


def job_specs(n: int, then: list[str], *, prefix: str, callback_url: str | None = None
              ) -> list[dict[str, Any]]:
    specs = []
    for i in range(n):
        spec: dict[str, Any] = {"prompt": f"{prefix} {i}", "then": list(then)}
        if callback_url:
            spec["callbackUrl"] = callback_url
        specs.append(spec)
    return specs


def request_counts(sim_stats: dict[str, Any]) -> dict[str, Any]:
    req = sim_stats.get("requests", {})
    api = sum(v for k, v in req.items() if k in API_ENDPOINTS)
    downloads = sum(v for k, v in req.items() if k in DOWNLOAD_ENDPOINTS)
    succeeded = int(sim_stats.get("tasks", {}).get("SUCCESS", 0))
    return {"api": api, "downloads": downloads, "succeeded": succeeded,
            "by_endpoint": dict(req),
            "api_per_task": api / succeeded if succeeded else None,
            "downloads_per_task": downloads / succeeded if succeeded else None}


class WindowWatch:
    """Samples the dispatch windows (size, slots in use; summed over the fleet's upstreams)
    every ``every_s`` while a run goes, and applies fault patches to every simulator at set
    times (``at``: seconds after the batch is handed over, patch)."""

    def __init__(self, stack: h.BenchStack, at: list[tuple[float, dict[str, Any]]],
                 every_s: float = 0.1) -> None:
        self.stack, self.at, self.every_s = stack, sorted(at, key=lambda x: x[0]), every_s
        self.engine = stack.engine()
        self.sizes: list[float] = []
        self.in_use: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> WindowWatch:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        todo, keys, members = list(self.at), self.engine.keys, list(self.engine.fleet)
        while not self._stop.wait(self.every_s):
            while todo and time.monotonic() - self._t0 >= todo[0][0]:
                patch = todo.pop(0)[1]
                for sim in self.stack.simulators():
                    sim.sim.set_faults(patch)
            pipe = self.stack.r.pipeline(transaction=False)
            for m in members:
                pipe.hget(keys.window(m.name), "size")
                pipe.zcard(keys.slots(m.name))
            got = pipe.execute()
            self.sizes.append(sum(float(size or m.window.max)
                                  for m, size in zip(members, got[::2])))
            self.in_use.append(sum(got[1::2]))

    def result(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5)
        return {"size_min": min(self.sizes, default=None),
                "size_mean": sum(self.sizes) / len(self.sizes) if self.sizes else None,
                "in_use_mean": sum(self.in_use) / len(self.in_use) if self.in_use else None,
                "samples": len(self.sizes),
                "final": {m.name: m.window.state() for m in self.engine.fleet}}


def run_mjflow(speed: float, jobs: int, then: list[str], *, callbacks: bool = True,
               faults: dict[str, Any] | None = None, sim_options: dict[str, Any] | None = None,
               env_extra: dict[str, str] | None = None, fast: bool = False,
               events: bool = True, timeout_s: float = 600.0,
               at: list[tuple[float, dict[str, Any]]] | None = None,
               fleet: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``jobs`` jobs (imagine, then ``then``) as one batch through a whole mjflow; ``at``:
    fault patches for the simulators, each at so many seconds after the hand-over;
    ``fleet``: several simulated upstreams (``Stack.fleet``) instead of one of
    ``sim_options``."""
    sim_options = {**(sim_options or {})}
    if faults:
        sim_options["faults"] = faults
    profile = sim_options.pop("profile", "midjourney-proxy")     # the stack sets both sides
    stack = h.BenchStack(speed=speed, callbacks=callbacks, sim_options=sim_options,
                         env_extra=env_extra or {}, profile=profile, fleet=fleet)
    with ExitStack() as es:
        es.enter_context(h.varied_durations())
        if fast:
            es.enter_context(h.fast_images())
        consumer = Consumer(h.WEBHOOK_SECRET) if events else None
        if consumer:
            es.callback(consumer.close)
        es.enter_context(stack)
        time.sleep(1.0)   # let beat and the worker settle; startup CPU is not counted
        contention = h.Contention()
        cpu0 = stack.cpu()
        start = time.time()
        watch = WindowWatch(stack, at or []).start()
        batch = stack.submit_batch(job_specs(jobs, then, prefix="mjflow bench",
                                             callback_url=consumer.url if consumer else None),
                                   "bench")
        end = stack.wait_idle(timeout_s)
        window = watch.result()
        cpu1 = stack.cpu()
        job_ids = stack.batch_job_ids(batch["id"])
        if consumer:
            deadline = time.monotonic() + 30
            while len(consumer.arrivals) < len(job_ids) and time.monotonic() < deadline:
                time.sleep(0.05)
        cont = contention.result()
        steps, ev = [], {}
        for job_id in job_ids:
            view = stack.job(job_id)
            last_finish = None
            for s in view["steps"]:
                t = {k: h.parse_iso(v) for k, v in s["times"].items()}
                sim = stack.sim_of(s["upstream"])
                finish = h.upstream_finish_s(sim, s["taskId"])
                steps.append({"job": job_id, "label": s["label"], "task_id": s["taskId"],
                              "status": s["status"], "finish_s": finish,
                              "upstream": s["upstream"],
                              "started_s": h.upstream_start_s(sim, s["taskId"]),
                              "detected_s": t.get("storing"), "stored_s": t.get("succeeded")})
                if finish is not None:
                    last_finish = max(last_finish or 0.0, finish)
            if consumer and job_id in consumer.arrivals and last_finish is not None:
                ev[job_id] = consumer.arrivals[job_id] - last_finish
        sim = stack.sim_stats()
        stored_end = max((s["stored_s"] for s in steps if s["stored_s"]), default=end)
        return {
            "who": "mjflow", "jobs": jobs, "tasks": len(steps), "start_s": start,
            "end_s": stored_end, "makespan_s": stored_end - start, "steps": steps,
            "events": ev, "events_invalid": consumer.rejected if consumer else 0,
            "events_duplicate": consumer.duplicates if consumer else 0,
            "sim": sim, "requests": request_counts(sim),
            "queue_full": sim.get("queue_full_answers", 0),
            "cpu_s": {k: cpu1[k] - cpu0[k] for k in cpu1}, "contention": cont,
            "counters": {name: stack.counters(name) for name in ("callbacks", "polls",
                                                                  "submits", "storage",
                                                                  "answers")},
            "window": window,
            "timers": h.mjflow_timers(speed, callbacks) | (env_extra or {}),
        }


def run_baseline(kind: str, speed: float, jobs: int, then: list[str], *,
                 sim_options: dict[str, Any] | None = None, concurrency: int = 13,
                 window: int = 13, fast: bool = False, timeout_s: float = 600.0
                 ) -> dict[str, Any]:
    """The ``naive`` or ``reseller`` baseline (a subprocess) against a fresh simulator."""
    from simulator.server import start as start_sim

    work = Path(tempfile.mkdtemp(prefix=f"mjbench-{kind}-"))
    out = work / "result.json"
    with ExitStack() as es:
        es.enter_context(h.varied_durations())
        if fast:
            es.enter_context(h.fast_images())
        sim = start_sim(port=0, speed=speed, **(sim_options or {}))
        es.callback(sim.stop)
        es.callback(shutil.rmtree, work, ignore_errors=True)
        argv = [sys.executable, "-m", "bench.baselines", kind, "--upstream", sim.url,
                "--speed", str(speed), "--jobs", str(jobs), "--concurrency", str(concurrency),
                "--window", str(window), "--storage", str(work / "images"),
                "--deadline-s", str(timeout_s), "--out", str(out)]
        for label in then:
            argv += ["--then", label]
        contention = h.Contention()
        subprocess.run(argv, cwd=h.ROOT, check=True, timeout=timeout_s + 60,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        cont = contention.result()
        res = json.loads(out.read_text())
        steps = []
        for rec in res["steps"]:
            steps.append({"job": rec["job"], "label": rec["label"], "task_id": rec["task_id"],
                          "status": rec["status"], "error": rec["error"],
                          "finish_s": h.upstream_finish_s(sim.sim, rec["task_id"]),
                          "started_s": h.upstream_start_s(sim.sim, rec["task_id"]),
                          "detected_s": rec["detected_at"], "stored_s": rec["stored_at"]})
        stats = sim.sim.stats()
        stored_end = max((s["stored_s"] for s in steps if s["stored_s"]),
                         default=res["ended_at"])
        return {
            "who": kind, "jobs": jobs, "tasks": len(steps), "start_s": res["started_at"],
            "end_s": stored_end, "makespan_s": stored_end - res["started_at"], "steps": steps,
            "events": {}, "sim": stats, "requests": request_counts(stats),
            "queue_full": res["queue_full"], "cpu_s": {kind: res["cpu_s"]},
            "max_rss_kb": res["max_rss_kb"], "timed_out": res["timed_out"],
            "contention": cont,
        }


def stored_latencies(run: dict[str, Any]) -> list[float]:
    """Seconds from each task's upstream SUCCESS to its image being stored."""
    return [s["stored_s"] - s["finish_s"] for s in run["steps"]
            if s["stored_s"] is not None and s["finish_s"] is not None]


def detect_latencies(run: dict[str, Any]) -> list[float]:
    return [s["detected_s"] - s["finish_s"] for s in run["steps"]
            if s["detected_s"] is not None and s["finish_s"] is not None]


def completed(run: dict[str, Any]) -> int:
    return sum(1 for s in run["steps"] if s["stored_s"] is not None)


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """The run without its per-step list (for the JSON results)."""
    lat = stored_latencies(run)
    ev = list(run["events"].values())
    out = {k: v for k, v in run.items() if k not in ("steps", "events", "sim")}
    out["sim"] = {k: run["sim"].get(k) for k in ("submissions", "answers", "callbacks",
                                                  "requests", "peak_running",
                                                  "queue_full_answers", "tasks",
                                                  "duplicate_submissions")}
    out["stored_latency_s"] = {"n": len(lat), "p50": h.pct(lat, 0.5), "p99": h.pct(lat, 0.99),
                               "max": max(lat) if lat else None}
    out["event_latency_s"] = {"n": len(ev), "p50": h.pct(ev, 0.5), "p99": h.pct(ev, 0.99),
                              "max": max(ev) if ev else None}
    out["completed_tasks"] = completed(run)
    return out


if __name__ == "__main__":  # a quick look: python -m bench.scenarios naive 20 6
    who, speed, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    r = (run_mjflow(speed, n, ["U1"]) if who == "mjflow"
         else run_baseline(who, speed, n, ["U1"]))
    print(json.dumps(summary(r), indent=1, default=str))
