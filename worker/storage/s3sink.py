"""The S3 sink: images and manifests in a bucket, through boto3.

Any S3-compatible store works: the endpoint comes from the standard ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3`` variables and credentials from the normal AWS chain. The client
only sends checksums an operation requires (``request_checksum_calculation=
"when_required"``), since boto3 ≥ 1.36's default CRC headers break several S3-compatible
stores, and retries in botocore's ``standard`` mode.

Uploads stream from the seekable temporary file with ``upload_fileobj``. Objects below
``multipart_threshold_bytes`` (default 128 MiB, above ``MJFLOW_MAX_IMAGE_BYTES``) go in one
``PutObject``, which s3transfer streams from the file without buffering it, and which
carries ``ChecksumSHA256`` = the SHA-256 computed while downloading, so S3 itself rejects a
corrupted body. (A multipart upload would buffer whole parts in memory and S3 supports
SHA-256 only as a composite of part checksums; above the threshold the checksum header is
left out and the SHA-256 stays in the metadata.)

User metadata (``x-amz-meta-*``) must be ASCII: values are percent-encoded (UTF-8,
RFC 3986) except printable ASCII other than ``%``, so ``a lighthouse`` stays readable and
``灯台`` is stored as ``%E7%81%AF%E5%8F%B0``; :meth:`S3Sink.head` decodes them. S3 limits
user metadata to 2 KB in total.

Errors: 5xx, throttling, timeouts and connection failures → :class:`StorageUnavailable`
(retryable); access denied, missing bucket, bad or missing credentials and other 4xx →
:class:`StorageRejected` (permanent) with a message that says what to check.
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote, unquote

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from worker.errors import MjflowError, StorageUnavailable
from worker.storage.errors import StorageRejected
from worker.storage.sink import put_json

MULTIPART_THRESHOLD_BYTES = 128 * 1024 * 1024
MULTIPART_CHUNK_BYTES = 8 * 1024 * 1024
MAX_ATTEMPTS = 5
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
METADATA_MAX_BYTES = 2048
_METADATA_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestTimeout",
        "RequestLimitExceeded",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "ConditionalRequestConflict",
        "RequestTimeTooSkewed",
    }
)
_HINTS = {
    "AccessDenied": "check the credentials and the bucket policy",
    "AllAccessDisabled": "check the credentials and the bucket policy",
    "NoSuchBucket": "create the bucket or fix MJFLOW_STORAGE_URL",
    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY",
    "InvalidBucketName": "fix MJFLOW_STORAGE_URL",
    "PermanentRedirect": "the bucket is in another region: set AWS_DEFAULT_REGION",
}


def make_s3_client(
    *,
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    endpoint_url: str | None = None,
) -> Any:
    """A boto3 S3 client configured for S3-compatible stores (own session: thread-safe);
    ``endpoint_url`` None means the standard ``AWS_ENDPOINT_URL*`` variables or AWS."""
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": max_attempts},
        signature_version="s3v4",
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return boto3.session.Session().client("s3", config=config, endpoint_url=endpoint_url)


def encode_metadata_value(value: str) -> str:
    """Percent-encode what S3 metadata cannot carry (non-ASCII, controls, ``%``, edge spaces)."""
    encoded = quote(value, safe=_METADATA_SAFE)
    core = encoded.strip(" ")
    if core == encoded:
        return encoded
    lead = len(encoded) - len(encoded.lstrip(" "))
    trail = len(encoded) - len(encoded.rstrip(" "))
    if not core:
        return "%20" * len(encoded)
    return "%20" * lead + core + "%20" * trail


def decode_metadata(raw: Mapping[str, str]) -> dict[str, str]:
    return {key: unquote(value) for key, value in raw.items()}


class S3Sink:
    """Objects under ``s3://{bucket}/{prefix}``; keys given to its methods are relative."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        *,
        send_checksum: bool = True,
        multipart_threshold_bytes: int = MULTIPART_THRESHOLD_BYTES,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else make_s3_client()
        self.send_checksum = send_checksum
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold_bytes,
            multipart_chunksize=MULTIPART_CHUNK_BYTES,
            max_concurrency=4,
        )

    def put(
        self,
        key: str,
        fileobj: IO[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str],
        sha256_hex: str,
    ) -> None:
        """Store ``fileobj`` (read from its start) at ``key``; a no-op if already stored."""
        try:
            existing = self.head(key)
        except StorageRejected:  # e.g. a write-only policy: HEAD is denied, PUT is not
            existing = None
        if existing is not None and existing.get("sha256") == sha256_hex:
            return
        encoded = {k.lower(): encode_metadata_value(str(v)) for k, v in metadata.items()}
        encoded["sha256"] = sha256_hex
        total = sum(len(k) + len(v) for k, v in encoded.items())
        if total > METADATA_MAX_BYTES:
            raise StorageRejected(f"S3 metadata for {key!r} is {total} bytes; S3 allows 2 KB")
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": encoded}
        fileobj.seek(0, io.SEEK_END)
        size_bytes = fileobj.tell()
        fileobj.seek(0)
        if self.send_checksum and size_bytes < self.transfer_config.multipart_threshold:
            # Both: the algorithm header tells the store (and botocore) which checksum this is.
            extra["ChecksumAlgorithm"] = "SHA256"
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")
        with self._translating(f"upload of {self.location(key)}"):
            self.client.upload_fileobj(
                _KeepOpen(fileobj),
                self.bucket,
                self._full(key),
                ExtraArgs=extra,
                Config=self.transfer_config,
            )

    def put_json(self, key: str, obj: Any) -> None:
        put_json(self, key, obj)

    def head(self, key: str) -> dict[str, Any] | None:
        """``{"size", "contentType", "metadata", "sha256"}`` of the object, or ``None``."""
        try:
            with self._translating(f"HEAD of {self.location(key)}"):
                answer = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except StorageRejected as exc:
            if _error_code(exc.__cause__) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        metadata = decode_metadata(answer.get("Metadata", {}))
        return {
            "size": answer["ContentLength"],
            "contentType": answer.get("ContentType", ""),
            "metadata": metadata,
            "sha256": metadata.get("sha256"),
        }

    def get_bytes(self, key: str) -> bytes:
        with self._translating(f"GET of {self.location(key)}"):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return answer["Body"].read()

    def url(self, key: str, ttl_s: int) -> str:
        """A presigned GET URL valid for ``ttl_s`` seconds."""
        with self._translating(f"presigning {self.location(key)}"):
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._full(key)},
                ExpiresIn=int(ttl_s),
            )

    def list(self, prefix: str = "") -> list[str]:
        """Relative keys starting with ``prefix``, sorted."""
        keys: list[str] = []
        with self._translating(f"listing {self.location(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._full(prefix) if prefix else self._base()
            )
            for page in pages:
                keys.extend(obj["Key"][len(self._base()) :] for obj in page.get("Contents", []))
        return sorted(keys)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def where(self, key: str) -> dict[str, Any]:
        full = self._full(key)
        return {"sink": "s3", "key": full, "bucket": self.bucket, "path": None,
                "uri": f"s3://{self.bucket}/{full}",
                "endpoint": getattr(self.client.meta, "endpoint_url", None)}

    def describe(self) -> str:
        endpoint = getattr(self.client.meta, "endpoint_url", "")
        return f"s3://{self.bucket}/{self.prefix} (endpoint {endpoint})"

    def _base(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _full(self, key: str) -> str:
        return self._base() + key.lstrip("/")

    @contextlib.contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise translate_s3_error(exc, action) from exc


class _KeepOpen(io.RawIOBase):
    """A read-only view of a seekable file that s3transfer may close without closing it
    (s3transfer closes the body after ``PutObject``; the caller still needs the file)."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        super().__init__()
        self._fileobj = fileobj

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._fileobj.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self._fileobj.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fileobj.seek(offset, whence)

    def tell(self) -> int:
        return self._fileobj.tell()


def translate_s3_error(exc: BaseException, action: str) -> MjflowError:
    """Map a boto error to :class:`StorageUnavailable` (retryable) or :class:`StorageRejected`."""
    if isinstance(exc, S3UploadFailedError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = exc.response.get("Error", {}).get("Message", "")
        if status >= 500 or code in _RETRYABLE_CODES:
            return StorageUnavailable(
                f"S3 {action} failed: {code} (HTTP {status}) {message}".strip()
            )
        hint = _HINTS.get(code)
        return StorageRejected(
            f"S3 refused {action}: {code} (HTTP {status}) {message}".strip()
            + (f"; {hint}" if hint else "")
        )
    if isinstance(exc, (HTTPClientError, BotoConnectionError)):
        return StorageUnavailable(f"S3 unreachable during {action}: {exc}")
    return StorageRejected(f"S3 {action} failed: {exc}")


def _error_code(exc: BaseException | None) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
