"""Getting an event's (or a job's) images.

Every stored image carries where it is: ``bucket`` and its real ``key`` (the storage prefix
included: with ``MJFLOW_STORAGE_URL=s3://bucket/prefix`` the key starts ``prefix/``) and a
``uri`` (``s3://bucket/key``; ``path`` and a ``file://`` uri for file storage). The API and
the events also carry a presigned ``url`` (valid ``MJFLOW_PRESIGN_TTL_S``, 1 h by
default). Two ways:

- :func:`download` reads the presigned URL (no AWS credentials needed). If it has expired,
  ``Client.get(job_id).images`` gives fresh URLs.
- With your own S3 access, read ``bucket`` + ``key`` with boto3 (the SDK does not depend
  on it): ``boto3.client("s3").get_object(Bucket=image.bucket, Key=image.key)["Body"].read()``.
"""
from __future__ import annotations

import hashlib

import requests

from mjflow.errors import MjflowError, TransportError
from mjflow.models import Image

__all__ = ["download"]
MAX_BYTES = 256 * 1024 * 1024


def download(image: Image, *, session: requests.Session | None = None,
             timeout: float = 60.0, max_bytes: int = MAX_BYTES) -> bytes:
    """The image's bytes from its presigned URL, checked against its SHA-256."""
    if not image.url or not image.url.startswith(("http://", "https://")):
        raise MjflowError(f"image {image.key!r} has no http(s) URL (file storage, or a list "
                          "view): use Client.get(job_id).images or read it from storage")
    http = session or requests
    try:
        with http.get(image.url, timeout=timeout, stream=True) as resp:
            if resp.status_code != 200:
                raise MjflowError(f"image {image.key!r}: HTTP {resp.status_code} "
                                  "(an expired URL answers 403: get the job again)")
            data = bytearray()
            for chunk in resp.iter_content(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    raise MjflowError(f"image {image.key!r} is larger than {max_bytes} bytes")
    except requests.RequestException as exc:
        raise TransportError(f"image {image.key!r}: {type(exc).__name__}") from None
    if image.sha256 and hashlib.sha256(data).hexdigest() != image.sha256:
        raise MjflowError(f"image {image.key!r}: SHA-256 does not match")
    return bytes(data)
