"""Which peer addresses a TURN allocation may relay to (CVE-2020-26262-style abuse protection).

coturn's semantics, with secure defaults on top:

* IPv4-mapped (``::ffff:a.b.c.d``) and NAT64 (``64:ff9b::a.b.c.d``) IPv6 peers are normalised to
  the IPv4 address first, so a mapped form cannot sneak past an IPv4 rule.
* Unspecified addresses (``0.0.0.0/8``, ``::``) are always refused.
* Loopback is refused unless ``allow-loopback-peers``; multicast (and IPv4 broadcast/reserved
  240/4) unless ``no-multicast-peers`` is off. As in coturn these checks come before the lists.
* ``allowed-peer-ip`` wins next: a listed address is permitted even when denied below.
* ``denied-peer-ip`` is refused, and so, by default, are private (10/8, 172.16/12, 192.168/16,
  100.64/10, fc00::/7), link-local (169.254/16, fe80::/10) and site-local (fec0::/10) peers:
  a relay on a home network must not become a door into it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from nat.config import IPAddress, IPRange, RelayConfig

_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_DEFAULT_DENIED: tuple[str, ...] = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
)
_UNSPECIFIED: tuple[str, ...] = ("0.0.0.0/8", "::/128")
_LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
_MULTICAST: tuple[str, ...] = ("224.0.0.0/4", "240.0.0.0/4", "ff00::/8")

_Ranges = tuple[tuple[int, int, int], ...]  # (version, first, last) as integers


def normalise(address: str | IPAddress) -> IPAddress:
    """The address to apply rules to: IPv4-mapped and NAT64 IPv6 become IPv4.

    Raises ValueError when ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _nets(cidrs: Iterable[str]) -> _Ranges:
    out = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        out.append((net.version, int(net.network_address), int(net.broadcast_address)))
    return tuple(out)


def _ranges(ranges: Iterable[IPRange]) -> _Ranges:
    out = []
    for first, last in ranges:
        a, b = normalise(first), normalise(last)
        out.append((a.version, int(a), int(b)))
    return tuple(out)


def _hit(ranges: _Ranges, version: int, value: int) -> bool:
    return any(v == version and first <= value <= last for v, first, last in ranges)


class PeerPolicy:
    """Decides whether a peer IP may be given a permission or channel (RFC 8656 §21.2.3)."""

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        allow_multicast: bool = False,
        allowed: Iterable[IPRange] = (),
        denied: Iterable[IPRange] = (),
    ) -> None:
        self._always_denied = _nets(
            _UNSPECIFIED
            + (() if allow_loopback else _LOOPBACK)
            + (() if allow_multicast else _MULTICAST)
        )
        self._allowed = _ranges(allowed)
        self._denied = _ranges(denied) + _nets(_DEFAULT_DENIED)

    @classmethod
    def from_config(cls, config: RelayConfig) -> PeerPolicy:
        """The policy described by the coturn-style keys of ``config``."""
        return cls(
            allow_loopback=config.allow_loopback_peers,
            allow_multicast=not config.no_multicast_peers,
            allowed=config.allowed_peer_ips,
            denied=config.denied_peer_ips,
        )

    def permits(self, address: str | IPAddress) -> bool:
        """Whether relaying to ``address`` is allowed; False for anything not an IP address."""
        try:
            ip = normalise(address)
        except ValueError:
            return False
        version, value = ip.version, int(ip)
        if _hit(self._always_denied, version, value):
            return False
        if _hit(self._allowed, version, value):
            return True
        return not _hit(self._denied, version, value)
