"""Benchmarks 2 and 3 from the same runs.

2. Latency: upstream SUCCESS → image stored (→ consumer event delivered, mjflow only)
3. Upstream requests per finished task (the simulator's own counts)

Five runs of the same workload (``JOBS`` jobs, each imagine → U1, submitted at once)
against a fresh simulator at ``SPEED`` (1 account: 3 running + 10 queued):

* mjflow, callbacks delivered (the production setup);
* mjflow, every callback lost (``drop_callbacks: 1``): found by the schedule's polls (a
  running task no callback told of is looked at after the profile's pace; the first such
  find switches the upstream to polling);
* mjflow without callbacks configured (no ``MJFLOW_PUBLIC_URL``): the profile's 10 s polls;
* naive (13 threads: one job each, fetch every 5 s);
* reseller (one list-by-condition of all unfinished tasks every 15 s, 13 in flight).

Every interval above is real-pace and divided by ``SPEED``, the upstream's own pace too
(``pollIntervalS``, :func:`bench.harness.scaled_upstream`). Waiting for a poll scales
with it; processing time (callbacks, downloads, storing) does not, so at real pace the
polling figures grow ``SPEED`` times while mjflow's callback path stays where it is.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bench import harness as h
from bench import scenarios as sc

NAME_LATENCY = "latency"
NAME_REQUESTS = "requests"


def _ms(values: list[float], q: float) -> float | None:
    v = h.pct(values, q)
    return None if v is None else v * 1000


def real_pace(run: dict[str, Any], speed: float, polled: bool) -> list[float]:
    """SUCCESS → stored projected to real pace (seconds): a poll's wait (SUCCESS →
    detected) grows with the speed factor, the processing after it does not. A callback
    arrives when the task finishes, so nothing of the callback path is scaled."""
    out = []
    for s in run["steps"]:
        if s["stored_s"] is None or s["finish_s"] is None or s["detected_s"] is None:
            continue
        wait = max(0.0, s["detected_s"] - s["finish_s"])
        out.append((wait * speed if polled else wait) + (s["stored_s"] - s["detected_s"]))
    return out


def scenarios(speed: float, jobs: int, then: list[str]) -> dict[str, Callable[[], Any]]:
    """Each run of the benchmark, by name (not started)."""
    return {
        "mjflow": lambda: sc.run_mjflow(speed, jobs, then, callbacks=True, fast=True),
        "mjflow-lost": lambda: sc.run_mjflow(speed, jobs, then, callbacks=True, fast=True,
                                             faults={"drop_callbacks": 1.0}),
        "mjflow-poll": lambda: sc.run_mjflow(speed, jobs, then, callbacks=False, fast=True),
        # behind a reseller (new-api: no callbacks, a copy refreshed every 15 s)
        "mjflow-reseller": lambda: sc.run_mjflow(
            speed, jobs, then, callbacks=False, fast=True, sim_options={"profile": "newapi"},
            env_extra={"MJFLOW_UPSTREAM_PROFILE": "newapi",
                       "MJFLOW_POLL_INTERVAL_S": f"{h.scaled(15.0, speed):.4f}"}),
        "naive": lambda: sc.run_baseline("naive", speed, jobs, then, concurrency=13, fast=True),
        "reseller": lambda: sc.run_baseline("reseller", speed, jobs, then, window=13,
                                            fast=True),
    }


def probe(names: list[str], speed: float, jobs: int) -> list[str]:
    """Some of the runs alone, one line each: SUCCESS → stored p50/p99 projected to real
    pace, and API requests per finished task (``python -m bench.bench_latency --only
    mjflow-lost,naive --jobs 8``)."""
    found = scenarios(speed, jobs, ["U1"])
    lines = []
    for name in names:
        r = found[name]()
        proj = real_pace(r, speed, polled=(name != "mjflow"))
        p50, p99 = h.pct(proj, 0.5), h.pct(proj, 0.99)
        lines.append(f"{name}: {jobs} jobs at speed {speed:g}, SUCCESS → stored at real pace "
                     f"p50 {p50 if p50 is None else round(p50, 2)} s, p99 "
                     f"{p99 if p99 is None else round(p99, 2)} s ({len(proj)} tasks), "
                     f"{r['requests']['api_per_task']} requests a task, "
                     f"{r['requests']['by_endpoint']}")
        print(lines[-1], flush=True)
    return lines


def run(quick: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    speed = 40.0 if quick else 20.0
    jobs = 4 if quick else 18
    then = ["U1"]
    runs = {name: start() for name, start in scenarios(speed, jobs, then).items()}
    lat = {name: sc.stored_latencies(r) for name, r in runs.items()}
    base = {"naive": lat["naive"], "reseller": lat["reseller"]}
    modes = (("mjflow", "callbacks delivered"), ("mjflow-lost", "all callbacks lost"),
             ("mjflow-poll", "no callbacks configured"),
             ("mjflow-reseller", "behind a reseller (newapi, no callbacks)"))
    rows = []
    for key, label in modes:
        for q, qn in ((0.5, "p50"), (0.99, "p99")):
            rows.append(h.row(f"SUCCESS → stored {qn}, mjflow {label}", "ms", _ms(lat[key], q),
                              {n: _ms(v, q) for n, v in base.items()}, lower_is_better=True))
    for key, label in modes[:2]:
        ev = list(runs[key]["events"].values())
        for q, qn in ((0.5, "p50"), (0.99, "p99")):
            rows.append(h.row(f"SUCCESS → consumer event {qn}, mjflow {label}", "ms",
                              _ms(ev, q), {n: None for n in base}, lower_is_better=True,
                              ratios=False))
    proj = {name: real_pace(r, speed, polled=(name != "mjflow")) for name, r in runs.items()}
    for key, label in modes:
        rows.append(h.row(f"projected to real pace: SUCCESS → stored p50, mjflow {label}", "s",
                          h.pct(proj[key], 0.5),
                          {n: h.pct(proj[n], 0.5) for n in base}, lower_is_better=True))
    expected = jobs * (1 + len(then))
    incomplete = {name: expected - sc.completed(r) for name, r in runs.items()
                  if sc.completed(r) != expected}
    latency = {
        "name": NAME_LATENCY,
        "title": f"2. Latency: upstream SUCCESS → stored → event ({jobs} jobs imagine → U1, "
                 f"speed {speed:g})",
        "baseline_names": ["naive", "reseller"], "rows": rows,
        "notes": [
            (f"intervals at speed {speed:g}: naive fetch {h.scaled(h.NAIVE_FETCH_S, speed):.2f} s"
            f", reseller list {h.scaled(h.RESELLER_LIST_S, speed):.2f} s, mjflow polls "
            f"{h.scaled(60, speed):.2f} s with callbacks expected / "
            f"{h.scaled(10, speed):.2f} s without, tick "
            f"{h.scaled(1, speed, h.TICK_FLOOR_S):.2f} s"),
            "the baselines send no consumer event; their row is SUCCESS → stored",
            (f"projection: each poll's wait (SUCCESS → seen) × {speed:g}, plus the measured "
            "processing after it; callbacks are not scaled (they arrive at SUCCESS)"),
            (f"samples: {expected} tasks per run, {jobs} events; p99 of {expected} samples is "
            "close to the maximum"),
            ("everything not in the simulator's timeline is measured on this machine's clock: "
            "mjflow's step times (Redis), the baselines' own stamps, the consumer's arrivals"),
        ] + ([f"INCOMPLETE runs (tasks not stored): {incomplete}"] if incomplete else []),
        "details": {name: sc.summary(r) for name, r in runs.items()},
        "ok": not incomplete,
    }

    req = {name: r["requests"] for name, r in runs.items()}
    bq = {"naive": req["naive"], "reseller": req["reseller"]}
    rows = []
    for key, label in modes:
        rows.append(h.row(f"API requests per finished task, mjflow {label}", "",
                          req[key]["api_per_task"],
                          {n: v["api_per_task"] for n, v in bq.items()}, lower_is_better=True))
    rows.append(h.row("image downloads per finished task, mjflow callbacks delivered", "",
                      req["mjflow"]["downloads_per_task"],
                      {n: v["downloads_per_task"] for n, v in bq.items()},
                      lower_is_better=True))
    rows.append(h.row("queue-full answers, mjflow callbacks delivered", "",
                      float(runs["mjflow"]["queue_full"]),
                      {n: float(runs[n]["queue_full"]) for n in bq}, lower_is_better=True,
                      ratios=False))
    def per_task(name: str) -> float | None:
        return req[name]["api_per_task"]

    p50 = {name: h.pct(v, 0.5) for name, v in proj.items()}
    lost_req = per_task("mjflow-lost")
    latency["goals"] = [
        h.goal("SUCCESS → stored p50 at real pace, callbacks on", p50["mjflow"], 0.1, unit="s",
               limit="the callback's path through the worker's queues and the confirming "
                     "request, on the CPU the machine leaves"),
        h.goal("SUCCESS → stored p50 at real pace, every callback lost, vs the naive loop",
               p50["mjflow-lost"], p50["naive"], unit="s",
               limit="the learned run times' spread (±30 %), the first silent tasks (looked "
                     "at after the profile's pace, while no run time is known) and, at the "
                     "benchmark's compressed clock, the tick's wait for CPU (× the speed)"),
        h.goal("  … at requests per task", lost_req, 1.3,
               limit="one poll per finish: with 3 slots, finishes are spread over time and "
                     "a poll that finds one within seconds rarely finds another; each "
                     "task costs its submit and about one poll"),
    ]
    requests = {
        "name": NAME_REQUESTS,
        "title": f"3. Upstream requests per finished task (same runs as 2, speed {speed:g})",
        "baseline_names": ["naive", "reseller"], "rows": rows,
        "notes": [
            ("API requests = submits + fetches + list-by-condition, counted by the simulator; "
            "downloads are counted separately"),
            ("per finished (SUCCESS) upstream task; polls per task do not depend on the speed "
            "factor (task durations and intervals are scaled alike)"),
            "by endpoint: " + "; ".join(
                f"{n}: {r['by_endpoint']}" for n, r in req.items()),
        ],
        "details": {name: r for name, r in req.items()},
        "goals": [
            h.goal("API requests per finished task, callbacks on", per_task("mjflow"), 1.15,
                   limit="one confirming request per batch of terminal callbacks "
                         "(MJFLOW_CONFIRM_TERMINAL_CALLBACKS): at one account's pace a batch "
                         "rarely holds more than one, so each task costs its submit and "
                         "about one confirmation"),
            h.goal("API requests per finished task, no callbacks (reseller profile)",
                   per_task("mjflow-reseller"), 1.5,
                   limit="polls aligned to the reseller's refresh still find about one "
                         "finished task each"),
        ],
        "ok": not incomplete,
    }
    return latency, requests


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 jobs at speed 40 (else 18 at 20)")
    ap.add_argument("--only", help="comma-separated runs, alone, one line each: "
                                   + ",".join(scenarios(1, 1, [])))
    ap.add_argument("--jobs", type=int, help="with --only: jobs per run")
    ap.add_argument("--speed", type=float, help="with --only: the speed factor")
    args = ap.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in scenarios(1, 1, [])]
        if unknown:
            ap.error(f"unknown run {unknown[0]!r}")
        probe(names, args.speed or (40.0 if args.quick else 20.0),
              args.jobs or (4 if args.quick else 18))
        return
    for result in run(args.quick):
        print(h.report(result))


if __name__ == "__main__":
    main(sys.argv[1:])
