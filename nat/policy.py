"""Which peer addresses a TURN allocation may relay to (CVE-2020-26262-style abuse protection).

coturn's semantics, with secure defaults on top:

* An IPv6 peer is judged with every IPv4 address it embeds, so no IPv6 spelling of a denied
  IPv4 address sneaks past an IPv4 rule: IPv4-mapped ``::ffff:0:0/96`` (RFC 4291 §2.5.5.2),
  IPv4-compatible ``::/96`` (§2.5.5.1), 6to4 ``2002::/16`` (RFC 3056 §2), NAT64 ``64:ff9b::/96``
  (RFC 6052 §2.1) and the local-use ``64:ff9b:1::/48`` (RFC 8215 §2, at each RFC 6052 §2.2
  prefix length it may use), and Teredo ``2001::/32`` (RFC 4380 §4: the server and the
  de-obfuscated client address). The mapped, compatible and well-known NAT64 forms *are* the
  IPv4 address and are judged as it; the others must pass as IPv6 and as every IPv4 they carry.
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

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 §2.1 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 §2.5.5.1 (deprecated, still routable)
_LOW32 = 0xFFFFFFFF

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
    """The address to apply rules to: IPv4-mapped, IPv4-compatible and well-known-prefix NAT64
    IPv6 addresses become the IPv4 address they stand for (``::`` and ``::1`` stay IPv6).

    Raises ValueError when ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
            return ipaddress.IPv4Address(int(ip) & _LOW32)
    return ip


def _bits(value: int, start: int, length: int) -> int:
    """Bits ``start .. start+length-1`` (0 = most significant) of a 128-bit address."""
    return (value >> (128 - start - length)) & ((1 << length) - 1)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """IPv4 addresses a packet to ``ip`` may end up at besides ``ip`` itself (after
    :func:`normalise`): 6to4's, Teredo's and local-use NAT64's."""
    value = int(ip)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        # RFC 4380 §4: the client field is stored inverted; ipaddress undoes that.
        return ip.teredo
    if ip in _NAT64_LOCAL:
        # RFC 8215 §2 leaves the prefix length inside 64:ff9b:1::/48 to the operator, so take
        # the IPv4 address of each RFC 6052 §2.2 layout that fits (/48, /56, /64, /96): bits
        # 64-71 are the reserved "u" octet, never part of the address. A layout that reads
        # 0.x.x.x only met the zero padding of another layout; it is dropped unless every
        # layout reads that (then 0.0.0.0/8, "this host", is judged and refused).
        candidates = (
            _bits(value, 48, 16) << 16 | _bits(value, 72, 16),
            _bits(value, 56, 8) << 24 | _bits(value, 72, 24),
            _bits(value, 72, 32),
            value & _LOW32,
        )
        found = [c for c in dict.fromkeys(candidates) if c >> 24] or [candidates[-1]]
        return tuple(ipaddress.IPv4Address(c) for c in found)
    return ()


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
        """Whether relaying to ``address`` is allowed; False for anything not an IP address.

        An IPv6 address that carries IPv4 addresses (6to4, Teredo, local-use NAT64) is
        allowed only when it and every one of them is.
        """
        try:
            ip = normalise(address)
        except ValueError:
            return False
        if not self._judge(ip.version, int(ip)):
            return False
        if isinstance(ip, ipaddress.IPv6Address):
            return all(self._judge(4, int(v4)) for v4 in embedded_ipv4(ip))
        return True

    def _judge(self, version: int, value: int) -> bool:
        if _hit(self._always_denied, version, value):
            return False
        if _hit(self._allowed, version, value):
            return True
        return not _hit(self._denied, version, value)
