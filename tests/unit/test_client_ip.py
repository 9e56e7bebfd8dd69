"""aws:SourceIp behind trusted proxies: the TCP peer unless it is a trusted proxy."""

from __future__ import annotations

import pytest

from klambda.gateway.client_ip import client_ip, networks

INGRESS = networks(["10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected", "why"),
    [
        ("203.0.113.7", "1.2.3.4", (), "203.0.113.7", "no trusted proxies: the peer"),
        ("203.0.113.7", "1.2.3.4", INGRESS, "203.0.113.7", "an untrusted peer's header is ignored"),
        ("10.1.2.3", None, INGRESS, "10.1.2.3", "a trusted peer without the header"),
        ("10.1.2.3", "198.51.100.9", INGRESS, "198.51.100.9", "behind the ingress"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.9", INGRESS, "198.51.100.9", "a forged left entry"),
        ("10.1.2.3", "198.51.100.9, 10.4.4.4", INGRESS, "198.51.100.9", "two trusted hops"),
        ("10.1.2.3", "10.9.9.9", INGRESS, "10.9.9.9", "all trusted: the left-most"),
        ("10.1.2.3", "not-an-ip", INGRESS, "10.1.2.3", "garbage: the peer"),
        ("10.1.2.3", "2001:db8::1", INGRESS, "2001:db8::1", "IPv6 clients"),
    ],
)
def test_client_ip(
    peer: str, forwarded: str | None, trusted: tuple, expected: str, why: str
) -> None:  # type: ignore[type-arg]
    assert client_ip(peer, forwarded, trusted) == expected, why
