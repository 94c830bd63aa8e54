"""The callback URL's token: an HMAC, under ``MJFLOW_HOOK_SECRET``, of the attempt it was
given to (the step's upstream ``state``: its id, plus ``.r<n>`` once a finished job was
retried), checked in constant time against the current and the previous secret (rotation
without lost callbacks). A retried step's earlier hook URLs are therefore dead."""
from __future__ import annotations

import hashlib
import hmac

from worker.settings import Settings


def hook_token(secret: str, state: str) -> str:
    return hmac.new(secret.encode(), state.encode(), hashlib.sha256).hexdigest()[:40]


def verify_hook_token(settings: Settings, state: str, token: str) -> bool:
    """Constant-time check against the current and the previous secret (any text: a
    non-ASCII token from the URL is compared as bytes, never an error)."""
    ok = False
    sent = token.encode("utf-8", "surrogateescape")
    for secret in (settings.hook_secret, settings.hook_secret_previous):
        if secret:
            ok |= hmac.compare_digest(hook_token(secret, state).encode(), sent)
    return ok
