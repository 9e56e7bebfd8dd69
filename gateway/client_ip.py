"""Who the client is, behind trusted proxies (pure): the address behind ``aws:SourceIp`` and
a function URL event's ``sourceIp``.

By default the TCP peer, since a client can write any ``X-Forwarded-For``. When the peer is a
proxy the operator trusts (``GatewaySettings.trusted_proxies``, e.g. the cluster's ingress), the
client is the right-most ``X-Forwarded-For`` address that is not itself a trusted proxy: each
trusted hop appends the address it saw, so entries left of the first untrusted one are the
client's own claims and are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parses trusted proxy CIDRs (``10.0.0.0/8``, ``fd00::/8``, or a single address)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address for a request from ``peer`` carrying ``forwarded_for``."""
    peer = peer or ""
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where the client's address should be: trust nothing
    return hops[0] if hops else peer
