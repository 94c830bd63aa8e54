"""Shared fixtures: the real Redis under a key prefix of its own per test, settings and an
engine built on it. Heavier fixtures (simulator, live app, Celery worker, S3) live in
``tests/support``."""
from __future__ import annotations

import os
import uuid

import pytest
import redis

REDIS_URL = os.environ.get("MJFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _wipe(r: redis.Redis, prefix: str) -> None:
    for key in r.scan_iter(f"{prefix}:*", count=1000):
        r.delete(key)


@pytest.fixture
def prefix() -> str:
    return f"mjflow-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def rds(prefix: str):
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    r.ping()
    yield r
    _wipe(r, prefix)


@pytest.fixture
def make_settings(prefix: str, tmp_path):
    from worker.settings import load_settings

    def make(**overrides):
        base = dict(redis_url=REDIS_URL, key_prefix=prefix, storage_url=f"file://{tmp_path}/images",
                    allow_private_urls=True, local_run=True)
        base.update(overrides)
        return load_settings(**base)

    return make


@pytest.fixture
def engine(rds, make_settings):
    from worker.flow.engine import Engine, Inline
    from worker.keys import Keys

    settings = make_settings()
    return Engine(settings, rds, Keys(settings.key_prefix), Inline())
