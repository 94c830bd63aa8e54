"""Small helpers for local runs (demo, dev S3, tests, benchmarks) on loopback."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

import requests


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` if it can be bound, else any free port."""
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Wait until ``url`` answers HTTP at all (any status)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
    """Send ``sig`` to the process group ``proc`` leads (started with
    ``start_new_session=True``), wait, and SIGKILL the group if it is still there."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
