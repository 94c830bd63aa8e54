"""Run every benchmark, print each table, write ``bench/results/<name>.json``.

    python -m bench.run_all            # the full run (make bench), under 15 minutes
    python -m bench.run_all --quick    # a smoke run of about 2 minutes (results/quick/)
    python -m bench.run_all --only receiver,latency

Each benchmark measures mjflow beside its baseline(s) in the same run; a table's
"× vs X" column says how many times better mjflow is than X (> 1: mjflow is better).
This machine may be shared: before each benchmark the run waits (a few seconds at most) for
other processes to go quiet, and every result records how much CPU other processes used
while it ran (``contention``). Exits 1 if a benchmark failed or found a problem (a lost
callback, a run that did not finish).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import harness as h

#: The whole run's budget: the memory soak (last) stops feeding jobs to end within it.
BUDGET_S = {"full": 14.25 * 60, "quick": 180.0}
#: At most this long, before each benchmark, waiting for other processes to go quiet.
QUIET_WAIT_S = {"full": 4.0, "quick": 2.0}

BENCHMARKS: dict[str, str] = {
    "receiver": "bench.bench_receiver",
    "latency": "bench.bench_latency",      # also writes "requests"
    "utilization": "bench.bench_utilization",
    "cost": "bench.bench_cost",
    "memory": "bench.bench_soak",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (~2 minutes)")
    ap.add_argument("--only", help="comma-separated: " + ",".join(BENCHMARKS))
    ap.add_argument("--no-wait", action="store_true",
                    help="do not wait for other processes to go quiet")
    args = ap.parse_args()
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if args.quick:  # smoke results are not kept in git
        h.RESULTS = h.RESULTS / "quick"
        h.RESULTS.mkdir(parents=True, exist_ok=True)
        (h.RESULTS / ".gitignore").write_text("*\n")
    import importlib

    h.stop_cleanly_on_sigterm()
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    info = h.machine()
    print(f"mjflow benchmarks ({'quick' if args.quick else 'full'}): {info['cores']} cores, "
          f"{info['cpu']}, {info['mem_gb']} GB, Python {info['python']}", flush=True)
    failures: list[str] = []
    timings: dict[str, float] = {}
    tables: list[str] = []
    for name in names:
        t0 = time.monotonic()
        quiet = {} if args.no_wait else h.wait_quiet(max_wait_s=QUIET_WAIT_S[mode],
                                                     window_s=2.0)
        print(f"\n>> {name} ...", flush=True)
        contention = h.Contention()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            run: Callable[..., Any] = module.run
            if name == "memory":
                out = run(quick=args.quick, deadline=started + BUDGET_S[mode])
            else:
                out = run(quick=args.quick)
        except Exception:  # noqa: BLE001 - report and go on with the next benchmark
            traceback.print_exc()
            failures.append(f"{name}: crashed")
            continue
        results = out if isinstance(out, tuple) else (out,)
        cont = contention.result() | quiet
        for result in results:
            result["contention"] = cont
            result["seconds"] = round(time.monotonic() - t0, 1)
            result["mode"] = "quick" if args.quick else "full"
            print(h.report(result), flush=True)
            print(f"   [{result['seconds']:.0f} s; other processes used "
                  f"{cont['foreign_cores']:.2f} cores, redis {cont['redis_cores']:.2f}; "
                  f"load average {cont.get('loadavg', '?')}]", flush=True)
            h.save(result)
            tables.append(h.markdown(result))
            if not result.get("ok", True):
                failures.append(f"{result['name']}: not ok")
        timings[name] = round(time.monotonic() - t0, 1)
    goals = [g for path in sorted(h.RESULTS.glob("*.json")) if path.name != "summary.json"
             for g in json.loads(path.read_text()).get("goals", [])]
    if goals:
        print("\nGoals (fast path):")
        for g in goals:
            print("  " + h.goal_line(g))
    total = time.monotonic() - started
    summary = {"mode": "quick" if args.quick else "full", "seconds": round(total, 1),
               "timings": timings, "failures": failures, "machine": info}
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    (h.RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # every result on file, this run's and (with --only) earlier ones, in benchmark order
    on_file = []
    for name in ("receiver", "latency", "requests", "utilization", "utilization-faults",
                 "cost", "memory"):
        path = h.RESULTS / f"{name}.json"
        if path.exists():
            on_file.append(h.markdown(json.loads(path.read_text())))
    (h.RESULTS / "tables.md").write_text("\n\n".join(on_file or tables) + "\n")
    print(f"\nall done in {total / 60:.1f} min; results in {Path(h.RESULTS).relative_to(h.ROOT)}/")
    if failures:
        print("PROBLEMS: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
