"""``GET /metrics``: the Prometheus exposition, computed from Redis at scrape time.

The values come from :class:`worker.metrics.RedisCollector`, registered in a registry of
this app's own (not the process-global one), so every gunicorn worker answers with the
same complete numbers and nothing is kept per process (see ``worker/metrics.py``).

By default there is no authentication, as is usual for a scrape endpoint: the numbers
carry no secrets or ids, but they do reveal load and failure rates. Keep ``/metrics`` off
the public ingress (only ``/hooks/mj/...`` and ``/v1`` need to be reachable from outside)
or restrict it to the Prometheus network at the proxy; or set ``MJFLOW_METRICS_KEY``, and
every scrape must then send ``Authorization: Bearer <that key>`` (compared in constant
time; Prometheus: ``authorization: {credentials: ...}`` in the scrape config).
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client.exposition import choose_encoder

from worker.metrics import make_registry

bp = Blueprint("metrics", __name__)
EXTENSION = "mjflow.metrics"


def _key_ok(wanted: str) -> bool:
    header = request.headers.get("Authorization", "")
    sent = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return hmac.compare_digest(wanted.encode(), sent.encode())


@bp.get("/metrics")
def metrics():  # type: ignore[no-untyped-def]
    wanted = current_app.extensions["mjflow"].settings.metrics_key
    if wanted and not _key_ok(wanted):
        return Response("metrics need Authorization: Bearer <MJFLOW_METRICS_KEY>\n", 401,
                        mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = current_app.extensions[EXTENSION]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), headers={"Content-Type": content_type,
                                                "Cache-Control": "no-store"})


def init_app(app: Flask, engine=None) -> None:  # type: ignore[no-untyped-def]
    """Register ``/metrics`` for ``engine`` (default: the app's engine). Idempotent."""
    if EXTENSION in app.extensions:
        return
    engine = engine if engine is not None else app.extensions["mjflow"]
    app.extensions[EXTENSION] = make_registry(engine)
    app.register_blueprint(bp)
