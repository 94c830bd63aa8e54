"""Which IP addresses an outgoing request may reach: the address half of the SSRF guard.

:func:`address_refusal` says why an address is refused, or ``None``. Refused **always**,
even with ``allow_private`` (no local setup needs them, and several hand out credentials):

* cloud metadata and credential endpoints (:data:`METADATA_ADDRESSES`): AWS IMDS (v4 and
  v6), ECS task credentials, EKS Pod Identity (v4 and v6), Azure WireServer, Alibaba;
* multicast.

Refused unless ``allow_private``: loopback, unspecified, link-local, private (RFC 1918,
ULA), carrier-grade NAT ``100.64.0.0/10``, reserved and any other non-global address.
``allowed_networks`` exempts operator-listed networks (e.g. an internal image proxy) from
that second list only; metadata stays refused.

IPv6 forms that carry an IPv4 address are judged by the IPv4 address they carry, so a
refused IPv4 cannot be reached through them: IPv4-mapped ``::ffff:0:0/96``, 6to4
``2002::/16`` (e.g. ``2002:7f00:1::`` is 127.0.0.1), NAT64 ``64:ff9b::/96`` (RFC 6052) and
the local-use NAT64 prefix ``64:ff9b:1::/48`` (RFC 8215), and Teredo's client address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Refused even with ``allow_private``: instance metadata and credential services.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
        "168.63.129.16",  # Azure WireServer (host agent, extension settings)
        "100.100.100.200",  # Alibaba Cloud
    )
)
CGNAT_NETWORK = ipaddress.ip_network("100.64.0.0/10")
NAT64_NETWORKS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["10.0.5.0/24", "fd12::/64", "10.0.0.7"]`` as networks; raises ValueError on junk."""
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64, Teredo), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in NAT64_NETWORKS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def address_refusal(
    address: IPAddress,
    *,
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
) -> str | None:
    """Why ``address`` may not be reached (a short kind, e.g. ``"loopback"``), or ``None``."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = address_refusal(
            inner, allow_private=allow_private, allowed_networks=allowed_networks
        )
        if reason:
            return reason
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return None  # ::ffff:a.b.c.d is a.b.c.d itself
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_multicast:
        return "multicast"
    if allow_private or any(
        address.version == net.version and address in net for net in allowed_networks
    ):
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
            return label
    return None
