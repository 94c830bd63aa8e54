"""Errors that only storage raises, placed in the one tree of :mod:`worker.errors`.

The retry policy follows from the base class, as everywhere in mjflow:

    RetryableError
    ├── StorageUnavailable      (worker.errors) S3 5xx, throttling, timeout, connection refused
    ├── SourceExpired           (worker.errors) image URL answered 403/404/410: refresh it first
    ├── DownloadUnavailable     image host unreachable, 5xx/429, timed out, body cut short
    └── HostUnresolvable        DNS could not resolve the host (now); try again later
    PermanentError
    ├── ImageRejected           (worker.errors) not an image, too large, unreadable
    │   └── SourceGone          the URL stays expired even after a refresh
    ├── UnsafeURL               (worker.errors) refused by the SSRF guard
    └── StorageRejected         the store refuses us (AccessDenied, NoSuchBucket, no credentials)
"""

from __future__ import annotations

from worker.errors import ImageRejected, PermanentError, RetryableError


class DownloadUnavailable(RetryableError):
    """The image host could not serve the image right now (5xx, 429, timeout, reset)."""


class HostUnresolvable(RetryableError):
    """The URL's host name did not resolve; DNS failures are often transient."""


class SourceGone(ImageRejected):
    """The image URL is expired and asking the upstream for a fresh one did not help."""


class StorageRejected(PermanentError):
    """The store refused the request for a reason retrying cannot fix (permissions, bucket)."""
