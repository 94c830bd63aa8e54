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
"""
from __future__ import annotations


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
