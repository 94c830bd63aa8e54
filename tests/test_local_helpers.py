"""The local helpers stop cleanly: the dev S3 API frees its port on SIGTERM, honcho stops
the Procfile's worker without a ``WorkerLostError`` while a task runs, the beat leaves no
schedule file behind, and the demo reports vanished jobs instead of a traceback.
Real processes and real signals throughout."""
from __future__ import annotations

import io
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from rich.console import Console

from tests.support.stack import BIN, Stack
from tests.support.web import serve
from webhook import create_app
from worker.dev import demo
from worker.dev.localnet import ROOT, Procs, free_port, wait_until


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_dev_s3_stops_on_sigterm_and_frees_its_port(tmp_path):
    port = free_port()
    procs = Procs(tmp_path)
    proc = procs.spawn("s3", [sys.executable, "-m", "worker.dev.locals3", "--port", str(port),
                              "--bucket", "dev"])
    try:
        wait_until(lambda: "local S3 API at" in procs.tail("s3"), 30, "the dev S3 API")
        assert requests.head(f"http://127.0.0.1:{port}/dev", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)               # the process alone, as `kill PID` does
        assert proc.wait(timeout=20) == 0
        assert _port_free(port), "the moto server still holds the port"
        assert "local S3 API stopped" in procs.tail("s3")
    finally:
        procs.stop_all()


class HonchoStack(Stack):
    """The repository's Procfile (web, worker, beat) under honcho instead of one process each."""

    def start_web(self) -> None:
        assert self.workdir is not None
        self._spawn("honcho", [str(BIN / "honcho"), "-f", str(ROOT / "Procfile"), "-d", str(ROOT),
                               "start"],
                    PATH=f"{BIN}:/usr/bin:/bin", HOST="127.0.0.1", PORT=str(self.web_port),
                    WEB_CONCURRENCY="1", WORKER_CONCURRENCY="2",
                    BEAT_SCHEDULE_FILE=str(self.workdir / "beat-schedule"))

    def start_worker(self) -> None:
        pass

    def start_beat(self) -> None:
        pass


def test_stopping_honcho_mid_task_logs_no_worker_lost_error():
    faults = {"hung_submit": 1.0, "hung_submit_ms": 8000}   # the submit task hangs for 8 s
    with HonchoStack(speed=100, sim_options={"faults": faults},
                     env_extra={"MJFLOW_UPSTREAM_TIMEOUT_S": "20"}) as stack:
        stack.submit({"prompt": "a lighthouse"})
        wait_until(lambda: stack.sim_stats()["submissions"].get("IMAGINE"), 30, "the submit")
        time.sleep(0.5)                                     # the worker waits for the answer
        assert stack.procs is not None
        honcho = stack.procs["honcho"]
        stack.procs.kill("honcho", signal.SIGTERM, timeout_s=30, leader_only=True)
        assert honcho.returncode is not None
        log = Path(stack.procs.logs["honcho"]).read_text(errors="replace")
        assert "sending SIGTERM to worker" in log, log[-3000:]
        assert "WorkerLostError" not in log and "exited with 'signal 15" not in log, log[-3000:]
        assert "Cold shutdown" in log or "Warm shutdown" in log, log[-3000:]
        assert not list(ROOT.glob("celerybeat-schedule*"))


def test_the_demo_says_its_jobs_vanished(make_engine):
    engine = make_engine()
    out = io.StringIO()
    with serve(create_app(engine.settings, engine)) as url:
        def flush() -> None:
            wait_until(lambda: engine.r.zcard(engine.keys.jobs()) >= len(demo.demo_specs()), 10, "jobs")
            for key in engine.r.scan_iter(engine.keys.pattern()):
                engine.r.delete(key)

        flusher = threading.Thread(target=flush)
        flusher.start()
        with pytest.raises(demo.JobsVanished, match=r"jobs vanished \(the store was flushed\?\): job job_"):
            demo.run_jobs(Console(file=out), url, 20, "http://127.0.0.1:9/events")
        flusher.join()
