"""``create_app()``: one Flask app, one blueprint per module."""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from webhook import api, dashboard, health, hooks, metrics
from worker.enqueue import CeleryEnqueue
from worker.flow.engine import Engine, build_engine
from worker.logs import init_request_logging, setup_logging
from worker.settings import Settings, get_settings


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> Flask:
    settings = settings or get_settings()

    setup_logging(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_upload_bytes * 8, 64 * 1024 * 1024)
    if engine is None:
        engine = build_engine(settings, CeleryEnqueue())
    app.extensions["mjflow"] = engine
    hooks.init_app(app)
    api.init_app(app)
    health.init_app(app)
    metrics.init_app(app)
    dashboard.init_app(app)
    init_request_logging(app)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        return jsonify({"error": exc.name.lower().replace(" ", "_"),
                        "message": exc.description}), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:  # pragma: no cover - last resort
        app.logger.exception("unhandled error")
        return jsonify({"error": "internal_error", "message": "unexpected error; see logs"}), 500

    return app
