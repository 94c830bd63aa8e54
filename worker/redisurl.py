"""Redis URLs: kombu's ``sentinel://`` form parsed once, and passwords kept out of messages.

``sentinel://[user:password@]host:port[;sentinel://host:port...][/db]`` names the Sentinels
(not the master); the master's name comes from ``MJFLOW_REDIS_SENTINEL_MASTER``. The
password in the URL is the password of the Redis master/replicas (the Sentinels' own
password is ``MJFLOW_REDIS_SENTINEL_PASSWORD``). The ``/db`` may end any one segment.

kombu reads the credentials and the database from the *first* segment only, so
:meth:`SentinelURL.kombu_url` rewrites the URL with them there: the job store (redis-py)
and the broker (kombu) then always agree on the database.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
_PASSWORD_RE = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:@/;]*:)[^/;]*@", re.IGNORECASE)


def redact(url: str | None) -> str:
    """``url`` with every password replaced by ``***`` (safe for logs and errors)."""
    if not url:
        return ""
    return _PASSWORD_RE.sub(lambda m: m.group("head") + "***@", url)


def is_sentinel(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].lower() == SENTINEL_SCHEME  # type: ignore[union-attr]


@dataclass(frozen=True)
class SentinelURL:
    """The parts of a ``sentinel://`` URL."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    db: int = 0

    def kombu_url(self) -> str:
        """The same URL with credentials and db on the first segment (what kombu reads)."""
        auth = ""
        if self.username or self.password:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        parts = [f"{SENTINEL_SCHEME}://{auth if i == 0 else ''}{_hostport(h, p)}"
                 + (f"/{self.db}" if i == 0 else "")
                 for i, (h, p) in enumerate(self.hosts)]
        return ";".join(parts)

    def __repr__(self) -> str:  # never show the password
        return f"SentinelURL(hosts={self.hosts!r}, db={self.db})"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_sentinel(url: str) -> SentinelURL:
    """Parse a ``sentinel://`` URL; ``ValueError`` with a password-free message if bad."""
    shown = redact(url)
    hosts: list[tuple[str, int]] = []
    users, passwords, dbs = set(), set(), set()
    for raw in url.split(";"):
        segment = raw.strip()
        if not segment:
            continue
        try:
            parts = urlsplit(segment)
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise ValueError(f"bad sentinel address in {shown}: {exc}") from None
        if parts.scheme.lower() != SENTINEL_SCHEME:
            raise ValueError(f"every address must start with sentinel:// (got {shown})")
        if not host:
            raise ValueError(f"a sentinel address has no host in {shown}")
        if parts.query or parts.fragment:
            raise ValueError(f"query parameters are not supported in {shown}; "
                             "use the MJFLOW_REDIS_SENTINEL_* settings")
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"the database must be a number (/0, /1...), got /{path} "
                                 f"in {shown}")
            dbs.add(int(path))
        if parts.username:
            users.add(unquote(parts.username))
        if parts.password is not None:
            passwords.add(unquote(parts.password))
        hosts.append((host, port or DEFAULT_SENTINEL_PORT))
    if not hosts:
        raise ValueError("a sentinel URL needs at least one sentinel://host:port")
    for what, values in (("database", dbs), ("user name", users), ("password", passwords)):
        if len(values) > 1:
            raise ValueError(f"the sentinel addresses give different {what}s in {shown}")
    return SentinelURL(tuple(hosts), next(iter(users), None) or None,
                       next(iter(passwords), None) or None, next(iter(dbs), 0))
