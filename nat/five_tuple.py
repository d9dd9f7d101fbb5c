"""Five-tuples: what identifies a client's allocation (RFC 8656 §2, "5-tuple")."""

from __future__ import annotations

from typing import NamedTuple

Address = tuple[str, int]
"""A transport address as ``(host, port)``; IPv6 hosts without brackets or scope."""


class Transport(NamedTuple):
    """The server side of a client's traffic: the protocol and the listening address it hit."""

    protocol: str  # "udp", "tcp" or "tls"
    local: Address


class FiveTuple(NamedTuple):
    """Client address, server address and protocol: the key of an allocation.

    RFC 8656 §2: a TURN allocation is bound to the 5-tuple its Allocate request arrived on;
    for TCP/TLS the protocol plus the two addresses name exactly one connection.
    """

    protocol: str
    client: Address
    server: Address

    @classmethod
    def of(cls, client: Address, transport: Transport) -> FiveTuple:
        """The five-tuple of traffic from ``client`` arriving on ``transport``."""
        return cls(transport.protocol, client, transport.local)

    @property
    def transport(self) -> Transport:
        """The listener this five-tuple arrives on."""
        return Transport(self.protocol, self.server)

    @property
    def stream(self) -> bool:
        """Whether this is TCP or TLS (ChannelData must then be padded, RFC 8656 §12.5)."""
        return self.protocol != "udp"
