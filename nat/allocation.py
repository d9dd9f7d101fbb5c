"""One TURN allocation: a relayed transport address with its permissions and channels.

RFC 8656 §2.2/§5: an allocation belongs to one client five-tuple and one username, lives for a
lifetime refreshed by Refresh, and holds permissions (per peer IP, §9) and channel bindings
(per peer address, §12). Plain data plus the few operations the server core needs on the relay
fast path; the lookups are dicts keyed exactly as packets are matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nat.channel import ChannelBinding
from nat.five_tuple import Address, FiveTuple, Transport
from nat.permission import Permission
from nat.ratelimit import TokenBucket


@dataclass(slots=True, eq=False)
class Allocation:
    """A live allocation. ``relay`` is the bound socket address, ``advertised`` what the client
    is told (they differ behind ``external-ip``)."""

    five_tuple: FiveTuple
    username: str
    quota_name: str
    relay: Address
    advertised: Address
    family: int  # 4 or 6
    expires: float
    transaction_id: bytes  # of the Allocate request, to answer its retransmissions (§7.2)
    success: bytes = b""  # the encoded success response, resent on retransmission
    max_bps: int = 0
    extra_relay: Address | None = None  # the IPv6 relay of a dual allocation (RFC 8656 §7.2)
    permissions: dict[str, Permission] = field(default_factory=dict)
    channels: dict[int, ChannelBinding] = field(default_factory=dict)
    channel_by_peer: dict[Address, ChannelBinding] = field(default_factory=dict)
    closed: bool = False
    # max-bps: one second of burst; both directions draw from it, like coturn's per-session limit
    bandwidth: TokenBucket | None = None

    def __post_init__(self) -> None:
        if self.max_bps:
            self.bandwidth = TokenBucket(self.max_bps, self.max_bps)

    @property
    def transport(self) -> Transport:
        """The listener the client talks to us on."""
        return self.five_tuple.transport

    @property
    def relays(self) -> tuple[Address, ...]:
        """Every relay socket address of this allocation (two for a dual allocation)."""
        return (self.relay,) if self.extra_relay is None else (self.relay, self.extra_relay)

    def has_family(self, version: int) -> bool:
        """Whether a relayed address of IP ``version`` (4 or 6) exists (RFC 8656 §7.2)."""
        return version == self.family or (self.extra_relay is not None and version == 6)

    def relay_for(self, host: str) -> Address:
        """The relay socket that talks to peer ``host``: the one of its address family."""
        if self.extra_relay is not None and ":" in host:
            return self.extra_relay
        return self.relay

    def drop_family(self, version: int) -> Address:
        """Turn a dual allocation into a single one without IP ``version``; returns the relay
        address that went (its socket is to be closed). Permissions and channels of the other
        family are dropped with it, since nothing can reach those peers any more."""
        assert self.extra_relay is not None
        if version == 6:
            dropped, self.extra_relay = self.extra_relay, None
        else:
            dropped, self.relay, self.extra_relay = self.relay, self.extra_relay, None
            self.advertised = self.relay
            self.family = 6
        keep_v6 = self.family == 6
        for ip in [ip for ip in self.permissions if (":" in ip) != keep_v6]:
            del self.permissions[ip]
        for binding in [b for b in self.channels.values() if (":" in b.peer[0]) != keep_v6]:
            self.unbind(binding)
        return dropped

    def permitted(self, ip: str, now: float) -> bool:
        """Whether a valid permission exists for peer ``ip`` (any port, RFC 8656 §9)."""
        perm = self.permissions.get(ip)
        return perm is not None and now < perm.expires

    def permit(self, ip: str, expires: float) -> Permission:
        """Install or refresh the permission for ``ip`` (RFC 8656 §9: refresh, not add)."""
        perm = self.permissions.get(ip)
        if perm is None:
            perm = self.permissions[ip] = Permission(ip, expires)
        else:
            perm.expires = max(perm.expires, expires)
        return perm

    def bind(self, number: int, peer: Address, expires: float) -> ChannelBinding:
        """Create or refresh the binding ``number`` <-> ``peer`` (caller checked conflicts)."""
        binding = self.channels.get(number)
        if binding is None:
            binding = ChannelBinding(number, peer, expires)
            self.channels[number] = binding
            self.channel_by_peer[peer] = binding
        else:
            binding.expires = expires
        return binding

    def unbind(self, binding: ChannelBinding) -> None:
        """Forget ``binding`` (after its cooldown)."""
        if self.channels.get(binding.number) is binding:
            del self.channels[binding.number]
        if self.channel_by_peer.get(binding.peer) is binding:
            del self.channel_by_peer[binding.peer]

    def within_bandwidth(self, size: int, now: float) -> bool:
        """May ``size`` more bytes go under ``max-bps``? (Always, without a limit.)"""
        bucket = self.bandwidth
        return bucket is None or bucket.take(now, size)
