"""Exceptions raised by the upstream client, as subclasses of the tree in ``worker.errors``.

Submits never raise these: they return an ``Answer`` whose ``Outcome`` says what happened.
Queries (fetch, list, image, seed, cancel) raise:

    UpstreamUnavailable (retryable)
    └── UpstreamRetryLater      retries exhausted or the upstream asked to wait (retry_after_s)
    BadUpstreamAnswer (permanent)   an answer we cannot read (HTML, truncated JSON, wrong types)
    UpstreamAuthFailed (permanent)  401/403 or an "invalid token" body: fix the key, then restart
    UpstreamOutOfCredit (permanent) the account or reseller balance is exhausted
"""
from __future__ import annotations

from worker.errors import PermanentError, UpstreamUnavailable


class UpstreamRetryLater(UpstreamUnavailable):
    """A safe call still failed after its retries, or the upstream asked us to wait."""

    def __init__(self, message: str, *, retry_after_s: float | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.attempts = attempts


class UpstreamAuthFailed(PermanentError):
    """The upstream refused our key (HTTP 401/403, Cloudflare 1010, "invalid token")."""


class UpstreamOutOfCredit(PermanentError):
    """The upstream (or the reseller in front of it) says the balance is exhausted."""
