"""A whole mjflow on loopback, the one launcher of tests and benchmarks: the simulator
(in-process server), the web app under gunicorn, a Celery worker and Celery beat
(subprocesses, as in the Procfile), all on the real Redis under a key prefix of their own,
which :meth:`Stack.stop` deletes. ``bench.harness.BenchStack`` and ``bench.chaos`` build
on it with their own timers, sizes and processes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis
import requests

from worker.dev.localnet import Procs, free_port, wait_http

BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("MJFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUES = "mjflow.submit,mjflow.reconcile,mjflow.store,mjflow.deliver,mjflow.tick,mjflow.api"
WEBHOOK_SECRET = "whsec_" + "dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0"
#: Test pace: fast ticks and polls, short safety timers, so that a test waits seconds.
TEST_TIMERS = {
    "MJFLOW_POLL_INTERVAL_S": "0.5",
    "MJFLOW_TICK_INTERVAL_S": "0.25",
    "MJFLOW_SUBMIT_GRACE_S": "3",
    "MJFLOW_REDRIVE_S": "5",
    "MJFLOW_HEARTBEAT_PUSH_S": "2",
    "MJFLOW_QUEUE_FULL_BACKOFF_S": "0.5",
    "MJFLOW_BREAKER_COOLDOWN_S": "0.5",
    "MJFLOW_STEP_DEADLINE_S": "60",
    "MJFLOW_UPSCALE_DEADLINE_S": "60",
    "MJFLOW_UPSTREAM_TIMEOUT_S": "3",
}


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Let a cleanup finish: SIGINT/SIGTERM arriving meanwhile are held, then raised as
    KeyboardInterrupt once it is done (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt(f"signal {got[0]} (held during cleanup)")


@dataclass
class Stack:
    profile: str = "midjourney-proxy"
    speed: float = 100.0
    callbacks: bool = True
    env_extra: dict[str, str] = field(default_factory=dict)
    sim_options: dict[str, Any] = field(default_factory=dict)
    with_sim: bool = True
    #: several simulated upstreams instead of one: each item is an ``MJFLOW_UPSTREAMS`` entry
    #: without ``url`` (its simulator is started here), plus optional ``sim`` (start options)
    fleet: list[dict[str, Any]] | None = None
    workdir: Path | None = None
    prefix: str = field(default_factory=lambda: f"mjflow-test-{uuid.uuid4().hex[:10]}")
    redis_url: str = REDIS_URL
    api_key: str = "test-key"
    hook_secret: str = "hook-secret-test"
    webhook_secret: str = WEBHOOK_SECRET
    web_app: str = "webhook:create_app()"
    web_workers: int = 1
    web_threads: int = 8
    web_args: tuple[str, ...] = ()
    worker_concurrency: int = 4
    loglevel: str = "WARNING"
    quiet_worker: bool = True    # --without-gossip/mingle/heartbeat: a faster start
    procs: Procs | None = None   # share one with other processes (bench.chaos)
    keep_files_env: str = "MJFLOW_KEEP_TEST_FILES"
    wipe_keys: bool = True       # delete the prefix's keys at the end

    def __post_init__(self) -> None:
        self.r = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.http = requests.Session()
        self.sim: Any = None
        self.sims: dict[str, Any] = {}
        self._own_procs: Procs | None = None
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"

    def timers(self) -> dict[str, str]:
        """mjflow's pacing settings for this stack (``env_extra`` still wins)."""
        return dict(TEST_TIMERS)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Self:
        self.workdir = self.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / self.prefix
        self.workdir.mkdir(parents=True, exist_ok=True)
        upstream = self._start_sims()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("MJFLOW_")}
        self.env = {
            **inherited,
            **upstream,
            "MJFLOW_REDIS_URL": self.redis_url,
            "MJFLOW_KEY_PREFIX": self.prefix,
            "MJFLOW_STORAGE_URL": f"file://{self.workdir}/images",
            "MJFLOW_ALLOW_PRIVATE_URLS": "true",
            "MJFLOW_API_KEYS": self.api_key,
            "MJFLOW_HOOK_SECRET": self.hook_secret,
            "MJFLOW_WEBHOOK_SECRET": self.webhook_secret,
            "PYTHONUNBUFFERED": "1",
            **self.timers(),
        }
        if self.callbacks:
            self.env["MJFLOW_PUBLIC_URL"] = self.web_url
        self.env.update(self.env_extra)
        if self.procs is None:
            self.procs = self._own_procs = Procs(self.workdir, self.env)
        else:
            self.procs.env = self.env
        self.start_web()
        self.start_worker()
        self.start_beat()
        wait_http(f"{self.web_url}/healthz", timeout_s=60)
        return self

    def _start_sims(self) -> dict[str, str]:
        """Start the simulated upstream(s); returns the settings that name them."""
        from simulator.server import start as start_sim

        if self.fleet:
            entries = []
            for item in self.fleet:
                entry = {k: v for k, v in item.items() if k != "sim"}
                entry.setdefault("profile", self.profile)
                options = {"speed": self.speed, **item.get("sim", {})}
                self.sims[entry["name"]] = start_sim(port=0, profile=entry["profile"], **options)
                entries.append({**entry, "url": self.sims[entry["name"]].url})
            self.sim = next(iter(self.sims.values()))
            return {"MJFLOW_UPSTREAMS": json.dumps(entries)}
        if self.with_sim:
            self.sim = start_sim(port=0, profile=self.profile, speed=self.speed, **self.sim_options)
        return {"MJFLOW_UPSTREAM_URL": self.sim.url if self.sim else "http://127.0.0.1:9",
                "MJFLOW_UPSTREAM_PROFILE": self.profile}

    def _spawn(self, name: str, argv: list[str], **env: str) -> None:
        assert self.procs is not None
        self.procs.spawn(name, argv, {**self.env, **env})

    def start_web(self) -> None:
        self._spawn("web", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.web_port}",
                            "--workers", str(self.web_workers), "--threads", str(self.web_threads),
                            *self.web_args, self.web_app])

    def start_worker(self) -> None:
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"] if self.quiet_worker else []
        self._spawn("worker", [str(BIN / "celery"), "-A", "worker.celery_app", "worker",
                               "--loglevel", self.loglevel, "--concurrency",
                               str(self.worker_concurrency), "-Q", QUEUES, *quiet,
                               "-n", f"w-{uuid.uuid4().hex[:6]}@%h"],
                    REMAP_SIGTERM="SIGQUIT")      # as in the Procfile

    def start_beat(self) -> None:
        assert self.workdir is not None
        self._spawn("beat", [str(BIN / "celery"), "-A", "worker.celery_app", "beat",
                             "--loglevel", self.loglevel, "--schedule", str(self.workdir / "beat-schedule")])

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        if self.procs is not None:
            self.procs.kill(name, sig, timeout_s=20)

    def alive(self, name: str) -> bool:
        return self.procs is not None and self.procs.alive(name)

    def stop(self) -> None:
        with signals_deferred():
            if self._own_procs is not None:
                self._own_procs.stop_all(timeout_s=20)
            elif self.procs is not None:                  # shared: only what this stack started
                for name in ("beat", "worker", "web"):
                    self.kill(name)
            for sim in {id(s): s for s in [self.sim, *self.sims.values()] if s}.values():
                sim.stop()
            self.http.close()
            if self.wipe_keys:
                for key in self.r.scan_iter(f"{self.prefix}:*", count=2000):
                    self.r.delete(key)
            if self.workdir and not os.environ.get(self.keep_files_env):
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use ----------------------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def submit(self, spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
        resp = self.http.post(f"{self.web_url}/v1/jobs", json=spec, headers=self.headers, timeout=30, **kw)
        if resp.status_code not in (200, 202):
            raise AssertionError(f"POST /v1/jobs: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def job(self, job_id: str) -> dict[str, Any]:
        resp = self.http.get(f"{self.web_url}/v1/jobs/{job_id}", headers=self.headers, timeout=30)
        if resp.status_code != 200:
            raise AssertionError(f"GET /v1/jobs/{job_id}: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def wait_jobs(self, job_ids: list[str], timeout_s: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        views: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            views = [self.job(j) for j in job_ids]
            if all(v["finishedAt"] for v in views):
                return views
            time.sleep(0.3)
        raise AssertionError(f"jobs not finished in {timeout_s}s: " + str(
            [(v["id"], v["status"], [(s["label"], s["status"]) for s in v["steps"]]) for v in views])
            + "\n" + self.tail_logs())

    def sim_stats(self, upstream: str | None = None) -> dict[str, Any]:
        sim = self.sims[upstream] if upstream else self.sim
        return requests.get(f"{sim.url}/_sim/stats", timeout=10).json()

    def set_faults(self, upstream: str | None = None, **faults: Any) -> None:
        sim = self.sims[upstream] if upstream else self.sim
        resp = requests.put(f"{sim.url}/_sim/faults", json=faults, timeout=10)
        assert resp.status_code == 200, resp.text

    def tail_logs(self, lines: int = 40) -> str:
        return self.procs.tail_all(lines) if self.procs is not None else ""

    def counters(self, name: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(f"{self.prefix}:counter:{name}").items()}
