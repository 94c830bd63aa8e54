"""A local S3 API for demos: moto's server on loopback with one bucket created.

    python -m worker.dev.locals3 --port 9000 --bucket mjflow
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from worker.dev.localnet import wait_http

DEFAULT_PORT = 9000


def make_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def start(port: int, host: str = "127.0.0.1") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://{host}:{port}")
    return proc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--bucket", default="mjflow")
    args = ap.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    proc = start(args.port)
    endpoint = f"http://127.0.0.1:{args.port}"
    make_bucket(endpoint, args.bucket)
    print(f"local S3 API at {endpoint}, bucket {args.bucket}", flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()


if __name__ == "__main__":
    main()
