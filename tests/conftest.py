"""Shared fixtures: the real Redis under a key prefix of its own per test, settings and an
engine built on it (``engine``, or ``make_engine(**overrides)``; module-scoped fixtures
call :func:`settings_for` and :func:`engine_for`). Heavier fixtures (simulator, live app, Celery worker, S3) live in
``tests/support``."""
from __future__ import annotations

import os
import uuid
from typing import Any

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


def settings_for(prefix: str, storage_dir: str, **overrides: Any):  # type: ignore[no-untyped-def]
    """Test settings: the test Redis under ``prefix``, files under ``storage_dir``,
    loopback URLs allowed; ``overrides`` win."""
    from worker.settings import load_settings

    base = dict(redis_url=REDIS_URL, key_prefix=prefix, storage_url=f"file://{storage_dir}",
                allow_private_urls=True, local_run=True)
    base.update(overrides)
    return load_settings(**base)


def engine_for(settings, r: redis.Redis | None = None):  # type: ignore[no-untyped-def]
    """The one way tests build an engine: in-process follow-ups (``Inline``) on ``r``
    (default: a client of the settings' Redis)."""
    from worker.flow.engine import Engine, Inline
    from worker.keys import Keys

    r = r if r is not None else redis.Redis.from_url(settings.redis_url, decode_responses=True)
    return Engine(settings, r, Keys(settings.key_prefix), Inline())


@pytest.fixture
def make_settings(prefix: str, tmp_path):
    def make(**overrides):
        return settings_for(prefix, f"{tmp_path}/images", **overrides)

    return make


@pytest.fixture
def make_engine(rds, make_settings):
    """``make_engine(**setting_overrides)`` (``r=`` for another Redis client)."""
    def make(r: redis.Redis | None = None, **overrides):
        return engine_for(make_settings(**overrides), rds if r is None else r)

    return make


@pytest.fixture
def engine(make_engine):
    return make_engine()
