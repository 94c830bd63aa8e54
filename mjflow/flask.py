"""A Flask blueprint that receives mjflow's events (needs Flask; ``import mjflow`` does not).

::

    from flask import Flask
    from mjflow.flask import events_blueprint

    def on_event(event):            # an mjflow.Event, already verified
        if already_processed(event.id):
            return                  # retries and replays reuse the webhook-id
        save(event.job_id, event.status, event.images)

    app = Flask(__name__)
    app.register_blueprint(events_blueprint(os.environ["MJFLOW_WEBHOOK_SECRET"], on_event),
                           url_prefix="/hooks")          # POST /hooks/mjflow

Answers: 204 once ``on_event`` returned; 400 for a bad signature, timestamp or body (not
retried usefully: mjflow retries any non-2xx for ~3 days, so fix the secret); 500 if
``on_event`` raised, so mjflow sends the event again later.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, jsonify, request

from mjflow.errors import EventVerificationError
from mjflow.events import verify_event
from mjflow.models import Event

__all__ = ["events_blueprint"]
log = logging.getLogger("mjflow.flask")


def events_blueprint(secret: str | Sequence[str], on_event: Callable[[Event], Any], *,
                     rule: str = "/mjflow", name: str = "mjflow_events") -> Blueprint:
    """A blueprint with ``POST <rule>`` that verifies each event and calls ``on_event``."""
    bp = Blueprint(name, __name__)

    @bp.post(rule)
    def receive():  # type: ignore[no-untyped-def]
        try:
            event = verify_event(request.get_data(cache=False), request.headers, secret)
        except EventVerificationError as exc:
            return jsonify({"error": "invalid_event", "message": str(exc)}), 400
        try:
            on_event(event)
        except Exception:
            log.exception("mjflow event %s (%s) not processed", event.id, event.type)
            return jsonify({"error": "not_processed"}), 500
        return "", 204

    return bp
