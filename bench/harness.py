"""The benchmarks' harness: a whole mjflow on loopback, process accounting, result tables.

* :class:`BenchStack` is the tests' launcher (``tests.support.stack.Stack``: the
  simulator in this process, the web app under gunicorn, a Celery worker and Celery beat
  as subprocesses, on the real Redis under a key prefix of their own, which ``stop``
  deletes) sized as in the Procfile.
* :func:`mjflow_timers` scales mjflow's *pacing* intervals by the simulator's speed factor
  (the same rule the baselines use, :func:`scaled`), so every side sees the same
  compressed clock.
* :func:`tree_cpu_s` / :func:`tree_rss_kb` read ``/proc`` for a process and its
  descendants (children that exited and were reaped count through ``cutime``/``cstime``).
* Job events go to ``worker.dev.consumer.Consumer`` (it verifies each signature and notes
  when each arrived).
* :func:`table` / :func:`save` print and store a benchmark's result.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from bench.pace import (  # noqa: F401  (the benchmarks' clock, used as h.scaled etc.)
    NAIVE_FETCH_S,
    QUEUE_FULL_PAUSE_S,
    RESELLER_LIST_S,
    TICK_FLOOR_S,
    mjflow_timers,
    scaled,
    scaled_upstream,
)
from tests.support.stack import Stack
from worker.flow.engine import Engine
from worker.keys import Keys
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REDIS_URL = os.environ.get("MJFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "bench-key"
HOOK_SECRET = "bench-hook-secret"
WEBHOOK_SECRET = "whsec_" + "YmVuY2hzZWNyZXRiZW5jaHNlY3JldGJlbmNoc2VjcmV0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

def stop_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so that ``with BenchStack()`` blocks stop their
    processes and delete their Redis keys when the run is terminated."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)


# --- /proc ------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2:].split()  # field n of proc(5) is [n - 3]


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(int(st[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of ``root``'s tree, reaped children included."""
    total = 0
    for pid in descendants(root):
        st = _stat(pid)
        if st is not None:
            total += sum(int(st[i]) for i in (11, 12, 13, 14))
    return total / CLK_TCK


def rss_kb(pid: int) -> int:
    st = _stat(pid)
    return int(st[21]) * PAGE_KB if st is not None else 0


def tree_rss_kb(root: int) -> dict[int, int]:
    return {pid: rss_kb(pid) for pid in descendants(root)}


def redis_server_pid() -> int | None:
    """The pid of the local redis-server, when it runs on this machine (for its CPU)."""
    try:
        info = redis.Redis.from_url(REDIS_URL).info("server")
        pid = int(info["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}/stat").exists() else None


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class Contention:
    """How much CPU *other* processes used while a benchmark ran (this machine is shared).

    ``own`` is this process and everything it started (reaped children included);
    ``redis`` is the redis-server (shared: other users of it count there too); ``foreign``
    is the rest of the machine's busy time.
    """

    def __init__(self) -> None:
        self.redis_pid = redis_server_pid()
        self._t0 = time.monotonic()
        self._m0 = machine_busy_s()
        self._own0 = tree_cpu_s(os.getpid())
        self._r0 = tree_cpu_s(self.redis_pid) if self.redis_pid else 0.0

    def result(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        machine_s = machine_busy_s() - self._m0
        own = tree_cpu_s(os.getpid()) - self._own0
        red = (tree_cpu_s(self.redis_pid) - self._r0) if self.redis_pid else 0.0
        foreign = max(0.0, machine_s - own - red)
        return {"wall_s": round(wall, 1), "own_cores": round(own / wall, 2),
                "redis_cores": round(red / wall, 2), "foreign_cores": round(foreign / wall, 2),
                "loadavg": loadavg()}


def loadavg() -> str:
    """The machine's 1/5/15-minute load averages, as ``uptime`` shows them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def wait_quiet(max_wait_s: float = 120.0, threshold_cores: float = 0.25,
               window_s: float = 3.0) -> dict[str, float]:
    """Wait (bounded) until other processes use less than ``threshold_cores``."""
    started = time.monotonic()
    while True:
        c = Contention()
        time.sleep(window_s)
        res = c.result()
        busy = res["foreign_cores"] + res["redis_cores"]
        waited = time.monotonic() - started
        if busy < threshold_cores or waited >= max_wait_s:
            return {"foreign_cores_before": round(busy, 2), "waited_s": round(waited, 1)}
        print(f"   (machine busy with other work: {busy:.2f} cores; waiting)", flush=True)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gb = round(int(first.split()[1]) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "mem_gb": mem_gb,
            "python": platform.python_version(), "kernel": platform.release()}


# --- the simulator's images -------------------------------------------------------------


@contextmanager
def fast_images() -> Iterator[None]:
    """Serve one cached PNG per image kind instead of rendering each task's own picture.

    Rendering a 1024 px grid costs the simulator ~60-80 ms of CPU; at thousands of tasks
    that would starve the processes under test on a 2-core machine. mjflow and the
    baselines still download, verify, hash and store every image.
    """
    from simulator import images

    original = images.render
    cache: dict[tuple, bytes] = {}
    lock = threading.Lock()

    def render(spec: images.ImageSpec) -> bytes:
        key = (spec.kind, spec.width, spec.height, spec.index, spec.label)
        with lock:
            if key not in cache:
                parent = replace(spec.parent, seed="bench") if spec.parent else None
                cache[key] = original(replace(spec, seed="bench", parent=parent))
            return cache[key]

    images.render = render  # type: ignore[assignment]
    try:
        yield
    finally:
        images.render = original  # type: ignore[assignment]


#: Task durations vary by this fraction either way (uniform) around the simulator's.
DURATION_SPREAD = 0.3


@contextmanager
def varied_durations(spread: float = DURATION_SPREAD, seed: int = 7) -> Iterator[None]:
    """Make the simulator's task durations vary (×U(1−spread, 1+spread), seeded).

    The simulator runs every imagine for exactly 30 s / speed. With fixed durations a
    poller whose interval divides the duration (naive: 5 s into 30 s) stays in phase with
    the task and sees SUCCESS a few milliseconds after it happens, which real, varying
    Midjourney durations never allow. Every side of a comparison gets the same spread.
    """
    import random

    from simulator import engine

    original = engine.duration_ms
    rng = random.Random(seed)
    lock = threading.Lock()

    def duration_ms(action: str, speed: float) -> int:
        with lock:
            factor = rng.uniform(1 - spread, 1 + spread)
        return max(1, int(original(action, speed) * factor))

    engine.duration_ms = duration_ms  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.duration_ms = original  # type: ignore[assignment]


# --- the stack --------------------------------------------------------------------------


@dataclass
class BenchStack(Stack):
    """The test stack (:class:`tests.support.stack.Stack`) sized as in the Procfile, at
    the benchmark's pace (:func:`mjflow_timers`), under a ``mjbench-`` prefix."""

    speed: float = 50.0
    prefix: str = field(default_factory=lambda: f"mjbench-{uuid.uuid4().hex[:8]}")
    redis_url: str = REDIS_URL
    api_key: str = API_KEY
    hook_secret: str = HOOK_SECRET
    webhook_secret: str = WEBHOOK_SECRET
    web_workers: int = 2       # Procfile: WEB_CONCURRENCY (default 2), --threads 4
    web_threads: int = 4
    worker_concurrency: int = 4  # Procfile: WORKER_CONCURRENCY (default 4)
    loglevel: str = "INFO"     # as in the Procfile
    quiet_worker: bool = False
    keep_files_env: str = "MJFLOW_KEEP_BENCH_FILES"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fleet is None and self.with_sim:
            ceiling = self.env_extra.get("MJFLOW_MAX_IN_FLIGHT")
            self.fleet = [scaled_upstream(self.profile, self.speed, self.sim_options,
                                          int(ceiling) if ceiling else None)]

    def timers(self) -> dict[str, str]:
        return mjflow_timers(self.speed, self.callbacks)

    # -- measuring ---------------------------------------------------------------------
    def pid(self, name: str) -> int:
        assert self.procs is not None
        return self.procs[name].pid

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of web, worker and beat (each with its children)."""
        assert self.procs is not None
        return {name: tree_cpu_s(proc.pid) for name, proc in self.procs.items()}

    # -- using -------------------------------------------------------------------------
    def submit_batch(self, items: list[dict[str, Any]], name: str) -> dict[str, Any]:
        resp = self.http.post(f"{self.web_url}/v1/batches", json={"name": name, "items": items},
                              headers=self.headers, timeout=300)
        if resp.status_code not in (200, 202):
            raise RuntimeError(f"POST /v1/batches: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def batch_job_ids(self, batch_id: str) -> list[str]:
        return list(self.r.zrange(f"{self.prefix}:batch:{batch_id}:jobs", 0, -1))

    def live_jobs(self) -> int:
        return int(self.r.scard(f"{self.prefix}:jobs:live"))

    def wait_idle(self, timeout_s: float, *, what: str = "jobs") -> float:
        """Wait until no job is live; returns the time it happened (raises on timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.live_jobs() == 0:
                return time.time()
            time.sleep(0.05)
        raise TimeoutError(f"{self.live_jobs()} {what} still live after {timeout_s:.0f}s\n"
                           + self.tail_logs())

    def simulators(self) -> list[Any]:
        """Every simulated upstream (one, or one per ``fleet`` item)."""
        return list(self.sims.values()) or [self.sim]

    def sim_of(self, upstream: str | None) -> Any:
        """The simulator (its in-process state) behind the upstream called ``upstream``."""
        return self.sims.get(upstream or "", self.sim).sim

    def sim_stats(self) -> dict[str, Any]:
        """The simulators' stats, summed over the fleet (peaks: the sum of each one's)."""
        return merge_stats([s.sim.stats() for s in self.simulators()])

    def engine(self) -> Engine:
        """An engine of this stack's settings (its fleet, each member's window)."""
        env = {k.removeprefix("MJFLOW_").lower(): v for k, v in self.env.items()
               if k.startswith("MJFLOW_")}
        return Engine(load_settings(**env), self.r, Keys(self.prefix))


def merge_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Several simulators' ``/_sim/stats`` as one: numbers add up, lists join."""
    out: dict[str, Any] = {}
    for one in stats:
        for key, value in one.items():
            if isinstance(value, dict):
                out[key] = merge_stats([out.get(key, {}), value])
            elif isinstance(value, list):
                out[key] = out.get(key, []) + value
            else:
                out[key] = out.get(key, 0) + value
    return out


def cleanup_prefix(r: redis.Redis, prefix: str) -> int:
    n = 0
    for key in r.scan_iter(f"{prefix}:*", count=2000):
        r.delete(key)
        n += 1
    return n


def upstream_finish_s(sim: Any, task_id: str | None) -> float | None:
    """When the simulator moved ``task_id`` to SUCCESS/FAILURE (unix seconds)."""
    if not task_id:
        return None
    task = sim.get_task(task_id)
    if task is None or task.finish_time_ms is None:
        return None
    return task.finish_time_ms / 1000


def upstream_start_s(sim: Any, task_id: str | None) -> float | None:
    """When the simulator gave ``task_id`` a running slot (unix seconds)."""
    task = sim.get_task(task_id) if task_id else None
    if task is None or task.start_time_ms is None:
        return None
    return task.start_time_ms / 1000


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


# --- statistics and tables --------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ratio(mjflow: float | None, baseline: float | None, lower_is_better: bool) -> float | None:
    """How many times better mjflow is than the baseline (> 1: mjflow better)."""
    if mjflow is None or baseline is None:
        return None
    if lower_is_better:
        if mjflow == 0:
            return float("inf") if baseline > 0 else 1.0
        return baseline / mjflow
    if baseline == 0:
        return float("inf") if mjflow > 0 else 1.0
    return mjflow / baseline


def row(metric: str, unit: str, mjflow: float | None, baselines: dict[str, float | None], *,
        lower_is_better: bool, note: str = "", ratios: bool = True) -> dict[str, Any]:
    return {
        "metric": metric, "unit": unit, "mjflow": mjflow, "baselines": baselines,
        "lower_is_better": lower_is_better, "note": note,
        "ratios": {name: (ratio(mjflow, value, lower_is_better) if ratios else None)
                   for name, value in baselines.items()},
    }


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value == float("inf"):
            return "∞"
        if value.is_integer():
            return f"{value:,.0f}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def table(result: dict[str, Any]) -> str:
    """A result as a text table (also valid Markdown)."""
    names = result["baseline_names"]
    head = ["metric", result.get("subject", "mjflow"), *names, *(f"× vs {n}" for n in names)]
    lines = []
    for r in result["rows"]:
        metric = f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"]
        cells = [metric, fmt(r["mjflow"]), *(fmt(r["baselines"].get(n)) for n in names),
                 *(fmt(r["ratios"].get(n)) for n in names)]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for cells in lines:
        out.append("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(cells, widths))) + " |")
    return "\n".join(out)


def goal(text: str, value: float | None, target: float | None, *, at_most: bool = True,
         unit: str = "", limit: str = "") -> dict[str, Any]:
    """One goal of the fast-path issue: ``value`` against ``target`` (≤ when ``at_most``);
    ``limit`` says what holds the figure back when the goal is not met."""
    met = (value is not None and target is not None
           and (value <= target if at_most else value >= target))
    return {"goal": text, "value": value, "target": target, "at_most": at_most,
            "unit": unit, "met": met, "limit": "" if met else limit}


def goal_line(g: dict[str, Any]) -> str:
    sign = "≤" if g["at_most"] else "≥"
    unit = f" {g['unit']}" if g["unit"] else ""
    head = (f"goal {g['goal']}: {fmt(g['value'])}{unit} (goal {sign} {fmt(g['target'])}{unit})"
            f" — {'met' if g['met'] else 'NOT met'}")
    return head + (f"; limited by {g['limit']}" if g["limit"] else "")


def report(result: dict[str, Any]) -> str:
    who = result.get("subject", "mjflow")
    lines = [f"== {result['title']} ==", table(result),
             f"(× vs X: how many times better {who} is than X; > 1 = {who} better)"]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    lines += [goal_line(g) for g in result.get("goals", [])]
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """A result as Markdown: heading, table, notes, what else ran on the machine."""
    lines = [f"### {result['title']}", "", table(result), ""]
    lines += [f"- {note}" for note in result.get("notes", [])]
    cont = result.get("contention")
    if cont:
        lines.append(f"- other processes on the machine used {cont['foreign_cores']:.2f} "
                     f"cores on average meanwhile ({result.get('seconds', '?')} s; load "
                     f"average {cont.get('loadavg', '?')})")
    lines += [f"- **{goal_line(g)}**" for g in result.get("goals", [])]
    return "\n".join(lines)


def save(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result['name']}.json"
    result = {**result, "machine": machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())}
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    return path
