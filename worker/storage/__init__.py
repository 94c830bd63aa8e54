"""Image storage: download finished images safely and keep them in S3 or on disk.

Modules, one concept each:

* :mod:`.ssrf`      the outgoing-URL guard (also used for outgoing webhooks)
* :mod:`.download`  bounded, hashed, verified image download into a temporary file
* :mod:`.naming`    object keys from ``MJFLOW_KEY_TEMPLATE``; the manifest key
* :mod:`.sinks`     the ``Sink`` protocol, the file sink, ``sink_from_url``
* :mod:`.s3sink`    the S3 sink (boto3), with its error mapping
* :mod:`.grid`      splitting a 2×2 grid into four images
* :mod:`.thumbs`    the small JPEG stored next to each image
* :mod:`.locate`    where a stored object is (from its record), its URL, whether it is there
* :mod:`.store`     ``store_step_images``: what the job engine calls on a step's success
* :mod:`.manifest`  the per-job manifest document
* :mod:`.errors`    storage's errors, in the tree of :mod:`worker.errors`
"""

from __future__ import annotations

from worker.storage.download import DownloadedImage, download_image
from worker.storage.errors import (
    DownloadUnavailable,
    HostUnresolvable,
    SourceGone,
    StorageRejected,
)
from worker.storage.files import FileSink
from worker.storage.grid import GridPart, split_grid
from worker.storage.manifest import build_manifest
from worker.storage.naming import image_key, manifest_key, sanitize_label, validate_template
from worker.storage.s3sink import S3Sink, make_s3_client
from worker.storage.sink import Sink
from worker.storage.sinks import sink_from_url
from worker.storage.ssrf import check_url, guarded_get, guarded_request
from worker.storage.store import StoredImage, StoreRequest, store_step_images, write_manifest

__all__ = [
    "DownloadUnavailable",
    "DownloadedImage",
    "FileSink",
    "GridPart",
    "HostUnresolvable",
    "S3Sink",
    "Sink",
    "SourceGone",
    "StorageRejected",
    "StoreRequest",
    "StoredImage",
    "build_manifest",
    "check_url",
    "download_image",
    "guarded_get",
    "guarded_request",
    "image_key",
    "make_s3_client",
    "manifest_key",
    "sanitize_label",
    "sink_from_url",
    "split_grid",
    "store_step_images",
    "validate_template",
    "write_manifest",
]
