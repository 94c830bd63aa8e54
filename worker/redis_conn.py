"""The Redis connection and key builder for this process, from settings."""
from __future__ import annotations

import functools

import redis

from worker.keys import Keys
from worker.settings import Settings, get_settings


def connect(settings: Settings | None = None) -> redis.Redis:
    settings = settings or get_settings()
    return redis.Redis.from_url(
        settings.redis_url, decode_responses=True, health_check_interval=30,
        socket_timeout=10, socket_connect_timeout=5, retry_on_timeout=True,
    )


@functools.lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    return connect()


def get_keys(settings: Settings | None = None) -> Keys:
    return Keys((settings or get_settings()).key_prefix)
