"""Connect to the address the SSRF guard checked, not to whatever DNS says a moment later.

The guard resolves a host once and checks every address; :func:`pinned_session` then
gives a ``requests`` session whose adapter (:class:`PinnedAdapter`) opens its connection
to that checked address while everything else stays the name's: the ``Host`` header, TLS
SNI (``server_hostname``) and the certificate's hostname check (``assert_hostname``). A
name that re-resolves to an internal address between the check and the connect (DNS
rebinding) therefore never reaches it: no second lookup happens.

The session carries no proxies (``trust_env`` off): a request through a proxy cannot be
pinned (the proxy resolves the name), so the guard sends those through the caller's own
session instead. A pinned session serves one host; a request for any other host raises
:class:`~worker.errors.UnsafeURL` before connecting.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from worker.errors import UnsafeURL
from worker.storage.addresses import IPAddress

DEFAULT_PORTS = {"http": 80, "https": 443}


class CheckedURL(NamedTuple):
    """What the guard approved: the URL's host and port and the address to connect to."""

    host: str
    port: int
    address: IPAddress


class PinnedAdapter(HTTPAdapter):
    """An adapter that connects to ``checked.address`` for requests to ``checked.host``."""

    def __init__(self, checked: CheckedURL, **kwargs: Any) -> None:
        self.checked = checked
        super().__init__(max_retries=0, pool_maxsize=1, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        host = (host_params.get("host") or "").strip("[]").rstrip(".").lower()
        port = host_params.get("port") or DEFAULT_PORTS.get(host_params.get("scheme") or "")
        if host != self.checked.host or port != self.checked.port:
            raise UnsafeURL(f"refused URL: {host!r} is not the host this connection was checked for")
        host_params["host"] = str(self.checked.address)
        if host_params.get("scheme") == "https":
            pool_kwargs["server_hostname"] = self.checked.host
            pool_kwargs["assert_hostname"] = self.checked.host
        return host_params, pool_kwargs

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        netloc = urlsplit(request.url or "").netloc.rsplit("@", 1)[-1]
        request.headers["Host"] = netloc


def pinned_session(base: requests.Session, checked: CheckedURL) -> requests.Session:
    """A session for one request to ``checked``: ``base``'s headers and TLS settings, no
    proxies, connections only to the checked address. Close it when the response is read
    (closing it right after ``request(..., stream=True)`` is fine: the open response keeps
    its connection until it is closed)."""
    session = requests.Session()
    session.trust_env = False
    session.headers.update(base.headers)
    session.verify = base.verify
    session.cert = base.cert
    adapter = PinnedAdapter(checked)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

