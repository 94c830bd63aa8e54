"""The dashboard: server-rendered pages over the same plain functions as ``/v1``.

    /                    batches (and recent interactive jobs): progress, counts by status
    /batches/<id>        a batch's jobs as thumbnails, filter by status, retry failed ones
                         (``/batches/interactive``: the jobs sent one by one)
    /jobs/<id>           step tree, timeline, thumbnails that open full size, task ids,
                         delivery log
    /upstream            dispatch window: slots in use, size, paused (resume), recent answers
    /media/<key>         a stored image (``?thumb=1``: its thumbnail): a redirect to the
                         sink's URL (presigned for S3), or the file for the file sink
    /login, /logout      the API key as an HttpOnly ``mjflow_key`` cookie

One blueprint, one module per concern:

* :mod:`.common`    the blueprint, rendering, error pages, template filters, notices
* :mod:`.session`   sign-in, the auth gate, CSRF, security headers
* :mod:`.batch_pages` the index and batch pages, batch retry
* :mod:`.job_pages` the job page, job retry and cancel
* :mod:`.upstream_page` the dispatch window page, resume
* :mod:`.media`     ``/media``: where a stored image is, never its bytes through the app
  (except files of the file sink)

Job and batch states come from :mod:`worker.jobs.views` (the rules ``/v1`` uses), Redis
reads from :class:`worker.jobs.store.JobStore`: no S3 read and no image decoding happens
inside a request (thumbnails are made when an image is stored).

Wire it with ``from webhook import dashboard; dashboard.init_app(app)``.
"""
from __future__ import annotations

from flask import Flask

from webhook.dashboard import batch_pages, job_pages, media, session, upstream_page
from webhook.dashboard.common import bp

MODULES = (batch_pages, job_pages, media, session, upstream_page)   # each registers routes


def init_app(app: Flask) -> None:
    """Register the dashboard (safe to call twice)."""
    if "dashboard" not in app.blueprints:
        app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
