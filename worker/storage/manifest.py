"""The job manifest: one JSON document per job, stored next to its images.

It is what a person (or a script, the morning after an overnight batch) reads to know
what a job asked for and what it produced: the spec (prompt included), every step with
its upstream task id, status, timings and failure reason, and every image with its key,
size, dimensions and SHA-256. :func:`build_manifest` shapes it from the job and step views
the API shows (``GET /v1/jobs/{id}``); :func:`worker.storage.store.write_manifest` stores
it at ``{job_id}/manifest.json``.

Shape (``manifestVersion`` 1; fields may be added, these keep their names)::

    {"manifestVersion": 1, "id", "status", "batch", "metadata", "spec", "createdAt",
     "finishedAt",
     "steps": [{"id", "parent", "label", "action", "status", "progress", "taskId",
                "failReason", "submittedAt", "finishedAt", "seed", "uploads", "video",
                "images": [{"key", "bucket", "uri", "path", "url", "sha256", "bytes",
                            "width", "height", "part", "contentType", "poster"}]}]}

``key`` is the object's real key (for S3 in its bucket, the storage prefix included),
``bucket`` its bucket (S3), ``path`` its file (file storage), ``uri`` ``s3://bucket/key`` or
``file:///path``. ``seed``, ``uploads`` and ``video`` are present only on the steps that
have them (an image seed asked with ``seed: true``, the hosted URLs of an UPLOAD, a video
step's clips, whose images are ``video/mp4`` with the key of their ``poster``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MANIFEST_VERSION = 1
STEP_FIELDS = (
    "id",
    "parent",
    "label",
    "action",
    "status",
    "progress",
    "taskId",
    "failReason",
    "submittedAt",
    "finishedAt",
)
IMAGE_FIELDS = ("key", "bucket", "uri", "path", "url", "sha256", "bytes", "width", "height")


def build_manifest(job: Mapping[str, Any], steps: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The manifest of ``job`` with ``steps`` (API-shaped dicts; missing fields become null)."""
    return {
        "manifestVersion": MANIFEST_VERSION,
        "id": job.get("id"),
        "status": job.get("status"),
        "batch": job.get("batch"),
        "metadata": dict(job.get("metadata") or {}),
        "spec": dict(job.get("spec") or {}),
        "createdAt": job.get("createdAt"),
        "finishedAt": job.get("finishedAt"),
        "steps": [_step(step) for step in steps],
    }


OPTIONAL_STEP_FIELDS = ("seed", "seedError", "uploads", "video")


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    shaped = {name: step.get(name) for name in STEP_FIELDS}
    shaped.update({name: step[name] for name in OPTIONAL_STEP_FIELDS if name in step})
    shaped["images"] = [_image(image) for image in step.get("images") or []]
    return shaped


def _image(image: Mapping[str, Any]) -> dict[str, Any]:
    shaped = {name: image.get(name) for name in IMAGE_FIELDS}
    shaped["part"] = image.get("part") or ""
    for name in ("contentType", "poster"):
        if image.get(name):
            shaped[name] = image[name]
    return shaped
