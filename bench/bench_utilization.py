"""Benchmark 4, utilization: how close to the account's capacity a batch runs.

``JOBS`` jobs (imagine → U1) handed over at once to a simulated account with 3 running
slots and 10 queued (the simulator's relative durations: imagine 30 s, upscale 10 s at
real pace, both divided by ``SPEED``). Ideal makespan = the upstream work (the sum of
every task's run time, from the simulator's own records) / 3 slots. Makespan = from
handing the batch over to the last image stored.

mjflow runs as in production (callbacks, its dispatch window of 13). The naive baseline
submits as fast as it can: 32 threads (more than the 13 the account takes), each pausing
5 s (real pace) after a queue-full answer. The simulator serves cached images
(:func:`bench.harness.fast_images`) so that its own rendering does not eat the cores.

Then the same kind of batch, clean and faulty, for one account, for eight accounts behind
one upstream and for eight accounts as eight upstreams (:mod:`bench.utilization_faults`):
a second result.

    python -m bench.bench_utilization [--quick] [--faults-only]
"""
from __future__ import annotations

import sys
from typing import Any

from bench import harness as h
from bench import scenarios as sc
from bench import utilization_faults

NAME = "utilization"
CAPACITY = 3
NAIVE_THREADS = 32


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    steps = [s for s in run["steps"] if s.get("started_s") and s.get("finish_s")]
    work = sum(s["finish_s"] - s["started_s"] for s in steps)
    ideal = work / CAPACITY
    by_job: dict[Any, float] = {}
    for s in run["steps"]:
        if s["stored_s"]:
            by_job[s["job"]] = max(by_job.get(s["job"], 0.0), s["stored_s"])
    turnaround = [t - run["start_s"] for t in by_job.values()]
    first_start = min((s["started_s"] for s in steps), default=run["start_s"])
    last_finish = max((s["finish_s"] for s in steps), default=run["end_s"])
    req = run["requests"]
    submits = sum(v for k, v in req["by_endpoint"].items() if k.startswith("submit_"))
    return {
        "work_s": work, "ideal_s": ideal, "makespan_s": run["makespan_s"],
        "ratio": run["makespan_s"] / ideal if ideal else None,
        "busy_fraction": work / (CAPACITY * (last_finish - run["start_s"])) if steps else None,
        "first_start_s": first_start - run["start_s"],
        "tail_s": run["end_s"] - last_finish,
        "queue_full": run["queue_full"], "submits": submits,
        "accepted": len(steps), "peak_running": run["sim"].get("peak_running"),
        "turnaround_p50_s": h.pct(turnaround, 0.5), "turnaround_p99_s": h.pct(turnaround, 0.99),
        "api_per_task": req["api_per_task"], "completed_tasks": sc.completed(run),
    }


def run(quick: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    return run_clean(quick), utilization_faults.run(quick)


def run_clean(quick: bool = False) -> dict[str, Any]:
    jobs = 30 if quick else 300
    speed = 100.0 if quick else 50.0
    then = ["U1"]
    mj = sc.run_mjflow(speed, jobs, then, callbacks=True, fast=True, events=False,
                       timeout_s=900)
    nv = sc.run_baseline("naive", speed, jobs, then, concurrency=NAIVE_THREADS, fast=True,
                         timeout_s=900)
    a, b = analyse(mj), analyse(nv)
    expected = jobs * (1 + len(then))

    def r(metric: str, unit: str, key: str, lower: bool, ratios: bool = True,
          scale: float = 1.0) -> dict[str, Any]:
        mv = None if a[key] is None else a[key] * scale
        bv = None if b[key] is None else b[key] * scale
        return h.row(metric, unit, mv, {"naive": bv}, lower_is_better=lower, ratios=ratios)

    rows = [
        r("makespan / ideal makespan", "", "ratio", True),
        r("makespan", "s", "makespan_s", True),
        r("ideal makespan (work / 3 slots)", "s", "ideal_s", True, ratios=False),
        r("upstream slots busy (work / 3 × span)", "%", "busy_fraction", False, scale=100),
        r("queue-full answers received", "", "queue_full", True),
        r("submits sent", "", "submits", True),
        r("job turnaround p50 (batch handed over → last image stored)", "s",
          "turnaround_p50_s", True),
        r("job turnaround p99", "s", "turnaround_p99_s", True),
        r("API requests per finished task", "", "api_per_task", True),
    ]
    ok = a["completed_tasks"] == expected and b["completed_tasks"] == expected
    return {
        "name": NAME,
        "title": f"4. Utilization: {jobs} jobs (imagine → U1), 1 account of 3 running + 10 "
                 f"queued, speed {speed:g}",
        "baseline_names": ["naive"], "rows": rows,
        "notes": [
            (f"at speed {speed:g} an imagine runs {30 / speed:.2f} s and an upscale "
            f"{10 / speed:.2f} s; the naive queue-full pause is "
            f"{h.scaled(h.QUEUE_FULL_PAUSE_S, speed):.2f} s; mjflow's tick "
            f"{h.scaled(1, speed, h.TICK_FLOOR_S):.2f} s"),
            (f"naive: {NAIVE_THREADS} threads, one job each; mjflow: one batch via POST "
            "/v1/batches"),
            ("mjflow's compressed-time load: the account's whole event stream (12 callbacks "
            f"per job) arrives {speed:g}x faster than at real pace"),
        ] + ([] if ok else [(f"INCOMPLETE: mjflow stored {a['completed_tasks']}, naive "
                            f"{b['completed_tasks']} of {expected} tasks")]),
        "details": {"mjflow": {**a, "run": sc.summary(mj)}, "naive": {**b, "run": sc.summary(nv)}},
        "ok": ok,
    }


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    results = ((utilization_faults.run(quick),) if "--faults-only" in sys.argv
               else run(quick))
    for result in results:
        print(h.report(result))
        cont = result.get("contention")
        if cont:
            print(f"(other processes used {cont['foreign_cores']:.2f} cores meanwhile, "
                  f"redis {cont['redis_cores']:.2f}; load average {cont.get('loadavg', '?')})")
        if "--save" in sys.argv:
            h.save(result)
