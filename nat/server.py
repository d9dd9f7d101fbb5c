"""The sans-I/O STUN/TURN server core (RFC 8489 Binding, RFC 8656 TURN, RFC 6156 IPv6).

In the spirit of h11: no sockets, clocks or asyncio here. The I/O layer feeds events in and
performs the returned actions:

* :meth:`TurnServer.handle` - bytes from a client on a listener;
* :meth:`TurnServer.relay_received` - bytes from a peer on a relay socket;
* :meth:`TurnServer.relay_opened` / :meth:`TurnServer.relay_failed` - the outcome of an
  :class:`OpenRelay` action (the I/O layer picks and binds the port);
* :meth:`TurnServer.connection_lost` - a TCP/TLS client went away;
* :meth:`TurnServer.tick` at :meth:`TurnServer.next_deadline` - lifetimes end.

Each returns a list of :class:`SendToClient`, :class:`SendToPeer`, :class:`OpenRelay` and
:class:`CloseRelay`. Time is the ``now`` argument (Unix seconds: TURN REST usernames carry Unix
expiry times). Malformed input is dropped or answered 400 as the RFCs say; ``handle`` never
raises (a bug would be logged and counted in ``internal_errors``, which the fuzz test asserts
stays 0).

One handler per method, each citing its RFC section: :meth:`_binding`, :meth:`_allocate`,
:meth:`_refresh`, :meth:`_create_permission`, :meth:`_channel_bind`, :meth:`_send_indication`,
:meth:`_channel_data`; peer traffic in :meth:`relay_received`.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from nat import stun
from nat.allocation import Allocation
from nat.allocation_manager import AllocationManager, Reservation
from nat.config import RelayConfig
from nat.credentials import CredentialStore
from nat.errors import StunAttributeError, StunError
from nat.five_tuple import Address, FiveTuple, Transport
from nat.nonce import NonceManager
from nat.policy import PeerPolicy
from nat.quota import QuotaLedger
from nat.reservations import ReservationBook
from nat.stun import Message, Method, MsgClass

logger = logging.getLogger(__name__)

DEFAULT_LIFETIME: Final = 600
"""Allocation lifetime when the client asks for less or nothing (RFC 8656 §7.2)."""
UDP_PROTOCOL: Final = 17
"""REQUESTED-TRANSPORT value for UDP, the only relay transport offered (RFC 8656 §18.4)."""
MAX_PERMISSIONS: Final = 1024
"""Permissions one allocation may hold; beyond it CreatePermission gets 508 (bounded memory)."""

REASONS: Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached",
    500: "Server Error",
    508: "Insufficient Capacity",
}
"""Reason phrases of the error codes used (RFC 8489 §14.8, RFC 8656 §19, RFC 6156 §10)."""

_FAMILY_CODE: Final = {1: 4, 2: 6}  # REQUESTED-ADDRESS-FAMILY value -> IP version (RFC 6156)
_SEND_INDICATION: Final = 0x0016
_KNOWN_REQUIRED: Final = frozenset(t for t in stun.ATTRIBUTES if t < 0x8000)
_BARE_BINDING: Final = b"\x00\x01\x00\x00" + stun.MAGIC_COOKIE.to_bytes(4, "big")
_CHANNEL_HEAD: Final = struct.Struct(">HH").pack
_WILDCARDS: Final = ("0.0.0.0", "::")
_HEADER_LENGTH: Final = stun.HEADER_LENGTH  # (a global, not a module attribute, on hot paths)
_send_indication_parts: Final = stun.send_indication_parts
_send_v4_frame: Final = stun.SEND_INDICATION_V4_FRAME.unpack_from
_peer_cache: Final = stun._PEER_CACHE  # (the same dict: cleared, never replaced)
_xor_peer_v4: Final = stun.xor_peer_v4


def _relays_of(item: Allocation | Reservation) -> tuple[Address, ...]:
    return item.relays if isinstance(item, Allocation) else (item.relay,)


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendToClient:
    """Send ``data`` to ``client`` over the listener ``transport`` (its TCP connection, if any)."""

    transport: Transport
    client: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class SendToPeer:
    """Send ``data`` from the relay socket bound at ``relay`` to ``peer``."""

    relay: Address
    peer: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class OpenRelay:
    """Bind a UDP relay socket for ``five_tuple`` on ``host``, then report back with
    :meth:`TurnServer.relay_opened` or :meth:`TurnServer.relay_failed`.

    ``port`` is a reserved port to take over (RESERVATION-TOKEN), else any free port in
    ``min-port..max-port``; ``even`` asks for an even port and ``reserve_next`` to also hold
    port + 1 (EVEN-PORT with the R bit, RFC 8656 §7.2).
    """

    five_tuple: FiveTuple
    host: str
    port: int | None = None
    even: bool = False
    reserve_next: bool = False
    additional_host: str | None = None  # also bind an IPv6 relay here (dual allocation)


@dataclass(frozen=True, slots=True)
class CloseRelay:
    """Close the relay (or reserved) socket bound at ``relay``."""

    relay: Address


Action = SendToClient | SendToPeer | OpenRelay | CloseRelay


@dataclass(slots=True)
class _PendingAllocate:
    """An Allocate waiting for its relay socket."""

    request: Message
    username: str
    quota_name: str
    key: bytes
    family: int
    lifetime: int
    dual: str = ""  # ADDITIONAL-ADDRESS-FAMILY asked: "" no, "440" no IPv6 relay, "ok" opened


@dataclass(slots=True)
class Counters:
    """What the server has done so far (read by the service's ``stats()``)."""

    stun_requests: int = 0
    error_responses: int = 0
    challenges: int = 0  # 401s to requests without credentials: the normal first round trip
    malformed: int = 0
    relayed_packets: int = 0
    relayed_bytes: int = 0
    dropped: int = 0
    internal_errors: int = 0


def _transaction_ids(random_bytes: Callable[[int], bytes]) -> Iterator[bytes]:
    """Transaction ids for Data indications, from the server's random source as RFC 8489 §5
    asks (cryptographically random): one read per 64 ids, which costs about what a Mersenne
    Twister's getrandbits did per id."""
    while True:
        block = random_bytes(12 * 64)
        for at in range(0, 12 * 64, 12):
            yield block[at : at + 12]


def _send_indication_other(data: bytes, size: int) -> tuple[Address, bytes] | None:
    """``(peer, payload)`` of a Send indication not laid out as usual, or None to drop it:
    a length field that disagrees with the datagram, or what stun.send_indication_parts
    rejects (RFC 8489 §6.3.2: unknown comprehension-required attributes too). Raises
    :class:`StunError` for a malformed XOR-PEER-ADDRESS."""
    if (data[2] << 8 | data[3]) != size - _HEADER_LENGTH:
        return None
    return _send_indication_parts(data, _KNOWN_REQUIRED)


class _Reject(Exception):
    """Internal: abort a request handler with these actions as the answer."""

    def __init__(self, actions: list[Action]) -> None:
        super().__init__()
        self.actions = actions


class TurnServer:
    """The STUN/TURN protocol state of one relay server; see the module docstring."""

    def __init__(
        self,
        config: RelayConfig,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        policy: PeerPolicy | None = None,
        credentials: CredentialStore | None = None,
        ledger: QuotaLedger | None = None,
        reservations: ReservationBook | None = None,
    ) -> None:
        self.config = config
        self._random_bytes = random_bytes
        self.policy = policy or PeerPolicy.from_config(config)
        self.credentials = credentials or CredentialStore.from_config(config)
        self.nonces = NonceManager(random_bytes(20), config.stale_nonce)
        self.allocations = AllocationManager(
            user_quota=config.user_quota,
            total_quota=config.total_quota,
            ledger=ledger,
            book=reservations,
        )
        self.counters = Counters()
        self._by_five_tuple = self.allocations.by_five_tuple  # (the same dict, for hot paths)
        self._pending: dict[FiveTuple, _PendingAllocate] = {}
        self._fingerprint = config.fingerprint
        self._software = config.server_name
        self._relay_hosts: dict[int, str] = {}
        for host in config.relay_ips or config.listening_ips:
            self._relay_hosts.setdefault(6 if ":" in host else 4, host)
        self._external: str | None = config.external_ip
        self._encode_binding = stun.binding_response_encoder(
            self._software, add_fingerprint=self._fingerprint
        )
        self._encode_challenge = stun.challenge_encoder(
            self.credentials.realm, self._software, add_fingerprint=self._fingerprint
        )
        self._encode_data = stun.data_indication_encoder(add_fingerprint=self._fingerprint)
        self._transaction_ids = _transaction_ids(random_bytes)

    # --- events in ------------------------------------------------------------------------------

    def handle(
        self, data: bytes, source: Address, transport: Transport, now: float
    ) -> list[Action]:
        """React to one datagram (or one framed TCP message) from a client."""
        try:
            if not data:
                return []
            kind = data[0] & 0xC0
            if kind == 0x40:
                return self._channel_data(data, source, transport, now)
            if kind != 0 or len(data) < stun.HEADER_LENGTH:
                self.counters.malformed += 1
                return []
            if (data[0] << 8 | data[1]) == _SEND_INDICATION:
                return self._send_indication(data, source, transport, now)
            return self._stun(data, source, transport, now)
        except Exception:  # a bug in this module, never bad input (which is handled above)
            self.counters.internal_errors += 1
            logger.exception("internal error handling %d bytes from %s", len(data), source)
            return []

    def relay_received(
        self, relay: Address, data: bytes, peer: Address, now: float
    ) -> list[Action]:
        """Data from ``peer`` on the relay socket ``relay``: pass it to the client as
        ChannelData if a channel is bound, else as a Data indication (RFC 8656 §11.3, §12.7),
        provided a permission exists for the peer's IP (§9)."""
        found = self.relay_received_fast(relay, data, peer, now)
        if found is None:
            return []
        ft, out = found
        return [SendToClient(Transport(ft.protocol, ft.server), ft.client, out)]

    def relay_received_fast(
        self, relay: Address, data: bytes, peer: Address, now: float
    ) -> tuple[FiveTuple, bytes] | None:
        """:meth:`relay_received` without building actions, for the I/O layer's hot path:
        ``(client five-tuple, bytes to send it)``, or None when dropped (counted)."""
        allocation = self.allocations.by_relay.get(relay)
        if allocation is None:
            return None
        perm = allocation.permissions.get(peer[0])
        if perm is None or now >= perm.expires:
            self.counters.dropped += 1
            return None
        size = len(data)
        if allocation.max_bps and not allocation.within_bandwidth(size, now):
            self.counters.dropped += 1
            return None
        ft = allocation.five_tuple
        channel = allocation.channel_by_peer.get(peer)
        if channel is not None and now < channel.expires:
            # RFC 8656 §12.5: ChannelData, padded to 4 bytes over TCP/TLS.
            out = _CHANNEL_HEAD(channel.number, size) + data
            if ft.protocol != "udp" and size & 3:
                out += b"\x00\x00\x00"[: -size & 3]
        else:
            out = self._encode_data(next(self._transaction_ids), peer, data)
        counters = self.counters
        counters.relayed_packets += 1
        counters.relayed_bytes += size
        return ft, out

    def relay_opened(
        self,
        five_tuple: FiveTuple,
        relay: Address,
        reserved: Address | None,
        now: float,
        *,
        reached: str | None = None,
        additional: Address | None = None,
    ) -> list[Action]:
        """The relay socket asked for by :class:`OpenRelay` is bound at ``relay`` (and
        ``reserved`` holds port + 1 when the R bit asked for it): finish the Allocate.

        ``reached`` is the local address the client's packets arrived at (the I/O layer knows
        it); it is advertised instead of a wildcard relay address (listening-ip 0.0.0.0 or ::
        without relay-ip/external-ip), as coturn advertises a real interface address.
        ``additional`` is the IPv6 relay of a dual allocation (None if it could not be bound).
        """
        pending = self._pending.pop(five_tuple, None)
        if pending is None:  # the client went away meanwhile
            closes: list[Action] = [CloseRelay(relay)]
            for extra in (reserved, additional):
                if extra is not None:
                    closes.append(CloseRelay(extra))
            return closes
        advertised = self._advertise(relay, reached)
        dual = pending.dual
        extra_closes: list[Action] = []
        extra_advertised: Address | None = None
        if additional is not None:
            extra_advertised = self._advertise(additional, reached)
            if extra_advertised[0] in _WILDCARDS:
                # An IPv6 relay on "::" whose client reached us over IPv4: no IPv6 address is
                # known to advertise, and "::" is none a peer can use. No IPv6 half then (440).
                extra_closes.append(CloseRelay(additional))
                dual, additional, extra_advertised = "440", None, None
        allocation = Allocation(
            five_tuple=five_tuple,
            username=pending.username,
            quota_name=pending.quota_name,
            relay=relay,
            advertised=advertised,
            family=pending.family,
            expires=now + pending.lifetime,
            transaction_id=pending.request.transaction_id,
            max_bps=self.config.max_bps,
            extra_relay=additional if dual else None,
        )
        self.allocations.add(allocation)
        attrs: list[tuple[stun.Attr[Any], Any]] = [(stun.XOR_RELAYED_ADDRESS, advertised)]
        if dual and extra_advertised is not None:
            # RFC 8656 §7.2: one XOR-RELAYED-ADDRESS per family of a dual allocation.
            attrs.append((stun.XOR_RELAYED_ADDRESS, extra_advertised))
        elif dual:
            # RFC 8656 §7.2: the IPv4 allocation succeeds; ADDRESS-ERROR-CODE says why the
            # IPv6 one did not (440: no IPv6 relay address here, 508: no free port).
            code = 440 if dual == "440" else 508
            attrs.append((stun.ADDRESS_ERROR_CODE, (2, stun.ErrorCode(code, REASONS[code]))))
        attrs += [
            (stun.LIFETIME, pending.lifetime),
            (stun.XOR_MAPPED_ADDRESS, five_tuple.client),
        ]
        if reserved is not None:
            token = self._random_bytes(8)
            self.allocations.reserve(token, reserved, now)
            attrs.append((stun.RESERVATION_TOKEN, token))
        response = self._reply(pending.request, attrs, pending.key)
        allocation.success = response
        logger.info(
            "allocation %s for %r from %s/%s:%d",
            relay,
            pending.username,
            five_tuple.protocol,
            *five_tuple.client,
        )
        return [*extra_closes, SendToClient(five_tuple.transport, five_tuple.client, response)]

    @property
    def advertised_ip(self) -> str | None:
        """The external-ip told to clients in XOR-RELAYED-ADDRESS (None: see ``_advertise``)."""
        return self._external

    def advertise_as(self, ip: str | None) -> None:
        """Tell allocations made from now on that they are relayed at ``ip`` (an external-ip
        learned at run time, e.g. once the home router forwards the relay ports); ``None``
        goes back to the configured one. Existing allocations keep what they were told."""
        self._external = ip if ip is not None else self.config.external_ip

    def _advertise(self, relay: Address, reached: str | None) -> Address:
        """What the client is told for ``relay``: external-ip, else the address it reached
        when the relay is bound to a wildcard, else the relay itself."""
        if self._external is not None and (":" in self._external) == (":" in relay[0]):
            return (self._external, relay[1])
        if relay[0] in _WILDCARDS and reached and (":" in reached) == (":" in relay[0]):
            return (reached, relay[1])
        return relay

    def relay_failed(self, five_tuple: FiveTuple, now: float) -> list[Action]:
        """No relay socket could be bound for the pending Allocate: answer 508 (RFC 8656 §7.2)."""
        pending = self._pending.pop(five_tuple, None)
        if pending is None:
            return []
        self.allocations.release(pending.quota_name)
        return self._error(pending.request, five_tuple, 508, pending.key)

    def connection_lost(self, client: Address, transport: Transport, now: float) -> list[Action]:
        """A TCP/TLS client disconnected: its allocation goes with the connection."""
        ft = FiveTuple.of(client, transport)
        pending = self._pending.pop(ft, None)
        if pending is not None:
            self.allocations.release(pending.quota_name)
        allocation = self.allocations.by_five_tuple.get(ft)
        if allocation is None:
            return []
        self.allocations.remove(allocation)
        return [CloseRelay(relay) for relay in allocation.relays]

    def tick(self, now: float) -> list[Action]:
        """End whatever lifetimes have run out by ``now`` (allocations, permissions, channels,
        reservations); returns the relay sockets to close."""
        closed = self.allocations.expire(now)
        for item in closed:
            if isinstance(item, Allocation):
                logger.info("allocation %s of %r expired", item.relay, item.username)
        return [CloseRelay(relay) for item in closed for relay in _relays_of(item)]

    def next_deadline(self) -> float | None:
        """When :meth:`tick` should next be called (None: nothing is scheduled)."""
        return self.allocations.next_deadline()

    def close(self) -> list[Action]:
        """Drop every allocation and reservation; returns the sockets to close."""
        for pending in self._pending.values():
            self.allocations.release(pending.quota_name)
        self._pending.clear()
        return [
            CloseRelay(relay) for item in self.allocations.close_all() for relay in _relays_of(item)
        ]

    # --- fast paths -----------------------------------------------------------------------------

    def _channel_data(
        self, data: bytes, source: Address, transport: Transport, now: float
    ) -> list[Action]:
        """ChannelData from the client (RFC 8656 §12.5): relay to the channel's peer."""
        found = self.channel_data_fast(data, source, transport, now)
        if found is None:
            return []
        return [SendToPeer(*found)]

    def clients_on(self, transport: Transport) -> dict[Address, Allocation]:
        """The allocations on listener ``transport`` by client address, a live view for the I/O
        layer to hold, so that each packet's allocation is found by its source alone and handed
        to the ``*_of`` entry points. Read only: the core alone changes it."""
        return self.allocations.clients_on(transport)

    def channel_data_fast(
        self, data: bytes, source: Address, transport: Transport, now: float
    ) -> tuple[Address, Address, bytes] | None:
        """ChannelData from the client without building actions, for the I/O layer's hot path:
        ``(relay, peer, payload)`` to send, or None when dropped (counted)."""
        # A plain tuple hashes and compares like the FiveTuple key, and is cheaper to build
        # (and typing.cast would be a function call per packet).
        key = (transport[0], source, transport[1])
        allocation = self._by_five_tuple.get(key)  # type: ignore[call-overload]
        return self.channel_data_of(allocation, data, now)

    def channel_data_of(
        self, allocation: Allocation | None, data: bytes, now: float
    ) -> tuple[Address, Address, bytes] | None:
        """:meth:`channel_data_fast` for a ChannelData datagram from the client of
        ``allocation`` (None: the source has none), as found in :meth:`clients_on`."""
        if allocation is None or len(data) < 4:
            self.counters.dropped += 1
            return None
        number = data[0] << 8 | data[1]
        length = data[2] << 8 | data[3]
        channel = allocation.channels.get(number)
        if channel is None or now >= channel.expires or length > len(data) - 4:
            self.counters.dropped += 1
            return None
        # No permission check here: RFC 8656 §12.5 relays on a bound channel (whose binding
        # passed the peer policy); permissions gate peer-to-client traffic (§11.3).
        if allocation.max_bps and not allocation.within_bandwidth(length, now):
            self.counters.dropped += 1
            return None
        counters = self.counters
        counters.relayed_packets += 1
        counters.relayed_bytes += length
        peer = channel.peer
        if allocation.extra_relay is not None:
            return allocation.relay_for(peer[0]), peer, data[4 : 4 + length]
        return allocation.relay, peer, data[4 : 4 + length]

    def channel_frames(
        self,
        allocation: Allocation | None,
        data: bytes,
        pos: int,
        now: float,
        relayed: list[tuple[Address, Address, bytes]],
    ) -> int:
        """The ChannelData frames in a row at ``data[pos:]``, read from the stream (TCP/TLS) of
        ``allocation``'s client (None: it has none now): each one to relay appended to
        ``relayed`` as ``(relay, peer, payload)``, in order, the others dropped (counted).
        Returns where the run ends: at the first frame that is not ChannelData, or not complete
        yet, for the caller to look at.

        A stream's frames are read in place (``data`` may be a bytearray; payloads are copies,
        so it may change afterwards). Over a stream, ChannelData is padded to 4 bytes, the
        padding not counted in its length (RFC 8656 §12.5). A read holds many frames of the
        same few channels, all at the same ``now``: each channel's binding is looked up once per
        run, and the counters are updated once.
        """
        total = len(data)
        channels = allocation.channels if allocation is not None else {}
        within = allocation.within_bandwidth if allocation and allocation.max_bps else None
        append = relayed.append
        number_seen = -1
        relay: Address | None = None
        peer: Address = ("", 0)
        packets = size = dropped = 0
        while total - pos >= 4:
            first = data[pos]
            if first & 0xC0 != 0x40:
                break
            length = data[pos + 2] << 8 | data[pos + 3]
            end = pos + 4 + length + (-length & 3)
            if end > total:
                break
            number = first << 8 | data[pos + 1]
            if number != number_seen:
                number_seen = number
                channel = channels.get(number)
                if channel is None or now >= channel.expires:
                    relay = None
                else:
                    # No permission check: RFC 8656 §12.5 relays on a bound channel (whose
                    # binding passed the peer policy); permissions gate the other way (§11.3).
                    assert allocation is not None  # (no channels without it)
                    peer = channel.peer
                    relay = allocation.relay_for(peer[0])
            if relay is None or (within is not None and not within(length, now)):
                dropped += 1
            else:
                append((relay, peer, data[pos + 4 : pos + 4 + length]))
                packets += 1
                size += length
            pos = end
        counters = self.counters
        counters.relayed_packets += packets
        counters.relayed_bytes += size
        counters.dropped += dropped
        return pos

    def binding_fast(self, data: bytes, source: Address) -> bytes | None:
        """The answer to a bare Binding request (20 bytes, no attributes), or None for anything
        else (then :meth:`handle` decides). Same bytes as :meth:`_binding` (RFC 8489 §6.3.1),
        built by a lean encoder: Binding is what STUN-only clients flood a server with."""
        if len(data) != stun.HEADER_LENGTH or data[:8] != _BARE_BINDING:
            return None
        self.counters.stun_requests += 1
        return self._encode_binding(data[8:20], source)

    def _send_indication(
        self, data: bytes, source: Address, transport: Transport, now: float
    ) -> list[Action]:
        """Send indication (RFC 8656 §11.2): relay DATA to XOR-PEER-ADDRESS if permitted."""
        found = self.send_indication_fast(data, source, transport, now)
        if found is None:
            return []
        return [SendToPeer(*found)]

    def send_indication_fast(
        self, data: bytes, source: Address, transport: Transport, now: float
    ) -> tuple[Address, Address, bytes] | None:
        """A Send indication (RFC 8656 §11.2) without building actions, for the I/O layer's
        hot path: ``(relay, peer, payload)`` to send, or None when dropped (counted).
        ``data`` must start with the Send indication type (0x0016).

        Indications are never answered; anything wrong means a silent drop.
        """
        # A plain tuple hashes and compares like the FiveTuple key, and is cheaper to build
        # (and typing.cast would be a function call per packet).
        key = (transport[0], source, transport[1])
        allocation = self._by_five_tuple.get(key)  # type: ignore[call-overload]
        return self.send_indication_of(allocation, data, now)

    def send_indication_of(
        self, allocation: Allocation | None, data: bytes, now: float
    ) -> tuple[Address, Address, bytes] | None:
        """:meth:`send_indication_fast` for a Send indication from the client of
        ``allocation`` (None: the source has none), as found in :meth:`clients_on`."""
        if allocation is None:
            self.counters.dropped += 1
            return None
        size = len(data)
        try:
            # The usual layout (stun.SEND_INDICATION_V4_HEAD) read here in one unpack with the
            # length check, as stun.send_indication_parts would read it; anything else takes
            # the length check and the attribute walk. The outcome is the same for every input.
            if size >= 36:
                length, peer_type, peer_len, raw, data_type, n = _send_v4_frame(data, 2)
                usual = (
                    length == size - _HEADER_LENGTH
                    and peer_type == 0x0012
                    and peer_len == 8
                    and data_type == 0x0013
                    and 0 <= size - 36 - n < 4
                )
            else:
                usual = False
            if usual:
                peer = _peer_cache.get(raw) or _xor_peer_v4(raw)
                payload = data[36 : 36 + n]
            else:
                found = _send_indication_other(data, size)
                if found is None:
                    self.counters.dropped += 1
                    return None
                peer, payload = found
                n = len(payload)
        except StunError:  # a malformed XOR-PEER-ADDRESS
            self.counters.dropped += 1
            return None
        host = peer[0]
        perm = allocation.permissions.get(host)
        if perm is None or now >= perm.expires:
            self.counters.dropped += 1
            return None
        if allocation.max_bps and not allocation.within_bandwidth(n, now):
            self.counters.dropped += 1
            return None
        counters = self.counters
        counters.relayed_packets += 1
        counters.relayed_bytes += n
        if allocation.extra_relay is not None:
            return allocation.relay_for(host), peer, payload
        return allocation.relay, peer, payload

    # --- STUN requests --------------------------------------------------------------------------

    def _stun(self, data: bytes, source: Address, transport: Transport, now: float) -> list[Action]:
        ft = FiveTuple.of(source, transport)
        try:
            msg = stun.parse_message(data)
        except StunAttributeError as exc:
            # The framing was sound but a value was not: a request gets 400 (RFC 8489 §6.3.1).
            self.counters.malformed += 1
            cls = stun.split_message_type(data[0] << 8 | data[1])[1]
            if cls != MsgClass.REQUEST:
                return []
            method = stun.split_message_type(data[0] << 8 | data[1])[0]
            request = Message(method, MsgClass.REQUEST, bytes(data[8:20]))
            logger.debug("400 to %s: %s", source, exc)
            return self._error(request, ft, 400, None)
        except StunError:
            self.counters.malformed += 1
            return []
        if msg.cls != MsgClass.REQUEST:
            return []  # responses and other indications are not for a server
        self.counters.stun_requests += 1
        handler = self._handlers.get(msg.method)
        if handler is None:
            return self._error(msg, ft, 400, None)
        try:
            return handler(self, msg, ft, now)
        except _Reject as reject:
            return reject.actions

    def _binding(self, msg: Message, ft: FiveTuple, now: float) -> list[Action]:
        """Binding request (RFC 8489 §6.3.1): XOR-MAPPED-ADDRESS of the source. No auth."""
        unknown = msg.unknown_required()
        if unknown:
            return self._error(msg, ft, 420, None, [(stun.UNKNOWN_ATTRIBUTES, tuple(unknown))])
        return [
            SendToClient(
                ft.transport,
                ft.client,
                self._reply(msg, [(stun.XOR_MAPPED_ADDRESS, ft.client)], None),
            )
        ]

    def _allocate(self, msg: Message, ft: FiveTuple, now: float) -> list[Action]:
        """Allocate request (RFC 8656 §7.2, RFC 6156 §4.2), in the RFC's order of checks."""
        username, key = self._authenticate(msg, ft, now)
        existing = self.allocations.by_five_tuple.get(ft)
        if existing is not None:
            if existing.transaction_id == msg.transaction_id and existing.success:
                return [SendToClient(ft.transport, ft.client, existing.success)]  # retransmit
            return self._error(msg, ft, 437, key)
        if ft in self._pending:
            return []  # a retransmission while the relay socket is being opened
        self._check_unknown(msg, ft, key)
        requested = msg.get(stun.REQUESTED_TRANSPORT)
        if requested is None:
            return self._error(msg, ft, 400, key)
        if requested != UDP_PROTOCOL:
            return self._error(msg, ft, 442, key)
        token = msg.get(stun.RESERVATION_TOKEN)
        even = msg.get(stun.EVEN_PORT)
        family_code = msg.get(stun.REQUESTED_ADDRESS_FAMILY)
        additional = msg.get(stun.ADDITIONAL_ADDRESS_FAMILY)
        if additional is None:
            additional = msg.get(stun.ADDITIONAL_ADDRESS_FAMILY_DRAFT)
        if token is not None and (even is not None or family_code is not None):
            return self._error(msg, ft, 400, key)  # RFC 8656 §7.2 items 4 and 5
        if additional is not None and (
            family_code is not None or token is not None or even is True or additional != 2
        ):
            # RFC 8656 §7.2: dual allocation asks for IPv6 (0x02) on top of the default IPv4,
            # never with REQUESTED-ADDRESS-FAMILY, a reservation or EVEN-PORT's R bit.
            return self._error(msg, ft, 400, key)
        if family_code is not None and family_code not in _FAMILY_CODE:
            return self._error(msg, ft, 440, key)
        family = _FAMILY_CODE.get(family_code or 1, 4)
        quota_name = self.credentials.quota_name(username)
        if not self.allocations.hold(quota_name):  # counted from here on (released on error)
            return self._error(msg, ft, 486, key)
        port: int | None = None
        if token is not None:
            reservation = self.allocations.claim(token, now)
            if reservation is None:
                self.allocations.release(quota_name)
                return self._error(msg, ft, 508, key)
            host, port = reservation.relay
            family = 6 if ":" in host else 4
        else:
            found = self._relay_hosts.get(family)
            if found is None:
                self.allocations.release(quota_name)
                return self._error(msg, ft, 440, key)
            host = found
        lifetime = self._lifetime(msg.get(stun.LIFETIME))
        additional_host = self._relay_hosts.get(6) if additional is not None else None
        dual = "" if additional is None else ("ok" if additional_host else "440")
        self._pending[ft] = _PendingAllocate(msg, username, quota_name, key, family, lifetime, dual)
        return [
            OpenRelay(
                ft,
                host,
                port=port,
                even=even is not None,
                reserve_next=even is True,
                additional_host=additional_host,
            )
        ]

    def _refresh(self, msg: Message, ft: FiveTuple, now: float) -> list[Action]:
        """Refresh request (RFC 8656 §7.3): new lifetime, or delete with LIFETIME 0."""
        username, key = self._authenticate(msg, ft, now)
        allocation = self._allocation_for(msg, ft, username, key)
        self._check_unknown(msg, ft, key)
        family_code = msg.get(stun.REQUESTED_ADDRESS_FAMILY)
        family = _FAMILY_CODE.get(family_code or 0)
        if family_code is not None and (family is None or not allocation.has_family(family)):
            return self._error(msg, ft, 443, key)  # RFC 6156 §4.3, RFC 8656 §7.3
        requested = msg.get(stun.LIFETIME)
        if requested == 0 and family is not None and allocation.extra_relay is not None:
            # RFC 8656 §7.3: LIFETIME 0 with REQUESTED-ADDRESS-FAMILY on a dual allocation
            # deletes that family's relayed address only; the other one lives on.
            dropped = allocation.drop_family(family)
            del self.allocations.by_relay[dropped]
            reply = self._reply(msg, [(stun.LIFETIME, 0)], key)
            return [CloseRelay(dropped), SendToClient(ft.transport, ft.client, reply)]
        if requested == 0:
            self.allocations.remove(allocation)
            reply = self._reply(msg, [(stun.LIFETIME, 0)], key)
            closes: list[Action] = [CloseRelay(relay) for relay in allocation.relays]
            return [*closes, SendToClient(ft.transport, ft.client, reply)]
        lifetime = self._lifetime(requested)
        allocation.expires = now + lifetime
        self.allocations.schedule(allocation)
        reply = self._reply(msg, [(stun.LIFETIME, lifetime)], key)
        return [SendToClient(ft.transport, ft.client, reply)]

    def _create_permission(self, msg: Message, ft: FiveTuple, now: float) -> list[Action]:
        """CreatePermission request (RFC 8656 §10.2): install or refresh one permission per
        XOR-PEER-ADDRESS, all or none."""
        username, key = self._authenticate(msg, ft, now)
        allocation = self._allocation_for(msg, ft, username, key)
        self._check_unknown(msg, ft, key)
        peers = msg.get_all(stun.XOR_PEER_ADDRESS)
        if not peers:
            return self._error(msg, ft, 400, key)
        for host, _port in peers:
            self._check_peer(msg, ft, key, allocation, host)
        new = {host for host, _ in peers if host not in allocation.permissions}
        if len(allocation.permissions) + len(new) > MAX_PERMISSIONS:
            return self._error(msg, ft, 508, key)
        expires = now + self.config.permission_lifetime
        for host, _port in peers:
            self.allocations.schedule(allocation.permit(host, expires), allocation)
        return [SendToClient(ft.transport, ft.client, self._reply(msg, [], key))]

    def _channel_bind(self, msg: Message, ft: FiveTuple, now: float) -> list[Action]:
        """ChannelBind request (RFC 8656 §11.2): bind or refresh channel <-> peer, which also
        installs or refreshes the permission for the peer's IP."""
        username, key = self._authenticate(msg, ft, now)
        allocation = self._allocation_for(msg, ft, username, key)
        self._check_unknown(msg, ft, key)
        number = msg.get(stun.CHANNEL_NUMBER)
        peer = msg.get(stun.XOR_PEER_ADDRESS)
        if number is None or peer is None:
            return self._error(msg, ft, 400, key)
        if not stun.CHANNEL_MIN <= number <= stun.CHANNEL_MAX:
            return self._error(msg, ft, 400, key)
        # A number or peer already bound (or cooling down after expiry) to something else.
        bound = allocation.channels.get(number)
        if bound is not None and bound.peer != peer:
            return self._error(msg, ft, 400, key)
        other = allocation.channel_by_peer.get(peer)
        if other is not None and other.number != number:
            return self._error(msg, ft, 400, key)
        self._check_peer(msg, ft, key, allocation, peer[0])
        if peer[0] not in allocation.permissions and len(allocation.permissions) >= MAX_PERMISSIONS:
            return self._error(msg, ft, 508, key)
        binding = allocation.bind(number, peer, now + self.config.channel_lifetime)
        self.allocations.schedule(binding, allocation)
        perm = allocation.permit(peer[0], now + self.config.permission_lifetime)
        self.allocations.schedule(perm, allocation)
        return [SendToClient(ft.transport, ft.client, self._reply(msg, [], key))]

    _handlers: Final[dict[int, Callable[[TurnServer, Message, FiveTuple, float], list[Action]]]] = {
        Method.BINDING: _binding,
        Method.ALLOCATE: _allocate,
        Method.REFRESH: _refresh,
        Method.CREATE_PERMISSION: _create_permission,
        Method.CHANNEL_BIND: _channel_bind,
    }

    # --- helpers --------------------------------------------------------------------------------

    def _authenticate(self, msg: Message, ft: FiveTuple, now: float) -> tuple[str, bytes]:
        """The long-term credential mechanism (RFC 8489 §9.2.4), checks in the RFC's order.

        Returns ``(username, key)``; otherwise raises :class:`_Reject` with the 400/401/438.
        """
        if stun.MESSAGE_INTEGRITY not in msg:
            raise _Reject(self._challenge(msg, ft, 401, now))
        username = msg.get(stun.USERNAME)
        nonce = msg.get(stun.NONCE)
        if username is None or nonce is None or stun.REALM not in msg:
            raise _Reject(self._error(msg, ft, 400, None))
        # Requests about the allocation this username made may use a REST credential that
        # has expired since (see CredentialStore.keys); a new Allocate may not.
        existing = self.allocations.by_five_tuple.get(ft)
        allocated = (
            msg.method != Method.ALLOCATE and existing is not None and existing.username == username
        )
        for key in self.credentials.keys(username, now, allocated=allocated):
            if msg.check_integrity(key):
                break
        else:
            raise _Reject(self._challenge(msg, ft, 401, now))
        if not self.nonces.valid(nonce, ft.client[0], now):
            raise _Reject(self._challenge(msg, ft, 438, now))
        return username, key

    def _challenge(self, msg: Message, ft: FiveTuple, code: int, now: float) -> list[Action]:
        """401/438 with REALM and a fresh NONCE, unsigned (RFC 8489 §9.2.4)."""
        nonce = self.nonces.issue(ft.client[0], now).value
        first_contact = code == 401 and stun.MESSAGE_INTEGRITY not in msg
        if first_contact:
            self.counters.challenges += 1
        else:
            self.counters.error_responses += 1
        # The same bytes as _error with REALM and NONCE, by a lean encoder: the first contact
        # of every client (and any flood of unauthenticated requests) ends here.
        data = self._encode_challenge(msg.method, msg.transaction_id, code, REASONS[code], nonce)
        return [SendToClient(ft.transport, ft.client, data)]

    def _allocation_for(self, msg: Message, ft: FiveTuple, username: str, key: bytes) -> Allocation:
        """The allocation of ``ft`` (else 437) created by ``username`` (else 441, RFC 8656 §5)."""
        allocation = self.allocations.by_five_tuple.get(ft)
        if allocation is None:
            raise _Reject(self._error(msg, ft, 437, key))
        if allocation.username != username:
            raise _Reject(self._error(msg, ft, 441, key))
        return allocation

    def _check_unknown(self, msg: Message, ft: FiveTuple, key: bytes | None) -> None:
        """420 listing unknown comprehension-required attributes (RFC 8489 §6.3.1.1)."""
        unknown = msg.unknown_required()
        if unknown:
            raise _Reject(
                self._error(msg, ft, 420, key, [(stun.UNKNOWN_ATTRIBUTES, tuple(unknown))])
            )

    def _check_peer(
        self, msg: Message, ft: FiveTuple, key: bytes, allocation: Allocation, host: str
    ) -> None:
        """443 for a peer of the other address family (RFC 6156 §4.4), 403 when the policy
        forbids the peer (RFC 8656 §10.2 / §21.2.3)."""
        if not allocation.has_family(6 if ":" in host else 4):
            raise _Reject(self._error(msg, ft, 443, key))
        if not self.policy.permits(host):
            raise _Reject(self._error(msg, ft, 403, key))

    def _lifetime(self, requested: int | None) -> int:
        """RFC 8656 §7.2/§7.3: min(requested, max), but not below the default lifetime."""
        maximum = self.config.max_allocate_lifetime
        default = min(DEFAULT_LIFETIME, maximum)
        if requested is None:
            return default
        return max(default, min(requested, maximum))

    def _reply(
        self, request: Message, attrs: list[tuple[stun.Attr[Any], Any]], key: bytes | None
    ) -> bytes:
        """The encoded success response to ``request`` (signed with ``key`` if given)."""
        response = Message(request.method, MsgClass.SUCCESS, request.transaction_id)
        for attr, value in attrs:
            response.add(attr, value)
        response.add(stun.SOFTWARE, self._software)
        return response.encode(key, add_fingerprint=self._fingerprint)

    def _error(
        self,
        request: Message,
        ft: FiveTuple,
        code: int,
        key: bytes | None,
        extra: list[tuple[stun.Attr[Any], Any]] | None = None,
        *,
        counted: bool = True,
    ) -> list[Action]:
        """An error response with ERROR-CODE ``code``; signed when the request authenticated.

        ``counted``: whether it counts as an error in the stats (a first 401 challenge does not).
        """
        if counted:
            self.counters.error_responses += 1
        response = Message(request.method, MsgClass.ERROR, request.transaction_id)
        response.add(stun.ERROR_CODE, stun.ErrorCode(code, REASONS[code]))
        for attr, value in extra or ():
            response.add(attr, value)
        response.add(stun.SOFTWARE, self._software)
        data = response.encode(key, add_fingerprint=self._fingerprint)
        return [SendToClient(ft.transport, ft.client, data)]

    # --- introspection --------------------------------------------------------------------------

    def allocation(self, client: Address, transport: Transport) -> Allocation | None:
        """The allocation of ``client`` on ``transport``, if any (for tests and stats)."""
        return self.allocations.by_five_tuple.get(FiveTuple.of(client, transport))

    @property
    def reservations(self) -> dict[bytes, Reservation]:
        """Ports held by EVEN-PORT's R bit, by token."""
        return self.allocations.reservations


__all__ = [
    "Action",
    "CloseRelay",
    "Counters",
    "OpenRelay",
    "SendToClient",
    "SendToPeer",
    "TurnServer",
]
