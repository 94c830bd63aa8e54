"""Images on the dashboard: ``/media`` says where a stored image is, and pages show each
image as its thumbnail (or why it is gone).

``/media/<key>?job=<id>`` serves only images of that job (``key`` is the object's real key
from its record; ``thumb=1`` asks for its thumbnail). For S3 it redirects to a presigned
URL built from the image's own record, so no S3 read passes through the app; for the file
sink it sends the file. Pages list the S3 origins they show images from in their
``img-src`` policy (:func:`webhook.dashboard.session.allow_images_from`).
"""
from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from flask import Response, abort, redirect, request, send_file, url_for

from webhook.dashboard.common import bp, engine
from webhook.dashboard.session import allow_images_from
from worker.ids import valid_id

REDIRECT_CACHE_S = 300


def _media_url(job_id: str, rec: dict[str, Any], *, thumb: bool) -> str:
    args: dict[str, Any] = {"key": rec["key"], "job": job_id}
    if rec.get("sha256"):
        args["v"] = rec["sha256"][:16]
    if thumb:
        args["thumb"] = 1
    return url_for("dashboard.media", **args)


def decorate(views: list[dict[str, Any]]) -> None:
    """Give every step of ``views`` its ``media``: each image as the page shows it (thumbnail
    and full-size ``/media`` URLs, or ``available: False`` with the reason). Images not yet
    checked are checked together (cached HEADs; a stat for files)."""
    objects = engine().objects
    records = [(view, step, objects.record(img)) for view in views for step in view["steps"]
               for img in step["images"]]
    todo = [rec for _, _, rec in records if "available" not in rec]
    for rec, (ok, reason) in zip(todo, objects.check(todo)):
        rec["available"], rec["unavailableReason"] = ok, reason
    for view in views:
        for step in view["steps"]:
            step["media"] = []
    for view, step, rec in records:
        thumb = rec.get("thumbnail") or None
        entry = rec | {"label": step["label"], "full": _media_url(view["id"], rec, thumb=False),
                       "thumb": _media_url(view["id"], rec, thumb=bool(thumb)),
                       "thumbWidth": (thumb or rec).get("width"),
                       "thumbHeight": (thumb or rec).get("height"),
                       "poster_src": _media_url(view["id"], {"key": rec["poster"]}, thumb=False)
                       if rec.get("poster") else None}
        if rec["available"]:
            origin = objects.origin(thumb or rec)
            if origin:
                allow_images_from(origin)
        step["media"].append(entry)


def _record(job_id: str, key: str) -> dict[str, Any] | None:
    """The located image ``key`` of job ``job_id``, or None: only a job's images are served."""
    if not valid_id(job_id):
        return None
    e = engine()
    loaded = e.store.load(job_id)
    if loaded is None:
        return None
    _, steps = loaded
    for step in steps:
        for img in step.images:
            rec = e.objects.record(img)
            if rec.get("key") == key:
                return rec
    return None


@bp.get("/media/<path:key>")
def media(key: str):  # type: ignore[no-untyped-def]
    job_id = request.args.get("job") or key.split("/", 1)[0]
    rec = _record(job_id, key)
    if rec is None:
        abort(404, "no such image")
    target = rec.get("thumbnail") if request.args.get("thumb") and rec.get("thumbnail") else rec
    sha = target.get("sha256") or ""
    versioned = bool(sha) and request.args.get("v") == (rec.get("sha256") or "")[:16]
    if target.get("sink") == "s3":
        url = engine().objects.url(target)
        if not url:
            abort(404, f"no URL for {target.get('uri')}")
        resp = redirect(url, 302)
        ttl = engine().settings.presign_ttl_s
        resp.headers["Cache-Control"] = f"private, max-age={min(REDIRECT_CACHE_S, ttl // 2)}"
        return resp
    path = Path(target.get("path") or "")
    if not target.get("path") or not path.is_file():
        abort(404, f"stored in {target.get('path') or target.get('uri')} which no longer has it")
    ctype = (target.get("contentType") or mimetypes.guess_type(path.name)[0]
             or "application/octet-stream")
    safe = ctype.startswith(("image/", "video/mp4")) and ctype != "image/svg+xml"
    resp: Response = send_file(path, mimetype=ctype if safe else "application/octet-stream",
                               as_attachment=not safe, conditional=True,
                               etag=sha[:32] if sha else True)
    resp.headers["Cache-Control"] = ("private, max-age=86400, immutable" if versioned
                                     else "private, no-cache")
    return resp
