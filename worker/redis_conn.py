"""The Redis connection and key builder for this process, from settings.

:func:`connect` is the one place a Redis client for the job store is built: a plain
``redis://``/``rediss://``/``unix://`` URL gives a client on that server; a ``sentinel://``
URL gives ``Sentinel(...).master_for(MJFLOW_REDIS_SENTINEL_MASTER)``, a client that asks
the Sentinels where the master is and follows it through a failover (connection errors and
writes refused by a demoted master are retried with backoff for about
``FAILOVER_RETRY_S``). :func:`sentinel_transport_options` gives kombu the same facts for
the broker.
"""
from __future__ import annotations

import functools
import ssl
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from worker.keys import Keys
from worker.redisurl import is_sentinel, parse_sentinel
from worker.settings import Settings, get_settings

SOCKET_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 5
SENTINEL_SOCKET_TIMEOUT_S = 2
FAILOVER_RETRY_S = 20.0
_FAILOVER_RETRIES = 40          # 40 tries, backoff capped at 0.5 s: ~20 s to ride a failover


def connect(settings: Settings | None = None, *, url: str | None = None,
            decode_responses: bool = True) -> redis.Redis:
    """A Redis client for ``url`` (default ``MJFLOW_REDIS_URL``), Sentinel-aware."""
    settings = settings or get_settings()
    url = url or settings.redis_url
    common: dict[str, Any] = {"decode_responses": decode_responses, "health_check_interval": 30,
                              "socket_timeout": SOCKET_TIMEOUT_S,
                              "socket_connect_timeout": CONNECT_TIMEOUT_S}
    if not is_sentinel(url):
        return redis.Redis.from_url(url, retry_on_timeout=True, **common)
    target = parse_sentinel(url)
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs(settings),
                        **tls_kwargs(settings))
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), _FAILOVER_RETRIES)
    return sentinel.master_for(
        settings.redis_sentinel_master, db=target.db, username=target.username,
        password=target.password, retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ReadOnlyError], **common,
    )


def tls_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection arguments for TLS to the master/replicas (``MJFLOW_REDIS_SENTINEL_TLS``)."""
    if not settings.redis_sentinel_tls:
        return {}
    out: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "required"}
    if settings.redis_sentinel_tls_ca_file:
        out["ssl_ca_certs"] = settings.redis_sentinel_tls_ca_file
    return out


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for the connections to the Sentinels themselves (password, TLS, timeouts)."""
    out: dict[str, Any] = {"socket_timeout": SENTINEL_SOCKET_TIMEOUT_S,
                           "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT_S}
    if settings.redis_sentinel_password:
        out["password"] = settings.redis_sentinel_password
    return out | tls_kwargs(settings)


def sentinel_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu transport options for a ``sentinel://`` broker (master name, Sentinel auth)."""
    return {"master_name": settings.redis_sentinel_master,
            "sentinel_kwargs": sentinel_kwargs(settings)}


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` for a ``sentinel://`` broker with TLS, else None."""
    if not settings.redis_sentinel_tls:
        return None
    out: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_sentinel_tls_ca_file:
        out["ssl_ca_certs"] = settings.redis_sentinel_tls_ca_file
    return out


def broker_url(settings: Settings) -> str:
    """The broker URL for kombu: a ``sentinel://`` URL gets its db/credentials up front."""
    url = settings.broker
    return parse_sentinel(url).kombu_url() if is_sentinel(url) else url


@functools.lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    return connect()


def get_keys(settings: Settings | None = None) -> Keys:
    return Keys((settings or get_settings()).key_prefix)
