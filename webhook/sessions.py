"""Dashboard sign-in sessions: the cookie holds a random session id, never the API key.

Signing in with a valid key creates a session in Redis (``Keys.session``: the SHA-256 of
the session id, so a Redis dump holds no usable cookie) that expires after
``SESSION_TTL_S``; its value is a fingerprint of the key used, so removing that key from
``MJFLOW_API_KEYS`` ends its sessions too. Signing out deletes it. Ids are compared by
their digest in Redis (no timing signal from Python); the fingerprint check is constant
time.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

SESSION_COOKIE = "mjflow_session"
SESSION_TTL_S = 7 * 24 * 3600


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def start(engine: Any, api_key: str) -> str:
    """A new session for someone who presented ``api_key``; returns the cookie value."""
    session_id = secrets.token_urlsafe(32)
    engine.r.set(engine.keys.session(_digest(session_id)), _digest(api_key), ex=SESSION_TTL_S)
    return session_id


def valid(engine: Any, session_id: str | None, api_keys: Iterable[str]) -> bool:
    """Is ``session_id`` a live session whose key is still configured?"""
    if not session_id or len(session_id) > 200:
        return False
    fingerprint = engine.r.get(engine.keys.session(_digest(session_id)))
    if not fingerprint:
        return False
    ok = False
    for key in api_keys:
        ok |= hmac.compare_digest(_digest(key), fingerprint)
    return ok


def end(engine: Any, session_id: str | None) -> None:
    """Revoke ``session_id`` (nothing happens for an unknown one)."""
    if session_id and len(session_id) <= 200:
        engine.r.delete(engine.keys.session(_digest(session_id)))
