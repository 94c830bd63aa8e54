"""Chaos soak: many jobs through the whole system while everything around it misbehaves.

    python -m bench.chaos [--jobs 1000] [--duration-s 3600] [--quick] [--seed N]
    make chaos CHAOS_ARGS="--quick"

Starts, on loopback and all of its own: the simulator (in this process), moto's S3 server
behind a small TCP proxy (so an S3 outage keeps moto's state), a redis-server with AOF on
a free port (data in a temp dir, so it can be restarted), the web app under gunicorn, a
Celery worker and Celery beat (subprocesses, configured by ``MJFLOW_*`` variables), and a
consumer that verifies every signed event (Standard Webhooks). Then it submits the jobs
(each ``IMAGINE`` then ``U1``..``U4``, with a ``callbackUrl``) while injecting, at once:

* upstream faults: 30 % callbacks dropped, 10 % duplicated, reordered and delayed;
  2 % HTTP 500 on every upstream request; 1 % stuck and 1 % failed tasks; 1 % hung
  submits answering after the client's timeout; one queue-full burst;
* process faults: the worker SIGKILLed every 20 s and restarted; the web app SIGKILLed
  and restarted once; Redis restarted once (SIGTERM: a graceful shutdown that flushes
  and fsyncs the AOF, then a restart that loads it); a 20 s S3 outage (the proxy resets
  every connection; moto keeps its objects).

When every job is terminal it stops the chaos, waits for the system to go idle, checks
(:mod:`bench.chaos_checks`) and prints a table. Any violation exits 1 with the reasons.
``--quick`` is the 2-minute version that ``tests/test_chaos.py`` runs.

Every process it starts is stopped at the end (also on Ctrl-C or SIGTERM), every loop is
bounded, the temp dir is removed (logs are copied to ``artifacts/chaos`` on failure).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from bench.chaos_checks import IDLE_QUEUES, Collected, Row, evaluate, render
from tests.support.stack import Stack
from worker.dev.consumer import Consumer
from worker.dev.localnet import Procs, free_port, wait_until
from worker.storage.naming import THUMB_SUFFIX

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "mjchaos"
BUCKET = "mjflow-chaos"
S3_PREFIX = "soak"
API_KEY = "chaos-api-key"
WEBHOOK_SECRET = "whsec_" + "Y2hhb3Mtc29hay13ZWJob29rLXNlY3JldC0wMTIz"   # base64, 32 bytes
HOOK_SECRET = "chaos-hook-secret"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
FOLLOW_UPS = ["U1", "U2", "U3", "U4"]
STEPS_PER_JOB = 1 + len(FOLLOW_UPS)
HTTP_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
ARTIFACTS = ROOT / "artifacts" / "chaos"


@dataclass
class Plan:
    """What the soak does. ``quick()`` is the CI version. Times are seconds from the first
    submission. The simulated upstream has ``accounts`` accounts of ``core_size`` running +
    ``queue_size`` queued tasks (a real Midjourney account: 3 + 10), and mjflow's window
    ceiling (``MJFLOW_MAX_IN_FLIGHT``) is their total."""

    jobs: int = 1000
    duration_s: float = 3600.0       # every job must be terminal within this
    submit_over_s: float = 60.0      # submissions are spread over this long
    drain_s: float = 300.0           # then the system must be idle within this
    seed: int = 7
    speed: float = 20.0
    accounts: int = 8
    core_size: int = 3
    queue_size: int = 10
    # upstream faults
    drop_callbacks: float = 0.30
    duplicate_callbacks: float = 0.10
    delay_callbacks_ms: int = 200
    http_500: float = 0.02
    stuck: float = 0.01
    fail: float = 0.01
    hung_submit: float = 0.01
    hung_submit_ms: int = 5000       # > MJFLOW_UPSTREAM_TIMEOUT_S: the answer is lost
    burst_at_s: float = 10.0
    burst: int = 30
    # process faults
    kill_every_s: float = 20.0
    kill_down_s: float = 1.0
    web_restart_at_s: float = 35.0
    redis_restart_at_s: float = 55.0
    redis_down_s: float = 3.0
    s3_outage_at_s: float = 75.0
    s3_outage_s: float = 20.0
    # mjflow settings that the fault rates call for
    step_deadline_s: float = 45.0
    upscale_deadline_s: float = 30.0
    stuck_timeout_s: float = 60.0    # the upstream fails a stuck task after this (> deadline)
    submit_grace_s: float = 20.0
    upstream_timeout_s: float = 3.0
    poll_interval_s: float = 2.0
    tick_interval_s: float = 0.5
    worker_concurrency: int = 4
    web_workers: int = 2
    max_rss_mb: float = 1024.0
    verify_bytes: int = 300          # objects whose bytes are downloaded and re-hashed

    @classmethod
    def quick(cls) -> Plan:
        return cls(jobs=60, duration_s=180.0, submit_over_s=25.0, drain_s=60.0, burst_at_s=4.0,
                   burst=10, kill_every_s=10.0, web_restart_at_s=12.0, redis_restart_at_s=20.0,
                   redis_down_s=2.0, s3_outage_at_s=27.0, s3_outage_s=8.0,
                   step_deadline_s=25.0, upscale_deadline_s=20.0, stuck_timeout_s=35.0,
                   submit_grace_s=12.0, verify_bytes=10**6)

    @property
    def max_in_flight(self) -> int:
        return self.accounts * (self.core_size + self.queue_size)


# -- small utilities ------------------------------------------------------------------------
def http_ok(url: str) -> bool:
    return requests.get(url, timeout=2).status_code < 500


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def group_pids(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:      # field 5 of stat: pgrp
            out.append(int(entry))
    return out


def _machine_busy_s(hz: int) -> float:
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / hz


class CpuMeter:
    """Cores used by the soak (this process and every process group it started) and by the
    rest of the machine over the run: the run's figures depend on both."""

    def __init__(self, procs: Procs) -> None:
        self.procs = procs
        self.hz = os.sysconf("SC_CLK_TCK")
        self.t0 = time.monotonic()
        self.busy0 = _machine_busy_s(self.hz)
        self.self0 = sum(os.times()[:2])
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._first = True

    def sample(self) -> None:
        groups = set(self.procs.pgids)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) not in groups:
                continue
            pid, cpu = int(entry), (int(fields[11]) + int(fields[12])) / self.hz
            if pid not in self.base:
                self.base[pid] = cpu if self._first else 0.0
            self.last[pid] = max(cpu, self.last.get(pid, 0.0))
        self._first = False

    def result(self) -> dict[str, float]:
        elapsed = max(1e-6, time.monotonic() - self.t0)
        mine = sum(os.times()[:2]) - self.self0 + sum(
            self.last[p] - self.base.get(p, 0.0) for p in self.last)
        busy = _machine_busy_s(self.hz) - self.busy0
        return {"seconds": elapsed, "cores": os.cpu_count() or 0,
                "soak_cores": mine / elapsed, "other_cores": max(0.0, busy - mine) / elapsed}


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


# -- processes ----------------------------------------------------------------------------
class RedisServer:
    """Our own redis-server: AOF on (appendfsync everysec), no RDB snapshots, data in
    ``dir``. ``restart`` stops it with SIGTERM, which Redis handles as a graceful
    SHUTDOWN: it flushes and fsyncs the AOF before exiting, so every write it
    acknowledged is loaded again on start (SHUTDOWN NOSAVE or SIGKILL would not give that
    guarantee with everysec)."""

    def __init__(self, procs: Procs, data_dir: Path) -> None:
        self.procs = procs
        self.dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs.spawn("redis", [
            shutil.which("redis-server") or "redis-server", "--port", str(self.port),
            "--bind", "127.0.0.1", "--dir", str(self.dir), "--appendonly", "yes",
            "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
            "--daemonize", "no", "--maxclients", "2000",
        ], env={k: v for k, v in os.environ.items()})
        r = self.client()
        wait_until(lambda: r.ping(), START_TIMEOUT_S, "redis-server")
        wait_until(lambda: r.info("persistence").get("loading") == 0, START_TIMEOUT_S,
                   "redis AOF load")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10,
                           socket_connect_timeout=2)

    def restart(self, down_s: float) -> dict[str, Any]:
        r = self.client()
        token = uuid.uuid4().hex
        r.set("chaos:sentinel", token)
        jobs_before = r.zcard(f"{PREFIX}:jobs")
        log_path = self.procs.logs["redis"]
        offset = log_path.stat().st_size
        self.procs.kill("redis", signal.SIGTERM, timeout_s=60)
        time.sleep(down_s)
        self.start()
        r = self.client()
        jobs_after = r.zcard(f"{PREFIX}:jobs")
        with log_path.open(errors="replace") as fh:
            fh.seek(offset)
            text = fh.read()
        loaded = "DB loaded from append only file" in text
        flushed = "Calling fsync() on the AOF file" in text
        return {"aof_ok": r.get("chaos:sentinel") == token and jobs_after >= jobs_before
                and loaded, "jobs_before": jobs_before, "jobs_after": jobs_after,
                "aof_fsynced_at_shutdown": flushed, "aof_loaded": loaded}


class TcpProxy:
    """A threaded TCP forwarder in front of moto. ``block()`` resets every connection and
    keeps resetting new ones (connect → RST) until ``unblock()``: an S3 outage during which
    moto keeps its buckets and objects."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.5)
        self.port = int(self.sock.getsockname()[1])
        self.blocked = False
        self.refused = 0
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="chaos-s3-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _reset(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with contextlib.suppress(OSError):
            s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.blocked:
                self.refused += 1
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                gone = src in self._conns
                self._conns.discard(src)
            if gone:
                with contextlib.suppress(OSError):
                    src.close()

    def block(self) -> None:
        self.blocked = True
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            self._reset(s)

    def unblock(self) -> None:
        self.blocked = False

    def close(self) -> None:
        self._stop.set()
        self.block()
        with contextlib.suppress(OSError):
            self.sock.close()
        self._thread.join(timeout=2)


# -- the system under test ------------------------------------------------------------------
class System:
    """Our own Redis, moto behind the proxy, the consumer, and the test stack
    (``tests.support.stack.Stack``: simulator, web, worker, beat) on that Redis, all in
    one :class:`Procs` (so the CPU meter sees every process group)."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.procs = Procs(workdir, {})
        self.proxy: TcpProxy | None = None
        self.consumer: Consumer | None = None
        self.stack: Stack | None = None
        self.redis = RedisServer(self.procs, workdir / "redis")
        self.moto_port = free_port()
        self.moto_url = f"http://127.0.0.1:{self.moto_port}"

    # lifecycle
    def start(self) -> None:
        p = self.plan
        self.redis.start()
        self.procs.spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                  str(self.moto_port)], env={**os.environ, **AWS_ENV})
        wait_until(lambda: http_ok(f"{self.moto_url}/moto-api/"), START_TIMEOUT_S, "moto")
        s3 = self.s3()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.proxy = TcpProxy(self.moto_port)
        self.consumer = Consumer(WEBHOOK_SECRET)
        self.consumer.self_test()
        self.stack = Stack(
            speed=p.speed, prefix=PREFIX, redis_url=self.redis.url, workdir=self.workdir / "stack",
            procs=self.procs, api_key=API_KEY, hook_secret=HOOK_SECRET,
            webhook_secret=WEBHOOK_SECRET, wipe_keys=False,
            sim_options={"core_size": p.core_size, "queue_size": p.queue_size,
                         "accounts": p.accounts},
            web_workers=p.web_workers, web_threads=4, web_args=("--graceful-timeout", "5"),
            worker_concurrency=p.worker_concurrency,
            env_extra={
                **AWS_ENV,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.proxy.port}",
                "MJFLOW_STORAGE_URL": f"s3://{BUCKET}/{S3_PREFIX}",
                "MJFLOW_MAX_IN_FLIGHT": str(p.max_in_flight),
                "MJFLOW_POLL_INTERVAL_S": str(p.poll_interval_s),
                "MJFLOW_HEARTBEAT_PUSH_S": str(p.poll_interval_s * 1.5),
                "MJFLOW_TICK_INTERVAL_S": str(p.tick_interval_s),
                "MJFLOW_SUBMIT_GRACE_S": str(p.submit_grace_s),
                "MJFLOW_REDRIVE_S": "10",
                "MJFLOW_QUEUE_FULL_BACKOFF_S": "1",
                "MJFLOW_STEP_DEADLINE_S": str(p.step_deadline_s),
                "MJFLOW_UPSCALE_DEADLINE_S": str(p.upscale_deadline_s),
                "MJFLOW_UPSTREAM_TIMEOUT_S": str(p.upstream_timeout_s),
                "MJFLOW_DELIVERY_TIMEOUT_S": "5",
            })
        self.stack.start()

    @property
    def sim(self) -> Any:
        return self.stack.sim if self.stack else None

    @property
    def web_url(self) -> str:
        assert self.stack is not None
        return self.stack.web_url

    def start_web(self) -> None:
        assert self.stack is not None
        self.stack.start_web()

    def start_worker(self) -> None:
        assert self.stack is not None
        self.stack.start_worker()

    def rss(self, name: str) -> float:
        return rss_mb(group_pids(self.procs[name].pid)) if self.procs.alive(name) else 0.0

    def s3(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.moto_url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test",
                            config=Config(retries={"mode": "standard", "max_attempts": 5},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def stop(self) -> None:
        if self.stack:
            self.stack.stop()
        self.procs.stop_all(timeout_s=10)
        if self.proxy:
            self.proxy.close()
        if self.consumer:
            self.consumer.close()

    # use
    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def set_faults(self, **faults: Any) -> None:
        resp = requests.put(f"{self.sim.url}/_sim/faults", json=faults, timeout=HTTP_TIMEOUT_S)
        resp.raise_for_status()

    def sim_stats(self) -> dict[str, Any]:
        return requests.get(f"{self.sim.url}/_sim/stats", timeout=HTTP_TIMEOUT_S).json()


# -- load -----------------------------------------------------------------------------------
class Submitter:
    """Creates the jobs, spread over ``submit_over_s``, each with an Idempotency-Key so a
    request lost to a web or Redis restart is simply sent again (bounded)."""

    def __init__(self, system: System, run_id: str) -> None:
        self.system = system
        self.run_id = run_id
        self.job_ids: dict[int, str] = {}
        self.errors: list[str] = []
        self.retries = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def spec(self, i: int) -> dict[str, Any]:
        return {"prompt": f"chaos soak {i}: a lighthouse in a storm, plate {i % 97}",
                "then": FOLLOW_UPS, "callbackUrl": self.system.consumer.url,
                "metadata": {"soak": self.run_id, "i": i}}

    def submit_one(self, session: requests.Session, i: int, give_up_s: float = 90.0) -> None:
        url = f"{self.system.web_url}/v1/jobs"
        headers = {**self.system.headers, "Idempotency-Key": f"{self.run_id}-{i}"}
        deadline = time.monotonic() + give_up_s
        last = ""
        conflicts = 0
        while time.monotonic() < deadline and conflicts < 10:
            try:
                resp = session.post(url, json=self.spec(i), headers=headers, timeout=HTTP_TIMEOUT_S)
                if resp.status_code in (200, 202):
                    with self.lock:
                        self.job_ids[i] = resp.json()["id"]
                    return
                last = f"HTTP {resp.status_code} {resp.text[:160].strip()}"
                conflicts = conflicts + 1 if resp.status_code == 409 else 0
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}"
                conflicts = 0
            with self.lock:
                self.retries += 1
            time.sleep(0.5 + random.random())
        with self.lock:
            self.errors.append(f"job {i} (Idempotency-Key {headers['Idempotency-Key']}): {last}")

    def run(self, t0: float, over_s: float, n: int, threads: int = 4) -> None:
        def worker(k: int) -> None:
            session = requests.Session()
            for i in range(k, n, threads):
                due = t0 + over_s * i / max(1, n)
                time.sleep(max(0.0, due - time.monotonic()))
                self.submit_one(session, i)

        pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        self.done.set()


# -- chaos ----------------------------------------------------------------------------------
class Chaos:
    """Applies the one-off events at their times and kills the worker every
    ``kill_every_s`` until told to stop. Runs in its own thread."""

    def __init__(self, system: System, plan: Plan) -> None:
        self.system = system
        self.plan = plan
        self.stats: dict[str, Any] = {"worker_kills": 0, "web_restarts": 0, "redis_restarts": 0,
                                      "s3_outages": 0, "s3_outage_s": 0.0, "redis_aof_ok": None,
                                      "timeline": []}
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.pending: list[tuple[float, str, Callable[[], None]]] = sorted([
            (plan.burst_at_s, "queue-full burst", self.burst),
            (plan.web_restart_at_s, "web restart", self.restart_web),
            (plan.redis_restart_at_s, "redis restart", self.restart_redis),
            (plan.s3_outage_at_s, "S3 outage begins", self.s3_down),
            (plan.s3_outage_at_s + plan.s3_outage_s, "S3 outage ends", self.s3_up),
        ], key=lambda e: e[0])
        self._s3_down_at = 0.0

    @property
    def one_offs_done(self) -> bool:
        return not self.pending

    def note(self, t: float, what: str) -> None:
        self.stats["timeline"].append((round(t, 1), what, time.time()))
        log(f"t={t:6.1f}s  {what}")

    def burst(self) -> None:
        self.system.set_faults(queue_full_burst=self.plan.burst)

    def restart_web(self) -> None:
        s = self.system
        s.procs.kill("web", signal.SIGKILL)
        time.sleep(1.0)
        s.start_web()
        wait_until(lambda: http_ok(f"{s.web_url}/healthz"), START_TIMEOUT_S, "web app (restart)")
        self.stats["web_restarts"] += 1

    def restart_redis(self) -> None:
        down_at = time.time()
        result = self.system.redis.restart(self.plan.redis_down_s)
        self.stats.setdefault("redis_down_wall", []).append([down_at, time.time()])
        self.stats["redis_restarts"] += 1
        self.stats["redis_aof_ok"] = result["aof_ok"]
        self.stats["redis_restart"] = result

    def s3_down(self) -> None:
        assert self.system.proxy is not None
        self.system.proxy.block()
        self._s3_down_at = time.monotonic()
        self.stats["s3_outage_wall"] = [time.time(), None]

    def s3_up(self) -> None:
        assert self.system.proxy is not None
        self.system.proxy.unblock()
        self.stats["s3_outages"] += 1
        self.stats["s3_outage_s"] = time.monotonic() - self._s3_down_at
        self.stats["s3_outage_wall"][1] = time.time()
        self.stats["s3_refused"] = self.system.proxy.refused

    def kill_worker(self) -> None:
        s = self.system
        s.procs.kill("worker", signal.SIGKILL)
        self.stats["worker_kills"] += 1
        time.sleep(self.plan.kill_down_s)
        s.start_worker()

    def run(self, t0: float, keep_killing: Callable[[], bool]) -> None:
        next_kill = self.plan.kill_every_s
        while not self.stop.is_set():
            t = time.monotonic() - t0
            if self.pending and self.pending[0][0] <= t:
                _, name, fn = self.pending.pop(0)
                self.note(t, name)
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - reported as a violation
                    self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    log(f"chaos event {name} failed: {exc}")
                continue
            if t >= next_kill:
                if keep_killing():
                    self.note(t, "worker SIGKILL")
                    self.kill_worker()
                next_kill += self.plan.kill_every_s
                continue
            self.stop.wait(0.2)

    def heal(self) -> None:
        """Leave everything up: the proxy open, Redis, web and worker running."""
        s = self.system
        if s.proxy and s.proxy.blocked:
            self.s3_up()
        if not s.procs.alive("redis"):
            s.redis.start()
        if not s.procs.alive("web"):
            s.start_web()
        if not s.procs.alive("worker"):
            s.start_worker()


# -- watching -------------------------------------------------------------------------------
TICK_STALL_AFTER_S = 5.0  # a tick takes well under a second; held longer = it was interrupted


class Watch:
    """Samples the dispatch machinery once a second: how long the current holder of the
    tick lock has held it (an interrupted tick leaves it until its TTL: no dispatch, polls
    or sweeps meanwhile), the dispatch window (AIMD) and the slots in use."""

    def __init__(self, r: redis.Redis, max_in_flight: int) -> None:
        self.r = r
        self.max = max_in_flight
        self.seconds = 0.0
        self.lock_stall_s = 0.0
        self.max_lock_age_s = 0.0
        self.window_min = float(max_in_flight)
        self.window_low_s = 0.0
        self.window_now = float(max_in_flight)
        self.slots_max = 0
        self.lock_age_now = 0.0
        self._holder: tuple[str, float] | None = None     # (token, first seen)

    def sample(self, dt: float) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.get(f"{PREFIX}:lock:tick")
        pipe.hget(f"{PREFIX}:window:default", "size")
        pipe.zcard(f"{PREFIX}:slots:default")
        token, size, slots = pipe.execute()
        now = time.monotonic()
        self.seconds += dt
        if token is None:
            self._holder = None
        elif self._holder is None or self._holder[0] != token:
            self._holder = (token, now)
        self.lock_age_now = now - self._holder[1] if self._holder else 0.0
        if self.lock_age_now > TICK_STALL_AFTER_S:
            self.lock_stall_s += dt
        self.max_lock_age_s = max(self.max_lock_age_s, self.lock_age_now)
        self.window_now = float(size) if size else float(self.max)
        self.window_min = min(self.window_min, self.window_now)
        if self.window_now < self.max / 4:
            self.window_low_s += dt
        self.slots_max = max(self.slots_max, int(slots))

    def summary(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "lock_stall_s": self.lock_stall_s,
                "max_lock_age_s": self.max_lock_age_s, "stall_after_s": TICK_STALL_AFTER_S,
                "window_min": self.window_min, "window_max": self.max,
                "window_low_s": self.window_low_s, "slots_max": self.slots_max}


def job_statuses(r: redis.Redis, job_ids: list[str]) -> Counter[str]:
    pipe = r.pipeline(transaction=False)
    for jid in job_ids:
        pipe.hget(f"{PREFIX}:job:{jid}", "status")
    return Counter(s or "missing" for s in pipe.execute())


def queue_depths(r: redis.Redis) -> dict[str, int]:
    out = {}
    for name in IDLE_QUEUES:
        if name == "ready:*":
            out[name] = sum(r.zcard(k) for k in r.scan_iter(f"{PREFIX}:ready:*", count=1000))
        elif name == "jobs:live":
            out[name] = r.scard(f"{PREFIX}:jobs:live")
        else:
            out[name] = r.zcard(f"{PREFIX}:{name}")
    return out


def celery_depths(r: redis.Redis, samples: int = 5) -> tuple[dict[str, int], int]:
    """Lengths of the Celery queue lists (the smallest of a few samples: beat adds a tick
    message every tick interval, which a worker takes at once) and the unacked count."""
    lists: dict[str, int] = {}
    unacked = 0
    for i in range(samples):
        for key in r.scan_iter(f"{PREFIX}:celery:*", count=1000):
            kind = r.type(key)
            if kind == "list":
                name = key.removeprefix(f"{PREFIX}:celery:")
                lists[name] = min(lists.get(name, 10**9), r.llen(key))
            elif kind == "hash" and key.endswith(":unacked"):
                unacked = r.hlen(key)
        if not any(lists.values()):
            break
        if i < samples - 1:
            time.sleep(0.3)
    return lists, unacked


def is_idle(r: redis.Redis) -> bool:
    return not any(queue_depths(r).values()) and not any(celery_depths(r, 3)[0].values())


class Monitor:
    """Watches the run once a second (job statuses straight from our own Redis, the
    dispatch machinery, the worker's RSS) and prints progress every 10 s."""

    def __init__(self, system: System, plan: Plan, sub: Submitter, r: redis.Redis) -> None:
        self.system = system
        self.plan = plan
        self.sub = sub
        self.r = r
        self.watch = Watch(r, plan.max_in_flight)
        self.cpu = CpuMeter(system.procs)
        self.counts: Counter[str] = Counter()
        self.terminal = 0
        self.all_terminal = False
        self.peak_rss = 0.0
        self._last_print = -5.0     # prints at 5, 15, 25 s: between the worker kills
        self._last_sample = time.monotonic()

    def step(self, t: float) -> None:
        with self.sub.lock:
            ids = list(self.sub.job_ids.values())
        with contextlib.suppress(redis.RedisError):
            self.counts = job_statuses(self.r, ids)
            now = time.monotonic()
            self.watch.sample(now - self._last_sample)
            self._last_sample = now
        self.terminal = sum(n for s, n in self.counts.items()
                            if s in ("succeeded", "partial", "failed", "cancelled"))
        self.all_terminal = (self.sub.done.is_set()
                             and self.terminal == self.plan.jobs - len(self.sub.errors))
        self.cpu.sample()
        rss = self.system.rss("worker")
        self.peak_rss = max(self.peak_rss, rss)
        if t - self._last_print >= 10:
            self._last_print = t
            try:
                st = self.system.sim_stats()
                upstream = (f"upstream tasks {sum(st['submissions'].values())} (running "
                            f"{st['running']}, waiting {st['waiting']})")
            except (requests.RequestException, ValueError):
                upstream = "simulator busy"
            log(f"t={t:6.1f}s  jobs {len(ids)}/{self.plan.jobs} created, {self.terminal} "
                f"terminal {dict(self.counts)}; {upstream}; window "
                f"{self.watch.window_now:.1f}, tick lock age {self.watch.lock_age_now:.0f} s; "
                f"worker RSS {rss:.0f} MB")

    def until(self, t0: float, limit_s: float, done: Callable[[], bool],
              on_tick: Callable[[], None] | None = None) -> None:
        """Step once a second until ``done()`` or ``limit_s`` after ``t0``."""
        while True:
            t = time.monotonic() - t0
            self.step(t)
            if on_tick:
                on_tick()
            if done() or t > limit_s:
                return
            time.sleep(1.0)


# -- collecting -----------------------------------------------------------------------------
def _event_relative(data: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data.get("images"), list):
        data["images"] = [str(k).removeprefix(f"{S3_PREFIX}/") for k in data["images"]]
    return data


def _sink_relative(view: dict[str, Any]) -> dict[str, Any]:
    """Image keys below the storage prefix, as the inventory lists objects (views and
    events give each object's real key, prefix included)."""
    for step in view.get("steps") or []:
        for img in step.get("images") or []:
            img["key"] = img["key"].removeprefix(f"{S3_PREFIX}/")
    return view


def fetch_views(system: System, job_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    def one(jid: str) -> tuple[str, dict[str, Any] | None]:
        for _ in range(5):
            try:
                resp = requests.get(f"{system.web_url}/v1/jobs/{jid}", headers=system.headers,
                                    timeout=HTTP_TIMEOUT_S)
                if resp.status_code == 200:
                    return jid, _sink_relative(resp.json())
            except requests.RequestException:
                pass
            time.sleep(0.5)
        return jid, None

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, job_ids))


def listing_counts(system: System) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in ("queued", "running", "succeeded", "partial", "failed", "cancelled"):
        cursor, n = None, 0
        for _ in range(1000):                       # bounded: 200 000 jobs at most
            params: dict[str, Any] = {"status": status, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = requests.get(f"{system.web_url}/v1/jobs", params=params,
                                headers=system.headers, timeout=60).json()
            n += len(page["items"])
            cursor = page.get("next")
            if not cursor:
                break
        counts[status] = n
    return counts


def s3_inventory(system: System, views: dict[str, dict | None], verify_bytes: int,
                 seed: int) -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    s3 = system.s3()
    base = f"{S3_PREFIX}/"
    objects: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=base):
        for ver in page.get("Versions", []):
            key = ver["Key"][len(base):]
            if key.endswith(THUMB_SUFFIX):
                continue                              # each image's thumbnail, beside it
            entry = objects.setdefault(key, {"size": 0, "versions": 0, "etags": [], "times": []})
            entry["versions"] += 1
            entry["etags"].append(ver.get("ETag"))
            entry["times"].append(ver["LastModified"].timestamp())
            if ver.get("IsLatest"):
                entry["size"] = ver["Size"]
    image_keys = [i["key"] for v in views.values() if v for s in v["steps"] for i in s["images"]
                  if i["key"] in objects]

    def head(key: str) -> tuple[str, dict[str, Any]]:
        h = s3.head_object(Bucket=BUCKET, Key=base + key)
        from urllib.parse import unquote

        return key, {"size": h["ContentLength"], "sha256": unquote(h["Metadata"].get("sha256", ""))}

    def body_hash(key: str) -> tuple[str, str]:
        data = s3.get_object(Bucket=BUCKET, Key=base + key)["Body"].read()
        return key, hashlib.sha256(data).hexdigest()

    sample = random.Random(seed).sample(image_keys, min(verify_bytes, len(image_keys)))
    with ThreadPoolExecutor(6) as pool:
        heads = dict(pool.map(head, image_keys))
        hashes = dict(pool.map(body_hash, sample))
    return objects, heads, hashes


STEP_RE = re.compile(r"(stp_[0-9a-f]{20})")
AFTER_RE = re.compile(r"after (\d+)s")


def _log_time(ts: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return None


def submit_log(procs: Procs) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """From the worker's JSON log: the ambiguous resubmits (step, when, when its first
    submit started) and the submits whose answer was lost (step -> times)."""
    resubmits: list[dict[str, Any]] = []
    lost: dict[str, list[float]] = {}
    path = procs.logs.get("worker")
    if not path or not path.exists():
        return resubmits, lost
    with path.open(errors="replace") as fh:
        for line in fh:
            if "counted as ambiguous" not in line and "answer lost" not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            msg = str(entry.get("msg", ""))
            step = (STEP_RE.findall(msg) or [None])[0]
            at = _log_time(str(entry.get("ts", "")))
            if step is None or at is None:
                continue
            if "counted as ambiguous" in msg:
                after = AFTER_RE.search(msg)
                resubmits.append({"step": step, "at": at,
                                  "started": at - float(after.group(1)) if after else None})
            elif msg.startswith("submit of step"):
                lost.setdefault(step, []).append(at)
    return resubmits, lost


def collect(system: System, plan: Plan, sub: Submitter, chaos: Chaos,
            rss: dict[str, float]) -> Collected:
    r = system.redis.client()
    job_ids = [sub.job_ids[i] for i in sorted(sub.job_ids)]
    views = fetch_views(system, job_ids)
    counters = {name: {k: int(v) for k, v in r.hgetall(f"{PREFIX}:counter:{name}").items()}
                for name in ("effects", "submits", "callbacks", "polls", "storage",
                             "webhook_attempts", "answers")}
    celery, unacked = celery_depths(r)
    resubmits, lost = submit_log(system.procs)
    objects, heads, hashes = s3_inventory(system, views, plan.verify_bytes, plan.seed)
    sim = system.sim.sim
    timelines = {}
    for task in sim.recent(None):
        tl = sim.timeline(task["id"])
        if tl:
            timelines[task["id"]] = tl
    assert system.consumer is not None
    events = {job: [dict(e, data=_event_relative(dict(e["data"]))) for e in got]
              for job, got in system.consumer.events_by_job().items()}
    with system.consumer.lock:
        bad = list(system.consumer.bad)
    known = set(job_ids)
    bad += [{"why": f"event for unknown job {k}"} for k in events if k not in known]
    return Collected(
        n_jobs=plan.jobs, job_ids=job_ids, submit_errors=sub.errors, views=views,
        listing_counts=listing_counts(system), sim_stats=system.sim_stats(),
        timelines=timelines, counters=counters, queues=queue_depths(r), celery=celery,
        celery_unacked=unacked, objects=objects, heads=heads, byte_hashes=hashes,
        events=events, bad_events=bad, ambiguous_steps=[r["step"] for r in resubmits],
        resubmits=resubmits, lost_answers=lost, submit_timeout_s=plan.upstream_timeout_s,
        chaos=chaos.stats, rss_mb=rss, max_rss_mb=plan.max_rss_mb,
        deadlines={"step": plan.step_deadline_s, "upscale": plan.upscale_deadline_s},
        now=time.time())


# -- the run --------------------------------------------------------------------------------
@dataclass
class Outcome:
    ok: bool
    table: str
    summary: dict[str, Any] = field(default_factory=dict)


def run(plan: Plan, keep: bool = False) -> Outcome:
    workdir = Path(tempfile.mkdtemp(prefix="mjflow-chaos-"))
    system = System(plan, workdir)
    run_id = uuid.uuid4().hex[:8]
    started = time.monotonic()
    chaos: Chaos | None = None
    chaos_thread: threading.Thread | None = None
    ok = False
    try:
        log(f"starting the system in {workdir} (Redis with AOF on port {system.redis.port})")
        system.start()
        startup_s = time.monotonic() - started
        system.set_faults(
            seed=plan.seed, drop_callbacks=plan.drop_callbacks,
            duplicate_callbacks=plan.duplicate_callbacks, reorder_callbacks=True,
            delay_callbacks_ms=plan.delay_callbacks_ms, http_500=plan.http_500,
            stuck=plan.stuck, stuck_timeout_s=plan.stuck_timeout_s, fail=plan.fail,
            hung_submit=plan.hung_submit, hung_submit_ms=plan.hung_submit_ms)
        idle_rss = {"worker": system.rss("worker"), "web": system.rss("web"),
                    "beat": system.rss("beat")}
        log(f"up in {startup_s:.1f} s; {plan.jobs} jobs x {STEPS_PER_JOB} steps, "
            f"{plan.accounts} accounts x ({plan.core_size}+{plan.queue_size}), speed {plan.speed}")
        sub = Submitter(system, run_id)
        chaos = Chaos(system, plan)
        t0 = time.monotonic()
        r = system.redis.client()
        state = {"all_terminal": False}
        sub_thread = threading.Thread(target=sub.run, args=(t0, plan.submit_over_s, plan.jobs),
                                      daemon=True, name="chaos-submitter")
        sub_thread.start()
        chaos_thread = threading.Thread(target=chaos.run,
                                        args=(t0, lambda: not state["all_terminal"]),
                                        daemon=True, name="chaos-events")
        chaos_thread.start()
        mon = Monitor(system, plan, sub, r)
        mon.until(t0, plan.duration_s, lambda: mon.all_terminal and chaos.one_offs_done,
                  on_tick=lambda: state.update(all_terminal=mon.all_terminal))
        run_s = time.monotonic() - t0
        in_time = mon.all_terminal
        terminal_at_limit = mon.terminal
        chaos.stats["watch"] = mon.watch.summary()
        chaos.stats["cpu"] = mon.cpu.result()
        chaos.stop.set()
        chaos_thread.join(timeout=120)
        chaos.heal()
        settle_s = 0.0
        if in_time:
            log(f"all jobs terminal after {run_s:.1f} s")
        else:
            log(f"not all jobs terminal within {plan.duration_s:.0f} s; chaos stopped, waiting "
                f"at most {plan.drain_s:.0f} s for them to finish")
            settle_start = time.monotonic()
            mon.until(t0, run_s + plan.drain_s, lambda: mon.all_terminal)
            settle_s = time.monotonic() - settle_start
        chaos.stats["terminal"] = {"in_time": in_time, "run_s": run_s,
                                   "count_at_limit": terminal_at_limit,
                                   "duration_s": plan.duration_s,
                                   "settled_after_chaos_s": None if in_time else (
                                       settle_s if mon.all_terminal else None)}
        counts = mon.counts
        peak_rss = mon.peak_rss
        log(f"waiting for idle (at most {plan.drain_s:.0f} s)")
        drain_start = time.monotonic()
        with contextlib.suppress(RuntimeError):
            wait_until(lambda: is_idle(r), plan.drain_s, "idle", step_s=1.0)
        time.sleep(2.0)   # a last tick; in-flight deliveries land
        drain_s = time.monotonic() - drain_start
        rss = {"worker (idle, before)": idle_rss["worker"],
               "worker (end)": system.rss("worker"), "worker (peak)": peak_rss,
               "web (end)": system.rss("web"), "beat (end)": system.rss("beat"),
               "redis used_memory": float(r.info("memory")["used_memory"]) / 2**20}
        log("collecting and checking")
        collected = collect(system, plan, sub, chaos, rss)
        verdict = evaluate(collected, expect={"worker_kills": 1, "burst": plan.burst})
        for err in chaos.errors:
            verdict.violations.append(f"chaos: {err}")
        if sub.retries:
            verdict.rows.append(Row(
                "job submissions", None, f"{len(sub.job_ids)} created, {sub.retries} requests "
                f"retried (web/Redis restarts; Idempotency-Key made them safe)"))
        total_s = time.monotonic() - started
        summary = {
            "plan": asdict(plan), "startup_s": round(startup_s, 1), "run_s": round(run_s, 1),
            "settle_s": round(settle_s, 1), "drain_s": round(drain_s, 1),
            "total_s": round(total_s, 1),
            "job_statuses": dict(counts), "chaos": chaos.stats, "rss_mb": rss,
            "counters": collected.counters, "sim": collected.sim_stats,
            "violations": verdict.violations,
        }
        table = render(verdict)
        done = (f"all terminal in {run_s:.0f} s" if in_time else
                f"NOT all terminal within {plan.duration_s:.0f} s (then {settle_s:.0f} s without "
                f"chaos: {'all terminal' if mon.all_terminal else 'still not all terminal'})")
        header = (f"chaos soak: {plan.jobs} jobs x {STEPS_PER_JOB} steps; {done}, idle "
                  f"{drain_s:.0f} s later; {total_s:.0f} s in all (start-up {startup_s:.0f} s)")
        ok = verdict.ok
        if not ok:
            for name in ("worker", "web", "beat", "redis"):
                print(f"--- {name} log (tail) ---\n{system.procs.tail(name)}", file=sys.stderr)
        return Outcome(ok, header + "\n" + table, summary)
    finally:
        if chaos is not None:
            chaos.stop.set()
        if chaos_thread is not None:
            chaos_thread.join(timeout=120)
        system.stop()
        if not ok:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for path in workdir.glob("*.log"):
                shutil.copy(path, ARTIFACTS / path.name)
            log(f"logs copied to {ARTIFACTS}")
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the ~2-minute CI version")
    ap.add_argument("--jobs", type=int, help="jobs to run (default 1000; quick 60)")
    ap.add_argument("--duration-s", type=float,
                    help="every job must be terminal within this (default 3600; quick 180)")
    ap.add_argument("--seed", type=int, help="simulator fault seed")
    ap.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, AOF)")
    return ap.parse_args(argv)


def _terminate(signum: int, frame: Any) -> None:
    log(f"got {signal.Signals(signum).name}: stopping")
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.jobs is not None:
        plan.jobs = args.jobs
    if args.duration_s is not None:
        plan.duration_s = args.duration_s
    if args.seed is not None:
        plan.seed = args.seed
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        outcome = run(plan, keep=args.keep)
    except KeyboardInterrupt:
        log("interrupted; everything stopped")
        return 130
    print(outcome.table, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(outcome.summary, indent=2, default=str))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
