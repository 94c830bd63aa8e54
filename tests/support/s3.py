"""A real S3 API for tests and benchmarks: moto in server mode, as a subprocess.

Not moto's in-process mocks: the code under test talks HTTP to a separate process, so
connection errors, outages and presigned URLs behave as they do against S3.

    with moto_server() as endpoint:          # "http://127.0.0.1:PORT"
        make_bucket(endpoint, "images")

For an outage, use :class:`MotoServer` directly: ``stop()`` then ``start()`` brings it back
on the same port. moto keeps its state in memory, so a restarted server has no buckets:
create them again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import boto3
import requests
from botocore.config import Config

from worker.dev.localnet import free_port

TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class MotoServer:
    """``python -m moto.server`` on a fixed loopback port, startable and stoppable."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host=host)
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the server and wait until it answers; return its endpoint URL."""
        if self.process is not None and self.process.poll() is None:
            return self.url
        env = {**os.environ, **TEST_AWS_ENV}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited early:\n{self.log()}")
            try:
                requests.get(f"{self.url}/moto-api/", timeout=1.0)
                return self.url
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer within {timeout_s:g} s:\n{self.log()}")

    def stop(self) -> None:
        """Stop the server (its state is lost)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> str:
        self.stop()
        return self.start()

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def close(self) -> None:
        self.stop()
        self._log.close()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def moto_server(port: int = 0) -> Iterator[str]:
    """Run a moto server for the duration of the block; yield its endpoint URL."""
    server = MotoServer(port)
    try:
        yield server.start()
    finally:
        server.close()


def s3_client(endpoint: str, *, max_attempts: int = 2, timeout_s: float = 5.0) -> Any:
    """A boto3 S3 client for ``endpoint`` with test credentials, configured like the sink's."""
    session = boto3.session.Session(
        aws_access_key_id=TEST_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=TEST_AWS_ENV["AWS_DEFAULT_REGION"],
    )
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": max_attempts},
        signature_version="s3v4",
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
    )
    return session.client("s3", endpoint_url=endpoint, config=config)


def make_bucket(endpoint: str, name: str) -> None:
    """Create bucket ``name`` on the server at ``endpoint`` (fine if it exists)."""
    client = s3_client(endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=name)
