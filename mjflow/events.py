"""``verify_event``: check a webhook from mjflow (Standard Webhooks) and type it.

mjflow signs each event with ``MJFLOW_WEBHOOK_SECRET`` (``whsec_...``) and sends the
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers. Verify the exact
body bytes you received, before parsing them yourself::

    event = mjflow.verify_event(request.get_data(), request.headers, secret)

During a secret rotation pass both secrets (``[new, old]``): the first that matches wins.
"""
from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from mjflow.errors import EventVerificationError, InvalidSecret
from mjflow.models import Event

__all__ = ["verify_event"]


def _signer(secret: str | bytes) -> Webhook:
    try:
        return Webhook(secret)
    except (binascii.Error, EmptyWebhookSecretError, RuntimeError, TypeError) as exc:
        raise InvalidSecret(f"not a Standard Webhooks secret (whsec_<base64>): "
                            f"{type(exc).__name__}") from None


def verify_event(body: bytes | str, headers: Mapping[str, str],
                 secret: str | bytes | Sequence[str | bytes]) -> Event:
    """The verified, typed event; ``EventVerificationError`` if anything is wrong
    (missing headers, no matching signature, timestamp off by more than 5 minutes, a
    body that is not an mjflow event). ``secret`` may be a list (rotation)."""
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets:
        raise InvalidSecret("no secret given")
    signers = [_signer(s) for s in secrets]
    plain = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        raise EventVerificationError("body is not UTF-8") from None
    payload: Any = None
    last = "no matching signature"
    for signer in signers:
        try:
            payload = signer.verify(text, plain)
            break
        except WebhookVerificationError as exc:
            last = str(exc)
        except (ValueError, binascii.Error) as exc:   # malformed signature header or JSON
            last = f"malformed webhook: {type(exc).__name__}"
    else:
        raise EventVerificationError(last)
    try:
        return Event.from_dict(plain["webhook-id"], payload)
    except (KeyError, TypeError, AttributeError):
        raise EventVerificationError("signed, but not an mjflow event (type, data.jobId)") from None
