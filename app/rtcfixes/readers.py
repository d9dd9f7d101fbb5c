"""Readers of private aioice state: pairs, the nominated pair, arrivals (item 3)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aioice.ice import (
    CandidatePair,
    Connection,
)
from aiortc import RTCPeerConnection

from app.rtcfixes.gathering import ice_connections

logger = logging.getLogger(__name__)


def on_inbound(connection: Connection, callback: Callable[[], None]) -> None:
    """Call ``callback`` for every datagram the connection receives (media or STUN).

    aioice reports a dead path only after 30 s of failed consent checks (RFC 7675); watching
    arrivals lets the session notice within a couple of seconds.
    """
    data_received = connection.data_received

    def data_hook(data: bytes, component: int) -> None:
        callback()
        data_received(data, component)

    connection.data_received = data_hook  # type: ignore[method-assign]
    for protocol in connection._protocols:
        datagram_received = protocol.datagram_received

        def stun_hook(data: Any, addr: Any, original: Any = datagram_received) -> None:
            callback()
            original(data, addr)

        protocol.datagram_received = stun_hook  # type: ignore[method-assign]


class SocketTap(Protocol):
    """Sees what passes one aioice socket (see :func:`tap_sockets`)."""

    def sent_stun(self, data: bytes, addr: tuple[str, int]) -> None: ...
    def sent_data(self, data: bytes, addr: tuple[str, int]) -> None: ...
    def received(self, data: Any, addr: tuple[str, int]) -> None: ...


def tap_sockets(connection: Connection, make_tap: Callable[[], SocketTap]) -> None:
    """Give each socket of ``connection`` not tapped yet a tap from ``make_tap`` (call again
    when a local candidate appears: that is when its socket joins the connection)."""
    for protocol in connection._protocols:
        if socket_tap(protocol) is None:
            tap_socket(protocol, make_tap())


def tap_socket(protocol: Any, tap: SocketTap) -> None:
    """Show ``tap`` every STUN message sent, data sent and datagram received on one aioice
    socket (StunProtocol), host and relay alike: aioice has no hook for them, so its
    ``send_stun``, ``send_data`` and ``datagram_received`` are wrapped on the instance."""
    send_stun, send_data = protocol.send_stun, protocol.send_data
    received = protocol.datagram_received

    def tapped_send_stun(message: Any, addr: tuple[str, int]) -> None:
        tap.sent_stun(bytes(message), addr)
        send_stun(message, addr)

    async def tapped_send_data(data: bytes, addr: tuple[str, int]) -> None:
        tap.sent_data(data, addr)
        await send_data(data, addr)

    def tapped_received(data: Any, addr: Any) -> None:
        tap.received(data, (addr[0], addr[1]))
        received(data, addr)

    protocol.send_stun = tapped_send_stun
    protocol.send_data = tapped_send_data
    protocol.datagram_received = tapped_received
    protocol._peercall_tap = tap


def socket_tap(protocol: Any) -> Any:
    """The tap :func:`tap_socket` gave this socket, or None."""
    return getattr(protocol, "_peercall_tap", None)


def on_rtp(pc: RTCPeerConnection, callback: Callable[[], None]) -> None:
    """Call ``callback`` for every RTP packet any receiver of ``pc`` gets (idempotent).

    The session reports "connected" only when media arrives, not merely when DTLS is up, and
    aiortc has no public hook for arriving RTP. Receivers created later (an offer with more
    m-sections than we have tracks) are covered by calling this again.
    """
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if getattr(receiver, "_peercall_rtp_hook", False):
            continue
        handle = receiver._handle_rtp_packet

        async def hook(packet: Any, arrival_time_ms: int, original: Any = handle) -> None:
            callback()
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = hook  # type: ignore[method-assign]
        receiver._peercall_rtp_hook = True  # type: ignore[attr-defined]


def host_addresses() -> frozenset[str]:
    """The machine's addresses as aioice would gather them now (IPv4 and IPv6)."""
    from aioice.ice import get_host_addresses

    return frozenset(get_host_addresses(use_ipv4=True, use_ipv6=True))


def certificates(pc: RTCPeerConnection) -> Any:
    """The DTLS certificates ``pc`` will use (aiortc keeps them private)."""
    return pc._RTCPeerConnection__certificates  # type: ignore[attr-defined]


def use_certificates(pc: RTCPeerConnection, certs: Any) -> None:
    """Make ``pc`` use ``certs``: a renegotiated path keeps the fingerprints (and the SAS).

    aiortc reads them when it creates the DTLS transports, so call this before any
    description is set.
    """
    pc._RTCPeerConnection__certificates = certs  # type: ignore[attr-defined]


def jitter_buffer(receiver: Any) -> Any:
    """The jitter buffer of an RTCRtpReceiver (for stats), or None."""
    return getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)


def candidate_pairs(pc: RTCPeerConnection) -> list[CandidatePair]:
    """All ICE candidate pairs of ``pc`` with their check state (RFC 8445 §6.1.2)."""
    pairs: list[CandidatePair] = []
    for conn in ice_connections(pc):
        pairs.extend(conn._check_list)
    return pairs


def selected_pair(pc: RTCPeerConnection) -> CandidatePair | None:
    """The nominated pair carrying media (component 1), or None."""
    for conn in ice_connections(pc):
        pair = conn._nominated.get(1)
        if pair is not None:
            return pair
    return None


async def close_quietly(pc: RTCPeerConnection) -> None:
    """Close ``pc``, never raising: hang-up must always complete."""
    with contextlib.suppress(Exception):
        await pc.close()
