"""Benchmark 6, memory.

a. Peak RSS growth while storing one 50 MB image: ``bench/bench_memory.py`` (a fresh
   process per variant; mjflow's streaming store into S3 (moto) and into files, against
   ``requests.get(url).content`` + ``put_object``).
b. RSS of the worker over a soak of ``JOBS`` jobs: fed in batches (about two batches live
   at a time), RSS of every process sampled each second. The Celery worker's pool
   children are recycled every 2,000 tasks (``worker_max_tasks_per_child``), so their
   RSS is reported with the number of children seen; the worker's main process is never
   recycled. The soak runs without callbacks (polls only), imagine-only jobs, several
   simulated accounts and 8 pool processes, the cheapest path per job, so that as many
   of the 10,000 jobs as possible fit in ``make bench``'s time budget.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from typing import Any

from bench import harness as h
from bench import scenarios as sc

NAME = "memory"
ACCOUNTS = 8
#: Pool processes for the soak (WORKER_CONCURRENCY; the Procfile's default is 4): 10,000
#: jobs go through about 40 % faster with 8 on this machine, and RSS is per process.
CONCURRENCY = 8
SAMPLE_S = 1.0
DRAIN_S = 60.0   # time kept, after the last batch is fed, to drain, measure and stop


def image_store(size_mb: float) -> dict[str, Any]:
    """Run bench/bench_memory.py and read its table."""
    out = subprocess.run([sys.executable, "bench/bench_memory.py", "--size-mb", str(size_mb)],
                         cwd=h.ROOT, capture_output=True, text=True, timeout=600, check=False)
    variants: dict[str, dict[str, Any]] = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^(naive|mjflow-s3|mjflow-file|s3-multipart)\s+([\d.]+)\s+([\d.naN]+)\s+"
                     r"([\d.]+)\s+(\S+)", line)
        if m:
            variants[m.group(1)] = {"growth_mb": float(m.group(2)), "seconds": float(m.group(4)),
                                    "sha": m.group(5)}
    image = re.search(r"image: ([\d.]+) MB", out.stdout)
    return {"returncode": out.returncode, "variants": variants,
            "image_mb": float(image.group(1)) if image else None,
            "stdout": out.stdout, "stderr": out.stderr[-2000:]}


class Sampler(threading.Thread):
    """RSS of web, worker (main + pool children) and beat, every ``SAMPLE_S``."""

    def __init__(self, stack: h.BenchStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.samples: list[dict[str, Any]] = []
        self.children: set[int] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_S):
            self.samples.append(self.sample())

    def sample(self) -> dict[str, Any]:
        procs = self.stack.procs
        worker = procs["worker"].pid
        rss = h.tree_rss_kb(worker)
        kids = {pid: kb for pid, kb in rss.items() if pid != worker}
        self.children.update(kids)
        web = h.tree_rss_kb(procs["web"].pid)
        return {"t": time.time(), "live": self.stack.live_jobs(),
                "done": int(self.stack.r.zcard(f"{self.stack.prefix}:jobs"))
                - self.stack.live_jobs(),
                "worker_main_kb": rss.get(worker, 0),
                "worker_child_max_kb": max(kids.values(), default=0),
                "worker_total_kb": sum(rss.values()),
                "web_total_kb": sum(web.values()),
                "beat_kb": h.rss_kb(procs["beat"].pid)}

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def soak(jobs: int, chunk: int, speed: float, feed_until: float, min_jobs: int
         ) -> dict[str, Any]:
    """Feed up to ``jobs`` jobs; past ``feed_until`` (monotonic) stop feeding once at
    least ``min_jobs`` were sent."""
    env = {"MJFLOW_MAX_IN_FLIGHT": str(13 * ACCOUNTS), "MJFLOW_TICK_INTERVAL_S": "0.25"}
    stack = h.BenchStack(speed=speed, callbacks=False, env_extra=env,
                         sim_options={"accounts": ACCOUNTS}, worker_concurrency=CONCURRENCY)
    with h.fast_images(), stack:
        time.sleep(1.0)
        sampler = Sampler(stack)
        first = sampler.sample()
        sampler.start()
        contention = h.Contention()
        start = time.time()
        sent = 0
        try:
            while sent < jobs and (sent < min_jobs or time.monotonic() < feed_until):
                if stack.live_jobs() > chunk:
                    time.sleep(0.1)
                    continue
                n = min(chunk, jobs - sent)
                stack.submit_batch(sc.job_specs(n, [], prefix=f"soak {sent}"), f"soak-{sent}")
                sent += n
            end = stack.wait_idle(600)
        finally:
            sampler.stop()
        last = sampler.sample()
        cont = contention.result()
        counts = stack.r.hgetall(f"{stack.prefix}:counter:storage")
        redis_bytes = 0
        keys = 0
        pipe = stack.r.pipeline(transaction=False)
        for key in stack.r.scan_iter(f"{stack.prefix}:*", count=2000):
            if ":celery:" in key:
                continue
            pipe.memory_usage(key)
            keys += 1
            if keys % 2000 == 0:
                redis_bytes += sum(v or 0 for v in pipe.execute())
        redis_bytes += sum(v or 0 for v in pipe.execute())
        stats = stack.sim_stats()
    samples = sampler.samples
    step = max(1, len(samples) // 200)
    done = last["done"]
    tenth = next((s for s in samples if s["done"] >= done * 0.1), samples[0] if samples else last)
    three_q = next((s for s in samples if s["done"] >= done * 0.75), last)
    return {
        "jobs": jobs, "sent": sent, "seconds": end - start, "first": first, "last": last,
        "at_10pct": tenth, "at_75pct": three_q, "samples": samples[::step],
        "children_seen": len(sampler.children),
        "peak": {k: max((s[k] for s in samples), default=0)
                 for k in ("worker_main_kb", "worker_child_max_kb", "worker_total_kb",
                           "web_total_kb", "beat_kb")},
        "images_stored": int(counts.get("images", 0)),
        "succeeded_upstream": stats.get("tasks", {}).get("SUCCESS", 0),
        "redis_bytes": redis_bytes, "redis_keys": keys, "contention": cont,
    }


def run(quick: bool = False, deadline: float | None = None) -> dict[str, Any]:
    """``deadline`` (monotonic): when the whole benchmark must be done; the soak stops
    feeding jobs early enough to drain by then (``make bench`` stays under 15 minutes)."""
    image = image_store(20.0 if quick else 50.0)
    jobs = 300 if quick else 10_000
    if deadline is None:
        deadline = time.monotonic() + (120 if quick else 1800)
    s = soak(jobs, chunk=100 if quick else 500, speed=500.0, feed_until=deadline - DRAIN_S,
             min_jobs=200 if quick else 2000)
    v = image["variants"]
    mb = 1 / 1024
    naive_growth = v.get("naive", {}).get("growth_mb")
    rows = [
        h.row(f"RSS growth storing a {image['image_mb']:g} MB image, mjflow → S3", "MB",
              v.get("mjflow-s3", {}).get("growth_mb"), {"naive": naive_growth},
              lower_is_better=True),
        h.row(f"RSS growth storing a {image['image_mb']:g} MB image, mjflow → file", "MB",
              v.get("mjflow-file", {}).get("growth_mb"), {"naive": naive_growth},
              lower_is_better=True),
        h.row("worker main RSS at the start of the soak", "MB",
              s["first"]["worker_main_kb"] * mb, {"naive": None}, lower_is_better=True,
              ratios=False),
        h.row("worker main RSS at the end of the soak", "MB",
              s["last"]["worker_main_kb"] * mb, {"naive": None}, lower_is_better=True,
              ratios=False),
        h.row("worker main RSS growth, 10 % → end of soak", "MB",
              (s["last"]["worker_main_kb"] - s["at_10pct"]["worker_main_kb"]) * mb,
              {"naive": None}, lower_is_better=True, ratios=False),
        h.row("worker main RSS growth over the last quarter of the soak", "MB",
              (s["last"]["worker_main_kb"] - s["at_75pct"]["worker_main_kb"]) * mb,
              {"naive": None}, lower_is_better=True, ratios=False),
        h.row("worker pool child RSS, peak over the soak", "MB",
              s["peak"]["worker_child_max_kb"] * mb, {"naive": None}, lower_is_better=True,
              ratios=False),
        h.row(f"worker total RSS (main + {CONCURRENCY} children), peak", "MB",
              s["peak"]["worker_total_kb"] * mb, {"naive": None}, lower_is_better=True,
              ratios=False),
        h.row("worker total RSS at the end", "MB", s["last"]["worker_total_kb"] * mb,
              {"naive": None}, lower_is_better=True, ratios=False),
        h.row("web (gunicorn, 3 processes) RSS, peak", "MB", s["peak"]["web_total_kb"] * mb,
              {"naive": None}, lower_is_better=True, ratios=False),
        h.row("beat RSS, peak", "MB", s["peak"]["beat_kb"] * mb, {"naive": None},
              lower_is_better=True, ratios=False),
        h.row("Redis memory per finished job kept (7-day retention)", "KB",
              s["redis_bytes"] / 1024 / max(1, s["last"]["done"]), {"naive": None},
              lower_is_better=True, ratios=False),
        h.row("soak: jobs finished", "", float(s["last"]["done"]), {"naive": None},
              lower_is_better=False, ratios=False),
        h.row("soak: duration", "s", s["seconds"], {"naive": None}, lower_is_better=True,
              ratios=False),
    ]
    done = s["last"]["done"]
    ok = image["returncode"] == 0 and done == s["sent"] and s["images_stored"] >= done
    details = {"image": {k: v for k, v in image.items() if k != "stdout"},
               "image_table": image["stdout"], "soak": s}
    return {
        "name": NAME,
        "title": f"6. Memory: storing a {image['image_mb']:g} MB image; RSS over a "
                 f"{done:,}-job soak",
        "baseline_names": ["naive"], "rows": rows,
        "notes": [
            ("a: bench/bench_memory.py (VmHWM − VmRSS before, fresh process per variant); "
            f"image {image['image_mb']} MB of PNG noise; naive = requests.get().content + "
            "put_object"),
            (f"b: imagine jobs (target {jobs:,}), polls only (no callbacks), {ACCOUNTS} "
             f"simulated accounts, speed 500, worker concurrency {CONCURRENCY}; "
             f"{s['children_seen']} pool children seen (recycled every 2,000 tasks)"),
        ] + ([] if done >= jobs else [
            (f"the soak stopped feeding at {done:,} of {jobs:,} jobs to keep the whole run "
            "within its time budget (python -m bench.bench_soak runs all of them)")])
          + ([] if ok else ["INCOMPLETE or failed: see details"]),
        "details": details, "ok": ok,
    }


if __name__ == "__main__":
    # python -m bench.bench_soak [--quick] [--save]: the whole soak, without make bench's
    # time budget; --save writes bench/results/memory-standalone.json
    h.stop_cleanly_on_sigterm()
    result = run("--quick" in sys.argv)
    print(h.report(result))
    if "--save" in sys.argv:
        h.save({**result, "name": f"{NAME}-standalone", "mode": "standalone"})
