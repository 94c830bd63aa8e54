"""Outgoing-URL guard: refuse URLs that would make the worker reach inside its own network.

Any URL mjflow fetches or posts to on someone else's say-so (image URLs from the upstream,
consumer webhook URLs) goes through :func:`check_url`, and HTTP requests to such URLs go
through :func:`guarded_request` / :func:`guarded_get`, which follow redirects by hand and
check every hop.

The policy:

* scheme ``http`` or ``https`` only (no ``file:``, ``ftp:``, ``gopher:``, ``data:``...);
* a host is required; with a non-empty ``allowed_hosts`` it must be listed: an entry
  ``example.com`` matches that host exactly, ``.example.com`` matches it and any subdomain;
  an entry with a port (``example.com:8443``, ``[::1]:9000``) matches that port only;
* every address the host resolves to must be public. Private (RFC 1918, ULA), loopback,
  link-local, CGNAT ``100.64.0.0/10``, multicast, reserved and unspecified addresses are
  refused unless ``allow_private`` (local runs and tests, ``MJFLOW_ALLOW_PRIVATE_URLS``);
* cloud metadata endpoints (``169.254.169.254``, ``fd00:ec2::254``, ...) are refused
  **always**, even with ``allow_private``: no local setup needs them, and they hand out
  credentials.

After the response headers arrive, the guard also checks the address the connection
actually reached, which closes most of the DNS-rebinding window between the check and
the connect (the request itself has been sent by then; for GETs that is harmless).

Errors: :class:`~worker.errors.UnsafeURL` (permanent) for refusals;
:class:`~worker.storage.errors.HostUnresolvable` (retryable) when DNS fails. Network
errors from ``requests`` propagate unchanged: each caller maps them to its own error.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from worker.errors import UnsafeURL
from worker.storage.errors import HostUnresolvable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_MAX_REDIRECTS = 5

#: Refused even with ``allow_private``: instance metadata services of the major clouds.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
CGNAT_NETWORK = ipaddress.ip_network("100.64.0.0/10")
#: Headers not forwarded when a redirect leaves the original host.
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


def check_url(url: str, *, allowed_hosts: Iterable[str] = (), allow_private: bool = False) -> None:
    """Raise :class:`UnsafeURL` unless ``url`` is safe to fetch under the policy above."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL(
            f"refused URL {redact_url(url)}: scheme {scheme or '(none)'!r} is not http/https"
        )
    try:
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:  # a port that is not a number or out of range
        raise UnsafeURL(f"refused URL {redact_url(url)}: {exc}") from None
    if not host:
        raise UnsafeURL(f"refused URL {redact_url(url)}: no host")
    allowed = [h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()]
    if allowed and not host_allowed(host, allowed, port):
        raise UnsafeURL(f"refused URL {redact_url(url)}: host {host!r} is not in the allowed hosts")
    for address in resolve(host, port):
        reason = address_refusal(address, allow_private=allow_private)
        if reason:
            raise UnsafeURL(f"refused URL {redact_url(url)}: {host} resolves to {reason}")


def host_allowed(host: str, allowed_hosts: Iterable[str], port: int | None = None) -> bool:
    """Does ``host`` (on ``port``) match an entry (exact, or ``.suffix`` for the domain and
    its subdomains; an entry's ``:port``, when it has one, must equal ``port``)?"""
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        entry = entry.lower().rstrip(".")
        name, sep, entry_port = entry.rpartition(":")
        if sep and entry_port.isdigit() and (name.startswith("[") or ":" not in name):
            if port is None or int(entry_port) != port:
                continue
            entry = name.strip("[]")
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (IP literals are returned as they are)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostUnresolvable(f"cannot resolve host {host!r}: {exc}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HostUnresolvable(f"cannot resolve host {host!r}: no addresses")
    return addresses


def address_refusal(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why ``address`` may not be reached, or ``None`` when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return f"{address}, a cloud metadata address"
    if address.is_multicast:
        return f"{address}, a multicast address"
    if allow_private:
        return None
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("carrier-grade NAT", address in CGNAT_NETWORK),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-global", not address.is_global),
    )
    for label, hit in checks:
        if hit:
            return f"{address}, a {label} address"
    return None


def guarded_request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    allowed_hosts: Iterable[str] = (),
    allow_private: bool = False,
    timeout_s: float | tuple[float, float],
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    headers: Mapping[str, str] | None = None,
    stream: bool = True,
    **kwargs: Any,
) -> requests.Response:
    """Send a request, following at most ``max_redirects`` redirects, each hop checked.

    ``timeout_s`` is the per-socket-operation timeout given to ``requests`` (connect,
    read); a total deadline is the caller's business. Extra ``kwargs`` (``data``,
    ``json``) go to ``session.request``. 301/302/303 turn a non-GET into a body-less
    GET, as browsers do; 307/308 keep method and body. Credentials headers are dropped
    when a redirect changes host. The caller closes the returned response.
    """
    allowed = tuple(allowed_hosts)
    hop_headers = dict(headers or {})
    for _hop in range(max_redirects + 1):
        check_url(url, allowed_hosts=allowed, allow_private=allow_private)
        response = session.request(
            method,
            url,
            headers=hop_headers,
            timeout=timeout_s,
            allow_redirects=False,
            stream=stream,
            **kwargs,
        )
        try:
            if not _proxied(session, url):  # through a proxy the peer is the proxy
                check_peer(response, allow_private=allow_private)
        except UnsafeURL:
            response.close()
            raise
        location = response.headers.get("Location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response
        response.close()
        next_url = urljoin(url, location)
        if urlsplit(next_url).hostname != urlsplit(url).hostname:
            hop_headers = {
                k: v for k, v in hop_headers.items() if k.lower() not in CREDENTIAL_HEADERS
            }
        if response.status_code in (301, 302, 303) and method.upper() not in ("GET", "HEAD"):
            method = "GET"
            kwargs.pop("data", None)
            kwargs.pop("json", None)
        url = next_url
    raise UnsafeURL(f"refused URL {redact_url(url)}: more than {max_redirects} redirects")


def guarded_get(
    session: requests.Session,
    url: str,
    *,
    allowed_hosts: Iterable[str] = (),
    allow_private: bool = False,
    timeout_s: float | tuple[float, float],
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """A streaming GET through :func:`guarded_request`; close the response when done."""
    return guarded_request(
        session,
        "GET",
        url,
        allowed_hosts=allowed_hosts,
        allow_private=allow_private,
        timeout_s=timeout_s,
        max_redirects=max_redirects,
        headers=headers,
    )


def check_peer(response: requests.Response, *, allow_private: bool = False) -> None:
    """Refuse a response whose connection reached a forbidden address (DNS rebinding)."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None or getattr(connection, "proxy", None):  # via a proxy: the proxy decides
        return
    try:
        peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%", 1)[0])
    except (OSError, ValueError):
        return
    reason = address_refusal(peer, allow_private=allow_private)
    if reason:
        raise UnsafeURL(f"refused URL {redact_url(response.url)}: connected to {reason}")


def _proxied(session: requests.Session, url: str) -> bool:
    """Would ``session`` send a request for ``url`` through a proxy?"""
    scheme = urlsplit(url).scheme.lower()
    proxies = dict(session.proxies)
    if session.trust_env:
        proxies = {**requests.utils.get_environ_proxies(url), **proxies}
    return bool(proxies.get(scheme) or proxies.get("all"))


def redact_url(url: str, limit: int = 200) -> str:
    """The URL for a message: no query string (it may hold signatures), bounded length."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never echo credentials
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url.split("?", 1)[0]
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
