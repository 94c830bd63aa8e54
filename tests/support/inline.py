"""One mjflow engine in this process, doing its follow-up work at once (no Celery), against
a real upstream over HTTP (the simulator): a fast way to run whole jobs in tests. The
pipeline functions are the production ones; only the hand-off to workers is immediate."""
from __future__ import annotations

import time
from typing import Any

import requests

from simulator import server as sim_server
from worker.flow.callbacks import reconcile_callback
from worker.flow.cancelling import cancel_upstream
from worker.flow.engine import Engine, Inline
from worker.flow.finishing import emit_step_event, finish_job
from worker.flow.storing import store_step
from worker.flow.submit import submit_step
from worker.flow.tick import tick
from worker.job_ops import get_job
from worker.keys import Keys


class Immediate(Inline):
    """Runs each hand-off in the calling thread (and logs it, as ``Inline`` does)."""

    def submit(self, step_id: str) -> None:
        super().submit(step_id)
        submit_step(self.engine, step_id)

    def store(self, step_id: str) -> None:
        super().store(step_id)
        store_step(self.engine, step_id)

    def reconcile(self, step_id: str, snapshot: dict[str, Any]) -> None:
        super().reconcile(step_id, snapshot)
        reconcile_callback(self.engine, step_id, snapshot)

    def finish(self, job_id: str) -> None:
        super().finish(job_id)
        finish_job(self.engine, job_id)

    def step_event(self, step_id: str) -> None:
        super().step_event(step_id)
        emit_step_event(self.engine, step_id)

    def cancel(self, step_id: str) -> None:
        super().cancel(step_id)
        cancel_upstream(self.engine, step_id)


class Rig:
    """The simulator of ``profile`` on loopback and an engine driving it."""

    def __init__(self, rds: Any, make_settings: Any, profile: str, *, speed: float = 200,
                 sim_options: dict[str, Any] | None = None, **settings: Any) -> None:
        self.sim = sim_server.start(port=0, profile=profile, speed=speed, **(sim_options or {}))
        cfg = make_settings(upstream_url=self.sim.url, upstream_profile=profile,
                            poll_interval_s=0.05, tick_interval_s=0.05, upstream_timeout_s=5,
                            **settings)
        immediate = Immediate()
        self.engine = Engine(cfg, rds, Keys(cfg.key_prefix), immediate)
        immediate.engine = self.engine

    def close(self) -> None:
        self.sim.stop()

    def run(self, job_ids: list[str], timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Tick until every job is finished; returns their views (``get_job``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            tick(self.engine)
            views = [get_job(self.engine, j) for j in job_ids]
            if all(v["finishedAt"] for v in views):
                return views
            if time.monotonic() > deadline:
                raise AssertionError(f"not finished in {timeout_s}s: " + str(
                    [[(s["label"], s["status"], s["failReason"]) for s in v["steps"]]
                     for v in views]))
            time.sleep(0.03)

    def run_once(self) -> None:
        tick(self.engine)
        time.sleep(0.03)

    def bodies(self, endpoint: str) -> list[dict[str, Any]]:
        """The bodies the simulator received on ``endpoint`` (``submit_imagine``...)."""
        got = requests.get(f"{self.sim.url}/_sim/requests", params={"endpoint": endpoint},
                           timeout=5).json()
        return [item["body"] for item in got]
