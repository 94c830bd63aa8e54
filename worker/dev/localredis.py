"""Make sure a Redis answers at ``MJFLOW_REDIS_URL``; start a local ``redis-server`` if none
does (local runs and tests only). Exits non-zero with a clear message if neither works."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis

from worker.redis_conn import connect
from worker.redisurl import is_sentinel, redact

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def answers(url: str) -> bool:
    try:
        return bool(connect(url=url).ping())
    except redis.RedisError:
        return False


def ensure(url: str | None = None) -> str:
    url = url or os.environ.get("MJFLOW_REDIS_URL", DEFAULT_URL)
    if answers(url):
        return f"Redis answers at {redact(url)}"
    if is_sentinel(url):
        raise SystemExit(f"no Redis master answers through the Sentinels at {redact(url)}")
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"no Redis answers at {redact(url)}; start it or set MJFLOW_REDIS_URL")
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit(
            f"no Redis answers at {redact(url)} and redis-server is not installed: "
            "install it (apt-get install redis-server) or set MJFLOW_REDIS_URL"
        )
    subprocess.run([server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
                    "--save", "", "--appendonly", "no"], check=True)
    for _ in range(50):
        if answers(url):
            return f"started a local redis-server on port {port}"
        time.sleep(0.1)
    raise SystemExit(f"started redis-server but nothing answers at {redact(url)}")


if __name__ == "__main__":
    try:
        print(ensure())
    except SystemExit as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
