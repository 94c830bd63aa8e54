"""``/healthz`` (the process is alive) and ``/readyz`` (Redis and the broker answer).

``/readyz`` also reports whether the callback receiver at ``MJFLOW_PUBLIC_URL`` answered
its last probe (``callbacks``), without failing on it: callbacks are an optimisation
(polling finishes every job without them), and the public URL usually reaches this very
app through the load balancer that asks ``/readyz``, so failing readiness on it would keep
the app out of rotation because it is out of rotation. An unreachable receiver makes the
status ``degraded`` (still 200) with a sentence saying what it costs.
"""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify

from worker.celery_app import get_app
from worker.flow import receiver

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    engine = current_app.extensions["mjflow"]
    checks: dict[str, str] = {}
    try:
        engine.r.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        with get_app().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body: dict = {"status": "ok" if ok else "unavailable", "checks": checks}
    callbacks = receiver.status(engine)
    if callbacks is not None:
        body["callbacks"] = callbacks
        if ok and callbacks["warning"]:
            body["status"] = "degraded"
    return jsonify(body), 200 if ok else 503


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
