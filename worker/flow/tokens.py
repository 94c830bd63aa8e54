"""The callback URL's token: an HMAC of the step id under ``MJFLOW_HOOK_SECRET``, checked in
constant time against the current and the previous secret (rotation without lost callbacks)."""
from __future__ import annotations

import hashlib
import hmac

from worker.settings import Settings


def hook_token(secret: str, step_id: str) -> str:
    return hmac.new(secret.encode(), step_id.encode(), hashlib.sha256).hexdigest()[:40]


def verify_hook_token(settings: Settings, step_id: str, token: str) -> bool:
    """Constant-time check against the current and the previous secret (any text: a
    non-ASCII token from the URL is compared as bytes, never an error)."""
    ok = False
    sent = token.encode("utf-8", "surrogateescape")
    for secret in (settings.hook_secret, settings.hook_secret_previous):
        if secret:
            ok |= hmac.compare_digest(hook_token(secret, step_id).encode(), sent)
    return ok
