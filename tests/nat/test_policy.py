"""nat.policy: coturn's peer address rules with secure defaults, seen through every IPv6 form
that embeds an IPv4 address."""

from __future__ import annotations

import ipaddress

import pytest

from nat.config import IPRange, RelayConfig
from nat.policy import PeerPolicy, embedded_ipv4, normalise


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


def teredo(server: str, client: str, port: int = 40000) -> str:
    """A Teredo address (RFC 4380 §4): 2001:0::/32, server, flags, then port and client
    address both inverted ("obfuscated")."""
    value = (
        0x20010000 << 96
        | int(ipaddress.IPv4Address(server)) << 64
        | (port ^ 0xFFFF) << 32
        | int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    )
    return str(ipaddress.IPv6Address(value))


def embeddings(v4: str) -> dict[str, str]:
    """Every IPv6 spelling of ``v4`` the deny list must see through."""
    n = int(ipaddress.IPv4Address(v4))
    six = ipaddress.IPv6Address
    return {
        "mapped": str(six(0xFFFF << 32 | n)),
        "compatible": str(six(n)),
        "6to4": str(six(0x2002 << 112 | n << 80 | 1)),
        "nat64": str(six(0x64FF9B << 96 | n)),
        # RFC 8215 local-use prefix, RFC 6052 layouts /48 (address split around the u octet)
        # and /96.
        "nat64-local/48": str(six(0x64FF9B0001 << 80 | (n >> 16) << 64 | (n & 0xFFFF) << 40)),
        "nat64-local/96": str(six(0x64FF9B0001 << 80 | n)),
        "teredo-client": teredo("198.51.100.1", v4),
    }


DENIED_V4 = ["127.0.0.1", "10.1.2.3", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"]


@pytest.mark.parametrize("v4", DENIED_V4)
@pytest.mark.parametrize("form", list(embeddings("1.2.3.4")))
def test_every_ipv6_embedding_of_a_denied_ipv4_is_denied(v4: str, form: str) -> None:
    address = embeddings(v4)[form]
    assert not PeerPolicy().permits(address), f"{form} {address} of {v4} was permitted"


@pytest.mark.parametrize("form", list(embeddings("1.2.3.4")))
def test_embedding_of_a_public_ipv4_is_permitted(form: str) -> None:
    assert PeerPolicy().permits(embeddings("203.0.113.9")[form])


@pytest.mark.parametrize("form", list(embeddings("1.2.3.4")))
def test_denied_peer_ip_applies_to_every_embedding(form: str) -> None:
    policy = PeerPolicy(denied=[rng("203.0.113.0", "203.0.113.255")])
    assert not policy.permits(embeddings("203.0.113.9")[form])
    assert policy.permits(embeddings("198.51.100.9")[form])


def test_the_issue_s_two_bypasses_are_closed() -> None:
    assert not PeerPolicy().permits("::127.0.0.1")  # IPv4-compatible
    assert not PeerPolicy().permits("2002:7f00:1::1")  # 6to4 of 127.0.0.1


def test_teredo_server_address_is_judged_too() -> None:
    assert not PeerPolicy().permits(teredo("10.0.0.1", "203.0.113.9"))


def test_loopback_allowance_covers_embeddings_of_127_but_not_private() -> None:
    policy = PeerPolicy(allow_loopback=True)
    assert policy.permits("::1")
    assert policy.permits("::127.0.0.1")
    assert policy.permits("2002:7f00:1::1")
    assert not policy.permits("2002:a00:1::1")


def test_embedded_ipv4() -> None:
    ip = ipaddress.IPv6Address
    v4 = ipaddress.IPv4Address
    assert embedded_ipv4(ip("2002:7f00:1::1")) == (v4("127.0.0.1"),)
    assert embedded_ipv4(ip(teredo("198.51.100.1", "10.0.0.1"))) == (
        v4("198.51.100.1"),
        v4("10.0.0.1"),
    )
    assert v4("10.1.2.3") in embedded_ipv4(ip(embeddings("10.1.2.3")["nat64-local/48"]))
    assert embedded_ipv4(ip("2001:db8::1")) == ()
    assert normalise("::10.1.2.3") == v4("10.1.2.3")
    assert normalise("::1") == ip("::1")
    assert normalise("::") == ip("::")


def test_local_nat64_padding_is_not_taken_for_an_address_but_all_zero_is_refused() -> None:
    # 203.0.113.9 at /48 reads 0.113.9.0 at /56: zero padding, not a second destination.
    assert PeerPolicy().permits(embeddings("203.0.113.9")["nat64-local/48"])
    assert not PeerPolicy().permits("64:ff9b:1::")
