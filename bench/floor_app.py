"""The receiver benchmark's floor: a bare Flask app that reads the body and answers 204.

Served by gunicorn with the Procfile's flags (``bench.floor_app:create_app()``), it is
what any Python callback endpoint costs before doing anything useful.
"""
from __future__ import annotations

from flask import Flask, Response, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/hooks/mj/<step_id>/<token>")
    def receive(step_id: str, token: str) -> Response:
        request.get_data()
        return Response(status=204)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(status=204)

    return app
