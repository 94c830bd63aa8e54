"""A whole mjflow on loopback for end-to-end tests: the simulator (in-process server), the
web app under gunicorn, a Celery worker and Celery beat (subprocesses, as in the
Procfile), all on the real Redis under a key prefix of their own."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from worker.dev.localnet import free_port, stop_group, wait_http

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("MJFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUES = "mjflow.submit,mjflow.reconcile,mjflow.store,mjflow.deliver,mjflow.tick,mjflow.api"


@dataclass
class Stack:
    profile: str = "midjourney-proxy"
    speed: float = 100.0
    callbacks: bool = True
    env_extra: dict[str, str] = field(default_factory=dict)
    sim_options: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None
    prefix: str = field(default_factory=lambda: f"mjflow-test-{uuid.uuid4().hex[:10]}")
    api_key: str = "test-key"

    def __post_init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.r = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Stack:
        from simulator.server import start as start_sim

        self.workdir = self.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / self.prefix
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sim = start_sim(port=0, profile=self.profile, speed=self.speed, **self.sim_options)
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "MJFLOW_UPSTREAM_URL": self.sim.url,
            "MJFLOW_UPSTREAM_PROFILE": self.profile,
            "MJFLOW_REDIS_URL": REDIS_URL,
            "MJFLOW_KEY_PREFIX": self.prefix,
            "MJFLOW_STORAGE_URL": f"file://{self.workdir}/images",
            "MJFLOW_ALLOW_PRIVATE_URLS": "true",
            "MJFLOW_API_KEYS": self.api_key,
            "MJFLOW_HOOK_SECRET": "hook-secret-test",
            "MJFLOW_WEBHOOK_SECRET": "whsec_" + "dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0",
            "MJFLOW_POLL_INTERVAL_S": "0.5",
            "MJFLOW_TICK_INTERVAL_S": "0.25",
            "MJFLOW_SUBMIT_GRACE_S": "3",
            "MJFLOW_REDRIVE_S": "5",
            "MJFLOW_HEARTBEAT_PUSH_S": "2",
            "MJFLOW_QUEUE_FULL_BACKOFF_S": "0.5",
            "MJFLOW_STEP_DEADLINE_S": "60",
            "MJFLOW_UPSCALE_DEADLINE_S": "60",
            "MJFLOW_UPSTREAM_TIMEOUT_S": "3",
            "PYTHONUNBUFFERED": "1",
        }
        if self.callbacks:
            self.env["MJFLOW_PUBLIC_URL"] = self.web_url
        self.env.update(self.env_extra)
        self.start_web()
        self.start_worker()
        self.start_beat()
        wait_http(f"{self.web_url}/healthz")
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        assert self.workdir is not None
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_web(self) -> None:
        self._spawn("web", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.web_port}",
                            "--workers", "1", "--threads", "8", "webhook:create_app()"])

    def start_worker(self) -> None:
        self._spawn("worker", [str(BIN / "celery"), "-A", "worker.celery_app", "worker",
                               "--loglevel", "WARNING", "--concurrency", "4", "-Q", QUEUES,
                               "--without-gossip", "--without-mingle", "--without-heartbeat",
                               "-n", f"w-{uuid.uuid4().hex[:6]}@%h"])

    def start_beat(self) -> None:
        assert self.workdir is not None
        self._spawn("beat", [str(BIN / "celery"), "-A", "worker.celery_app", "beat",
                             "--loglevel", "WARNING", "--schedule", str(self.workdir / "beat.db")])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_group(proc, sig)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
        self.sim.stop()
        for key in self.r.scan_iter(f"{self.prefix}:*", count=1000):
            self.r.delete(key)
        if self.workdir and not os.environ.get("MJFLOW_KEEP_TEST_FILES"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use ----------------------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def submit(self, spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
        resp = requests.post(f"{self.web_url}/v1/jobs", json=spec, headers=self.headers, timeout=10, **kw)
        assert resp.status_code in (200, 202), resp.text
        return resp.json()

    def job(self, job_id: str) -> dict[str, Any]:
        resp = requests.get(f"{self.web_url}/v1/jobs/{job_id}", headers=self.headers, timeout=10)
        assert resp.status_code == 200, resp.text
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

    def sim_stats(self) -> dict[str, Any]:
        return requests.get(f"{self.sim.url}/_sim/stats", timeout=5).json()

    def set_faults(self, **faults: Any) -> None:
        resp = requests.put(f"{self.sim.url}/_sim/faults", json=faults, timeout=5)
        assert resp.status_code == 200, resp.text

    def tail_logs(self, lines: int = 40) -> str:
        out = []
        for name, path in self.logs.items():
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def counters(self, name: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(f"{self.prefix}:counter:{name}").items()}
