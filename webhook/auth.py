"""API keys for ``/v1`` and the dashboard: ``Authorization: Bearer <key>``, or the
dashboard's session cookie (:mod:`webhook.sessions`) where the caller allows it.

Keys come from ``MJFLOW_API_KEYS``. With none set, only a local run
(``MJFLOW_LOCAL_RUN=true``, as the demo sets) is open; otherwise every request is refused.
``/v1`` takes the cookie for reads only (the dashboard links to a CSV report); anything
that changes state there needs the Bearer key, so a page on another site cannot make a
signed-in browser cancel jobs or resume dispatch. The dashboard's own forms take the
cookie plus its CSRF token and Origin check.
"""
from __future__ import annotations

import hmac

from flask import current_app, request

from webhook import sessions


def bearer_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def key_ok(api_keys: list[str], candidate: str) -> bool:
    """Is ``candidate`` one of ``api_keys``? Constant time over every key."""
    ok = False
    for key in api_keys:
        ok |= hmac.compare_digest(key.encode(), candidate.encode())
    return ok


def authorized(*, cookie: bool = True) -> bool:
    """Bearer key, else (when ``cookie``) a live dashboard session."""
    engine = current_app.extensions["mjflow"]
    settings = engine.settings
    if not settings.api_keys:
        return settings.local_run
    key = bearer_key()
    if key is not None:
        return bool(key) and key_ok(settings.api_keys, key)
    if not cookie:
        return False
    return sessions.valid(engine, request.cookies.get(sessions.SESSION_COOKIE), settings.api_keys)
