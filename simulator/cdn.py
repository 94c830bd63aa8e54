"""Discord-style signed CDN URLs for the simulator's images.

``{base}/cdn/attachments/{key}/{name}?ex=<hex expiry s>&is=<hex issued s>&hm=<hex hmac>&``
where ``key`` is a task id (or ``u<upload id>``). ``hm`` is an HMAC-SHA256 over
``key/name:ex:is`` with the simulator's secret. A URL past ``ex`` or with a bad
signature is refused (404 "This content is no longer available.", as Discord
answers). Each render of a task re-signs, so fetching the task again yields a
fresh URL — the refresh path a worker needs after expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

DEFAULT_URL_TTL_S = 24 * 3600.0  # divided by the simulator speed
MIN_URL_TTL_S = 1  # ``ex`` is whole seconds, as on Discord
CDN_PREFIX = "/cdn/attachments"
EXPIRED_BODY = "This content is no longer available."


@dataclass(frozen=True)
class SignedParts:
    """The pieces of a signed CDN URL."""

    key: str
    name: str
    ex: str
    is_: str
    hm: str


class UrlSigner:
    """Signs and verifies CDN URLs; ``ttl_s`` may be changed at runtime."""

    def __init__(self, ttl_s: float, secret: bytes | None = None) -> None:
        self.ttl_s = ttl_s
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, key: str, name: str, ex: str, is_: str) -> str:
        msg = f"{key}/{name}:{ex}:{is_}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, base: str, key: str, name: str, now_ms: int) -> str:
        """Absolute URL for ``key/name`` valid for ``ttl_s`` from ``now_ms``."""
        issued_s = now_ms // 1000
        expiry_s = issued_s + max(MIN_URL_TTL_S, math.ceil(self.ttl_s))
        ex, is_ = f"{expiry_s:x}", f"{issued_s:x}"
        hm = self._mac(key, name, ex, is_)
        return f"{base.rstrip('/')}{CDN_PREFIX}/{key}/{name}?ex={ex}&is={is_}&hm={hm}&"

    def verify(self, key: str, name: str, ex: str, is_: str, hm: str, now_ms: int) -> bool:
        """True if the signature matches and ``ex`` is not past."""
        if not (ex and is_ and hm):
            return False
        if not hmac.compare_digest(self._mac(key, name, ex, is_), hm):
            return False
        try:
            return int(ex, 16) * 1000 > now_ms
        except ValueError:
            return False


def split_url(url: str) -> SignedParts | None:
    """Parse a URL produced by :meth:`UrlSigner.sign` (any host), else ``None``."""
    parts = urlsplit(url)
    if not parts.path.startswith(CDN_PREFIX + "/"):
        return None
    rest = parts.path[len(CDN_PREFIX) + 1 :].split("/")
    if len(rest) != 2:
        return None
    q = parse_qs(parts.query)
    return SignedParts(
        rest[0], rest[1], q.get("ex", [""])[0], q.get("is", [""])[0], q.get("hm", [""])[0]
    )
