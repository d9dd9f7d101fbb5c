"""Every workaround for aiortc 1.16 / aioice 0.13 weaknesses, in one place.

The session calls these; nothing else in PeerCall touches aiortc's or aioice's private attributes.

1. Gathering (:func:`install_gathering`). aioice gathers host, server-reflexive and relayed
   candidates in one call that waits up to 5 s per unreachable server, and aiortc's
   ``setLocalDescription`` awaits it, so a dead STUN server delays every call by 5 s per side.
   We replace the connection's gathering: host candidates are ready at once, STUN/TURN queries run
   in the background with a bounded timeout, and each candidate is reported as it arrives so the
   session can trickle it (RFC 8838). When the signaling cannot trickle, the session awaits the
   background queries (bounded) before it builds the SDP. Optionally only loopback host
   candidates are offered, which aioice never does on its own.
2. Audio jitter buffer (:class:`AudioJitterBuffer`). aiortc's buffer waits for a lost packet until
   16 packets have queued up behind it and then stays 16 deep for the rest of the call (one-way
   latency ~80 ms -> ~280 ms after one loss). Ours skips a hole after a short wait and drops
   the oldest frames whenever it is deeper than its target, so latency comes back down.
3. Private-state readers (:func:`candidate_pairs`, :func:`selected_pair`, ...): the pair list
   and the nominated pair are only reachable through aioice internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import (
    CandidatePair,
    Connection,
    StunProtocol,
    TransportPolicy,
    get_host_addresses,
    relayed_candidate,
    server_reflexive_candidate,
)
from aiortc import RTCIceGatherer, RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

logger = logging.getLogger(__name__)

LOOPBACK_ADDRESSES = ("127.0.0.1",)


def ice_gatherers(pc: RTCPeerConnection) -> list[RTCIceGatherer]:
    """The ICE gatherers behind ``pc`` (one with max-bundle)."""
    seen: dict[int, RTCIceGatherer] = {}
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        if dtls is not None:
            gatherer = dtls.transport.iceGatherer
            seen[id(gatherer)] = gatherer
    return list(seen.values())


def ice_connections(pc: RTCPeerConnection) -> list[Connection]:
    """The aioice connections behind ``pc``."""
    return [g._connection for g in ice_gatherers(pc)]


class Gathering:
    """Fast, trickling candidate gathering for one aioice connection.

    ``on_candidate(candidate, server)`` is called for every local candidate as soon as it
    exists; ``server`` is the STUN/TURN URI that produced a srflx/relay candidate.
    ``done`` completes when the background STUN/TURN queries have finished or timed out; its
    result is the tuple of servers that did not answer in time.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        on_candidate: Callable[[Candidate, str | None], None],
        timeout: float,
        loopback_only: bool,
    ) -> None:
        self._conn = connection
        self._on_candidate = on_candidate
        self._timeout = timeout
        self._loopback_only = loopback_only
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[tuple[str, ...]] = loop.create_future()
        # aiortc starts ICE only on a transport that has a local candidate when the descriptions
        # are set; with no host candidate (relay policy) the session must wait for this first.
        self.first: asyncio.Future[None] = loop.create_future()
        self._tasks: list[asyncio.Task[Any]] = []

    def _host_addresses(self) -> list[str]:
        conn = self._conn
        if conn._transport_policy != TransportPolicy.ALL:
            return []  # RFC 9429 §3.5.3: the relay policy offers relayed candidates only
        if self._loopback_only:
            return list(LOOPBACK_ADDRESSES)
        return get_host_addresses(use_ipv4=conn._use_ipv4, use_ipv6=conn._use_ipv6)

    async def gather(self) -> None:
        """Replacement for ``Connection.gather_candidates``: returns once host candidates exist."""
        conn = self._conn
        if conn._local_candidates_start:
            return
        conn._local_candidates_start = True
        loop = asyncio.get_running_loop()
        queries: list[tuple[str, asyncio.Task[Any]]] = []
        for component in sorted(conn._components):
            host_protocols: list[StunProtocol] = []
            for address in self._host_addresses():
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        lambda: StunProtocol(conn), local_addr=(address, 0)
                    )
                except OSError as exc:
                    logger.info("cannot bind a host candidate on %s: %s", address, exc)
                    continue
                host, port = protocol.transport.get_extra_info("sockname")[:2]
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", host),
                    component=component,
                    transport="udp",
                    priority=candidate_priority(component, "host"),
                    host=host,
                    port=port,
                    type="host",
                )
                host_protocols.append(protocol)
                self._add(protocol.local_candidate, protocol, None)
            if conn.stun_server:
                stun_uri = "stun:{}:{}".format(*conn.stun_server)
                for protocol in host_protocols:
                    # aioice queries STUN over IPv4 only; so do we.
                    if ipaddress.ip_address(protocol.local_candidate.host).version == 4:
                        srflx = server_reflexive_candidate(protocol, conn.stun_server)
                        queries.append((stun_uri, asyncio.ensure_future(srflx)))
            if conn.turn_server:
                turn_uri = "turn:{}:{}?transport={}".format(*conn.turn_server, conn.turn_transport)
                relay_task: asyncio.Task[Any] = asyncio.ensure_future(
                    relayed_candidate(
                        component=component,
                        hide_related_address=conn._transport_policy == TransportPolicy.RELAY,
                        protocol_factory=lambda: StunProtocol(conn),
                        turn_server=conn.turn_server,
                        turn_username=conn.turn_username,
                        turn_password=conn.turn_password,
                        turn_ssl=conn.turn_ssl,
                        turn_transport=conn.turn_transport,
                    )
                )
                queries.append((turn_uri, relay_task))
        # aioice refuses connect() until gathering "ended"; host candidates are enough to start
        # checks, and later candidates are paired as they arrive (see _add).
        conn._local_candidates_end = True
        self._tasks = [t for _, t in queries]
        waiter = asyncio.ensure_future(self._finish(queries))
        self._tasks.append(waiter)

    async def _finish(self, queries: list[tuple[str, asyncio.Task[Any]]]) -> None:
        failed: list[str] = []
        pending = {task: uri for uri, task in queries}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while pending:
            done, _ = await asyncio.wait(
                pending, timeout=max(0.0, deadline - loop.time()), return_when="FIRST_COMPLETED"
            )
            if not done:
                break
            for task in done:
                uri = pending.pop(task)
                if task.cancelled() or task.exception() is not None:
                    exc = None if task.cancelled() else task.exception()
                    logger.info("ICE server %s gave no candidate: %r", uri, exc)
                    failed.append(uri)
                    continue
                candidate, relay_protocol = task.result()
                self._add(candidate, relay_protocol, uri)
        for task, uri in pending.items():
            task.cancel()
            failed.append(uri)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if not self.done.done():
            self.done.set_result(tuple(failed))
        if not self.first.done():
            self.first.set_result(None)

    def _add(self, candidate: Candidate, protocol: StunProtocol | None, server: str | None) -> None:
        conn = self._conn
        if conn._closing or conn._closed:
            if protocol is not None and protocol.local_candidate.type == "relay":
                self._tasks.append(asyncio.ensure_future(protocol.close()))
            return
        conn._local_candidates.append(candidate)
        if protocol is not None and protocol not in conn._protocols:
            conn._protocols.append(protocol)
            if protocol.local_candidate.type == "relay" and conn._early_checks_done:
                # connect() already formed its pairs: pair the late candidate and check the new
                # pairs at once (RFC 8838 §10), as aioice's pacing loop may have stopped.
                known = {id(p) for p in conn._check_list}
                for remote in conn._remote_candidates:
                    conn._pair_remote_candidate(remote)
                conn.sort_check_list()
                for pair in conn._check_list:
                    if id(pair) not in known and pair.state == CandidatePair.State.FROZEN:
                        conn.check_start_task(pair)
        if not self.first.done():
            self.first.set_result(None)
        self._on_candidate(candidate, server)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.done.done():
            self.done.set_result(())
        if not self.first.done():
            self.first.set_result(None)


def install_gathering(
    pc: RTCPeerConnection,
    *,
    on_candidate: Callable[[Candidate, str | None], None],
    timeout: float,
    loopback_only: bool,
) -> list[Gathering]:
    """Replace gathering on every ICE connection of ``pc`` (call before setLocalDescription)."""
    gatherings = []
    for conn in ice_connections(pc):
        if conn._local_candidates_start:
            continue
        gathering = Gathering(
            conn, on_candidate=on_candidate, timeout=timeout, loopback_only=loopback_only
        )
        # An instance attribute shadows the method: aiortc's RTCIceGatherer.gather() calls it.
        conn.gather_candidates = gathering.gather  # type: ignore[method-assign]
        gatherings.append(gathering)
    return gatherings


def strip_end_of_candidates(sdp: str) -> str:
    """Remove ``a=end-of-candidates`` (RFC 8840 §4.1) while candidates are still to be trickled.

    aiortc marks gathering complete as soon as our replacement returns with host candidates;
    the peer must not take that as the last word.
    """
    lines = sdp.split("\r\n")
    return "\r\n".join(line for line in lines if line != "a=end-of-candidates")


class AudioJitterBuffer(JitterBuffer):
    """A jitter buffer for single-packet audio frames (Opus) that never ratchets latency up.

    Each packet is one frame, so a frame is ready as soon as it is next in sequence. A missing
    packet is given up on once ``skip_after`` packets are waiting behind it (it is lost, or too
    late to matter). aiortc hands one frame to the decoder per packet received, so frames queued
    behind a hole would otherwise stay queued for the rest of the call: when the backlog never fell
    below ``slack + 1`` frames during the last ``shed_after`` packets, its oldest frame is
    dropped, and more than ``max_depth`` waiting frames are never kept. ``slack`` frames are kept
    on purpose, so steady reordering of neighbours costs nothing. A 20 ms glitch now and then is
    far better than hundreds of milliseconds of extra delay for the rest of the call.
    """

    def __init__(
        self,
        capacity: int = 16,
        skip_after: int = 3,
        max_depth: int = 6,
        shed_after: int = 25,
        slack: int = 1,
    ) -> None:
        super().__init__(capacity=capacity, prefetch=0)
        self._skip_after = skip_after
        self._max_depth = max_depth
        self._shed_after = shed_after
        self._slack = slack
        self._window_len = 0
        self._window_min = capacity
        self.skipped = 0  # holes given up on
        self.dropped = 0  # frames discarded to cut delay

    def _count(self) -> int:
        return sum(1 for p in self._packets if p is not None)

    def _head(self) -> RtpPacket | None:
        assert self._origin is not None
        return self._packets[self._origin % self._capacity]

    def _advance_to_next_present(self) -> None:
        for _ in range(self._capacity):
            if self._head() is not None:
                return
            self.remove(1)

    def _drop_oldest(self) -> None:
        self._advance_to_next_present()
        self.remove(1)
        self.dropped += 1

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._origin is None:
            self._origin = seq
        delta = uint16_add(seq, -self._origin)
        if delta >= 0x8000:  # behind what was already played
            if uint16_add(self._origin, -seq) <= 100:
                return False, None  # a late packet: its moment has passed
            self.remove(self._capacity)  # far behind: the sender restarted its sequence
            self._origin = seq
        elif delta >= self._capacity:
            self.remove(self._capacity)  # far ahead: everything buffered is stale
            self._origin = seq
        self._packets[seq % self._capacity] = packet

        count = self._count()
        if self._head() is None and (count >= self._skip_after or count > self._max_depth):
            self._advance_to_next_present()
            self.skipped += 1
        while count > self._max_depth:
            self._drop_oldest()
            count -= 1
        head = self._head()
        if head is None:
            return False, None
        self.remove(1)
        count -= 1
        self._window_min = min(self._window_min, count)
        self._window_len += 1
        if self._window_len >= self._shed_after:
            if self._window_min > self._slack:
                self._drop_oldest()
            self._window_len, self._window_min = 0, self._capacity
        return False, JitterFrame(data=head._data, timestamp=head.timestamp)  # type: ignore[attr-defined]


def install_audio_jitter_buffers(pc: RTCPeerConnection) -> int:
    """Swap aiortc's audio jitter buffer for :class:`AudioJitterBuffer` on every audio receiver."""
    count = 0
    for transceiver in pc.getTransceivers():
        receiver: RTCRtpReceiver = transceiver.receiver
        if transceiver.kind != "audio":
            continue
        current = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        if not isinstance(current, AudioJitterBuffer):
            receiver._RTCRtpReceiver__jitter_buffer = AudioJitterBuffer()  # type: ignore[attr-defined]
            count += 1
    return count


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
