"""nat.policy: coturn's peer address rules with secure defaults, IPv4-mapped normalised."""

from __future__ import annotations

import ipaddress

import pytest

from nat.config import IPRange, RelayConfig
from nat.policy import PeerPolicy, normalise


def rng(a: str, b: str | None = None) -> IPRange:
    return (ipaddress.ip_address(a), ipaddress.ip_address(b or a))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("203.0.113.9", True),
        ("2001:db8::1", True),
        ("8.8.8.8", True),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("::1", False),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("::", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("172.32.0.1", True),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("fe80::1", False),
        ("fd00::1", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("255.255.255.255", False),
        ("ff02::1", False),
        # IPv4-mapped and NAT64 forms are judged as the IPv4 address (CVE-2020-26262 style).
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:0.0.0.0", False),
        ("::ffff:203.0.113.9", True),
        ("64:ff9b::a00:1", False),
        ("not an ip", False),
    ],
)
def test_secure_defaults(address: str, allowed: bool) -> None:
    assert PeerPolicy().permits(address) is allowed


def test_allow_loopback_peers() -> None:
    policy = PeerPolicy(allow_loopback=True)
    assert policy.permits("127.0.0.1")
    assert policy.permits("::1")
    assert policy.permits("::ffff:127.0.0.2")
    assert not policy.permits("0.0.0.0")
    assert not policy.permits("10.0.0.1")


def test_allowed_wins_over_denied_and_private_defaults() -> None:
    policy = PeerPolicy(
        allowed=[rng("10.0.0.5"), rng("192.168.0.10", "192.168.0.20")],
        denied=[rng("10.0.0.0", "10.0.0.255"), rng("203.0.113.0", "203.0.113.255")],
    )
    assert policy.permits("10.0.0.5")
    assert not policy.permits("10.0.0.6")
    assert policy.permits("192.168.0.15")
    assert policy.permits("::ffff:192.168.0.15")
    assert not policy.permits("192.168.0.21")
    assert not policy.permits("203.0.113.9")
    assert policy.permits("198.51.100.1")


def test_allowed_does_not_reopen_loopback_or_multicast_as_in_coturn() -> None:
    policy = PeerPolicy(allowed=[rng("127.0.0.1"), rng("224.0.0.1"), rng("0.0.0.0")])
    assert not policy.permits("127.0.0.1")
    assert not policy.permits("224.0.0.1")
    assert not policy.permits("0.0.0.0")
    assert PeerPolicy(allow_multicast=True).permits("224.0.0.1")


def test_from_config() -> None:
    config = RelayConfig(
        allow_loopback_peers=True,
        no_multicast_peers=False,
        denied_peer_ips=(rng("203.0.113.1"),),
    )
    policy = PeerPolicy.from_config(config)
    assert policy.permits("127.0.0.1")
    assert policy.permits("239.1.1.1")
    assert not policy.permits("203.0.113.1")


def test_normalise() -> None:
    assert normalise("::ffff:1.2.3.4") == ipaddress.ip_address("1.2.3.4")
    assert normalise("64:ff9b::102:304") == ipaddress.ip_address("1.2.3.4")
    assert normalise("2001:db8::1") == ipaddress.ip_address("2001:db8::1")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        normalise("nope")
