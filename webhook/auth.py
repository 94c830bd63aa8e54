"""API keys for ``/v1`` and the dashboard: ``Authorization: Bearer <key>``.

Keys come from ``MJFLOW_API_KEYS``. With none set, only a local run
(``MJFLOW_LOCAL_RUN=true``, as the demo sets) is open; otherwise every request is refused.
"""
from __future__ import annotations

import hmac

from flask import current_app, request


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get("mjflow_key") or None


def authorized() -> bool:
    settings = current_app.extensions["mjflow"].settings
    if not settings.api_keys:
        return settings.local_run
    key = presented_key()
    if not key:
        return False
    ok = False
    for candidate in settings.api_keys:
        ok |= hmac.compare_digest(candidate.encode(), key.encode())
    return ok
