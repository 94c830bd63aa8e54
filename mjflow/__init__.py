"""mjflow for callers and consumers: a typed client for the ``/v1`` API and a verifier for
the signed events (``pip install mjflow``; the service itself is ``mjflow[server]``).

::

    import mjflow

    client = mjflow.Client("http://127.0.0.1:8000", api_key="...")
    job = client.submit({"prompt": "a red fox in snow", "then": ["U1"]},
                        idempotency_key="order-1234")
    job = client.wait(job.id, timeout=600)

    event = mjflow.verify_event(body, headers, "whsec_...")   # in your webhook handler

Needs only ``requests`` and ``standardwebhooks``; it imports nothing of the service.
``mjflow.flask`` (needs Flask) has a ready blueprint for receiving events.
"""
from __future__ import annotations

from mjflow import errors
from mjflow.client import Client, new_idempotency_key
from mjflow.errors import (
    AuthError,
    Conflict,
    EventVerificationError,
    InvalidSecret,
    InvalidSpec,
    MjflowAPIError,
    MjflowError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TransportError,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)
from mjflow.events import verify_event
from mjflow.images import download
from mjflow.models import Batch, Event, Image, Job, Step

__version__ = "0.1.0"
__all__ = [
    "AuthError", "Batch", "Client", "Conflict", "Event", "EventVerificationError", "Image",
    "InvalidSecret", "InvalidSpec", "Job", "MjflowAPIError", "MjflowError", "NotFound",
    "PayloadTooLarge", "RateLimited", "ServerError", "Step", "TransportError", "Unavailable",
    "UnsupportedMediaType", "WaitTimeout", "download", "errors", "new_idempotency_key",
    "verify_event",
]
