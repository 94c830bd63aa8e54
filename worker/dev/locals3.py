"""A local S3 API for demos: moto's server on loopback with one bucket created.

    python -m worker.dev.locals3 --port 9000 --bucket mjflow

moto runs in this process (``moto.server.ThreadedMotoServer``), not as a child, so
stopping this process stops the server: Ctrl-C, SIGTERM (honcho, ``kill``) and SIGHUP all
shut it down and free the port. It keeps its objects in memory: they are gone once it stops.
"""
from __future__ import annotations

import argparse
import os
import signal
import threading

import boto3
from moto.server import ThreadedMotoServer

from worker.dev.localnet import wait_http

DEFAULT_PORT = 9000


def make_bucket(endpoint: str, bucket: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def serve(port: int, bucket: str, host: str = "127.0.0.1", stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM/SIGHUP arrive, in the main thread)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: stop.set())
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://{host}:{port}"
        wait_http(endpoint)
        make_bucket(endpoint, bucket)
        print(f"local S3 API at {endpoint}, bucket {bucket}", flush=True)
        stop.wait()
    finally:
        server.stop()
        print("local S3 API stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--bucket", default="mjflow")
    args = ap.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    serve(args.port, args.bucket)


if __name__ == "__main__":
    main()
