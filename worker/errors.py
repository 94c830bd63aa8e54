"""One exception tree for mjflow. Retry policy follows from the class.

    MjflowError
    ├── RetryableError      transient: try again later, nothing is lost
    │   ├── UpstreamUnavailable     upstream timeout / 5xx / connection lost on a safe call
    │   ├── StorageUnavailable      S3 5xx, timeout, connection reset
    │   └── SourceExpired           image URL refused (403/404/410): refresh it, then retry
    └── PermanentError      retrying cannot help; the failure reason is written for a person
        ├── BadUpstreamAnswer       the upstream answered something we cannot read
        ├── ImageRejected           not an image, too large, unreadable
        ├── UnsafeURL               refused by the SSRF guard
        └── InvalidSpec             a job spec that cannot be run
            └── SpecError           ... with every problem and its field path
    ├── Conflict            an Idempotency-Key reused with another body, or still in progress
    └── NotFound            no such job, batch or delivery
    ConfigError (SystemExit) settings that cannot start the process
"""
from __future__ import annotations

from typing import Any


class MjflowError(Exception):
    """Root of every mjflow error."""


class RetryableError(MjflowError):
    """Transient failure: the operation may be retried."""


class PermanentError(MjflowError):
    """Retrying cannot help."""


class UpstreamUnavailable(RetryableError):
    pass


class StorageUnavailable(RetryableError):
    pass


class SourceExpired(RetryableError):
    pass


class BadUpstreamAnswer(PermanentError):
    pass


class ImageRejected(PermanentError):
    pass


class UnsafeURL(PermanentError):
    pass


class InvalidSpec(PermanentError):
    pass


class SpecError(InvalidSpec):
    """An invalid spec; ``errors`` lists ``{"path", "message"}`` for every problem."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))


class Conflict(MjflowError):
    pass


class NotFound(MjflowError):
    pass


class ConfigError(SystemExit):
    """Raised at start when a setting is invalid; the message names the variable."""
