"""Outgoing-URL guard: refuse URLs that would make the worker reach inside its own network.

Any URL mjflow fetches or posts to on someone else's say-so (image URLs from the upstream,
consumer webhook URLs) goes through :func:`check_url`, and HTTP requests to such URLs go
through :func:`guarded_request` / :func:`guarded_get`, which follow redirects by hand and
check every hop.

The policy:

* scheme ``http`` or ``https`` only (no ``file:``, ``ftp:``, ``gopher:``, ``data:``...);
* a host is required; with a non-empty ``allowed_hosts`` it must be listed, **with its
  port**: an entry ``example.com`` matches that host on the scheme's default port (443 for
  https, 80 for http), ``example.com:8443`` that port only, ``.example.com`` the domain and
  any subdomain (``.example.com:8443`` likewise);
* the host is resolved **once** (``resolver``, by default the system's ``getaddrinfo``)
  and every address it resolves to must pass :func:`~worker.storage.addresses.address_refusal`
  (no loopback, private, link-local... unless ``allow_private``; never cloud metadata);
* the request then connects to the first checked address (:mod:`worker.storage.pinning`),
  keeping the name for the ``Host`` header, TLS SNI and certificate checks, so a name
  that re-resolves elsewhere after the check (DNS rebinding) is never followed. Through a
  proxy (``HTTP(S)_PROXY``) nothing can be pinned: the proxy resolves and decides.

Refusals never say what a *name* resolves to (a consumer's delivery log must not map the
internal network): "refused by policy". For an IP literal the kind is given
("loopback"), since the URL already shows the address.

Errors: :class:`~worker.errors.UnsafeURL` (permanent) for refusals;
:class:`~worker.storage.errors.HostUnresolvable` (retryable) when DNS fails. Network
errors from ``requests`` propagate unchanged: each caller maps them to its own error.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from worker.errors import UnsafeURL
from worker.storage.addresses import (  # noqa: F401 - re-exported: the guard's vocabulary
    METADATA_ADDRESSES,
    IPAddress,
    IPNetwork,
    address_refusal,
    parse_networks,
)
from worker.storage.errors import HostUnresolvable
from worker.storage.pinning import DEFAULT_PORTS, CheckedURL, pinned_session

log = logging.getLogger("mjflow.ssrf")

ALLOWED_SCHEMES = ("http", "https")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_MAX_REDIRECTS = 5
#: Headers not forwarded when a redirect leaves the original host.
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
POLICY = "refused by policy"

#: ``resolver(host, port)`` -> every address of ``host`` (tests inject their own).
Resolver = Callable[[str, int], list[IPAddress]]


def check_url(
    url: str,
    *,
    allowed_hosts: Iterable[str] = (),
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
    resolver: Resolver | None = None,
) -> CheckedURL:
    """Raise :class:`UnsafeURL` unless ``url`` is safe under the policy above; return the
    host, port and the checked address to connect to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL(
            f"refused URL {redact_url(url)}: scheme {scheme or '(none)'!r} is not http/https"
        )
    try:
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:  # a port that is not a number or out of range
        raise UnsafeURL(f"refused URL {redact_url(url)}: {exc}") from None
    if not host:
        raise UnsafeURL(f"refused URL {redact_url(url)}: no host")
    if any(c.isspace() for c in parts.netloc):
        raise UnsafeURL(f"refused URL {redact_url(url)}: whitespace in the host")
    allowed = [h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()]
    if allowed and not host_allowed(host, allowed, port=port, default_port=DEFAULT_PORTS[scheme]):
        shown = host if parts.port is None else f"{host}:{port}"
        raise UnsafeURL(f"refused URL {redact_url(url)}: host {shown!r} is not in the allowed hosts")
    literal = _literal(host)
    addresses = [literal] if literal is not None else (resolver or resolve)(host, port)
    if not addresses:
        raise HostUnresolvable(f"cannot resolve host {host!r}: no addresses")
    networks = tuple(allowed_networks)
    for address in addresses:
        kind = address_refusal(address, allow_private=allow_private, allowed_networks=networks)
        if kind is None:
            continue
        if literal is not None:
            raise UnsafeURL(f"refused URL {redact_url(url)}: {POLICY} (a {kind} address)")
        log.info("refused %s: %s resolves to a %s address", redact_url(url), host, kind)
        raise UnsafeURL(f"refused URL {redact_url(url)}: {POLICY}")
    return CheckedURL(host.lower(), port, addresses[0])


def host_allowed(
    host: str,
    allowed_hosts: Iterable[str],
    *,
    port: int | None = None,
    default_port: int | None = None,
) -> bool:
    """Does ``host`` (on ``port``) match an entry? Entries: ``name``, ``.suffix`` (the
    domain and its subdomains), either with an optional ``:port``; an entry without a
    port stands for ``default_port``. With ``port=None`` ports are not compared."""
    host = host.lower().rstrip(".")
    for raw in allowed_hosts:
        entry, entry_port = split_host_port(raw.strip().lower())
        if port is not None and (entry_port if entry_port is not None else default_port) != port:
            continue
        entry = entry.rstrip(".")
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def split_host_port(entry: str) -> tuple[str, int | None]:
    """``"a.com:8080"`` -> ``("a.com", 8080)``, ``"[::1]:80"`` -> ``("::1", 80)``, else no port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


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


def guarded_request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    allowed_hosts: Iterable[str] = (),
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
    resolver: Resolver | None = None,
    timeout_s: float | tuple[float, float],
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    headers: Mapping[str, str] | None = None,
    stream: bool = True,
    **kwargs: Any,
) -> requests.Response:
    """Send a request, following at most ``max_redirects`` redirects, each hop checked
    and connected to the address that was checked.

    ``timeout_s`` is the per-socket-operation timeout given to ``requests`` (connect,
    read); a total deadline is the caller's business. Extra ``kwargs`` (``data``,
    ``json``) go to ``session.request``. 301/302/303 turn a non-GET into a body-less
    GET, as browsers do; 307/308 keep method and body. Credentials headers are dropped
    when a redirect changes host. The caller closes the returned response.
    """
    allowed = tuple(allowed_hosts)
    networks = tuple(allowed_networks)
    hop_headers = dict(headers or {})
    for _hop in range(max_redirects + 1):
        checked = check_url(url, allowed_hosts=allowed, allow_private=allow_private,
                            allowed_networks=networks, resolver=resolver)
        response = send_checked(session, checked, method, url, headers=hop_headers,
                                timeout=timeout_s, allow_redirects=False, stream=stream,
                                **kwargs)
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


def send_checked(
    session: requests.Session, checked: CheckedURL, method: str, url: str, **kwargs: Any
) -> requests.Response:
    """``session.request(method, url, **kwargs)`` connected to ``checked.address`` (through
    ``session`` itself when it would use a proxy: the proxy resolves)."""
    if _proxied(session, url):
        return session.request(method, url, **kwargs)
    pinned = pinned_session(session, checked)
    try:
        return pinned.request(method, url, **kwargs)
    finally:
        pinned.close()  # an open streamed response keeps its connection until it is closed


def guarded_get(
    session: requests.Session,
    url: str,
    *,
    allowed_hosts: Iterable[str] = (),
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
    resolver: Resolver | None = None,
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
        allowed_networks=allowed_networks,
        resolver=resolver,
        timeout_s=timeout_s,
        max_redirects=max_redirects,
        headers=headers,
    )


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
