"""Small helpers for local runs (demo, dev S3, tests, benchmarks) on loopback: a free
port, waiting for a server, and process groups that are started with a log file each and
always stopped whole. The one copy of these: ``tests/`` and ``bench/`` import them too."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` if it can be bound, else any free port."""
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def wait_until(pred: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.1) -> None:
    """Wait until ``pred()`` is true; an exception from it counts as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if pred():
                return
        time.sleep(step_s)
    raise RuntimeError(f"{what} did not answer within {timeout_s:.0f}s")


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Wait until ``url`` answers HTTP at all (any status)."""
    wait_until(lambda: requests.get(url, timeout=1) is not None, timeout_s, url)


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 15.0,
               *, leader_only: bool = False) -> None:
    """Send ``sig`` to the process group ``proc`` leads (started with
    ``start_new_session=True``), or to ``proc`` alone with ``leader_only`` (a supervisor
    such as honcho that stops its own children), wait, and SIGKILL the group if it is still
    there. Members that outlive their leader (a SIGKILLed Celery parent's pool children)
    are killed too."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if leader_only:
                proc.send_signal(sig)
            else:
                os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class Procs:
    """Named subprocesses, each in a session of its own (so a group signal reaches its
    children) with its output in ``workdir/<name>.log``."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.workdir = workdir
        self.env = env
        self.cwd = cwd
        self.procs: dict[str, subprocess.Popen] = {}
        self.pgids: set[int] = set()
        self.logs: dict[str, Path] = {}
        self._lock = threading.Lock()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log_path = self.workdir / f"{name}.log"
        self.logs[name] = log_path
        with log_path.open("ab") as out:
            proc = subprocess.Popen(argv, cwd=self.cwd, env=env or self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self.procs[name] = proc
            self.pgids.add(proc.pid)
        return proc

    def __getitem__(self, name: str) -> subprocess.Popen:
        return self.procs[name]

    def items(self) -> list[tuple[str, subprocess.Popen]]:
        with self._lock:
            return list(self.procs.items())

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return bool(proc and proc.poll() is None)

    def kill(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 15.0, *,
             leader_only: bool = False) -> None:
        with self._lock:
            proc = self.procs.pop(name, None)
        if proc is not None:
            stop_group(proc, sig, timeout_s, leader_only=leader_only)

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every process, the reverse of the start order."""
        for name in reversed(list(self.procs)):
            self.kill(name, signal.SIGTERM, timeout_s)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs.get(name)
        if not path or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def tail_all(self, lines: int = 30) -> str:
        return "\n".join(f"--- {name} ---\n{self.tail(name, lines)}" for name in self.logs)
