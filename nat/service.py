"""The asyncio relay service: sockets and timers around the sans-I/O core (:mod:`nat.server`).

This is the public in-process API. The GUI's "Host a relay" and ``peercall relay`` both do::

    async with RelayServer(config) as relay:
        print(relay.turn_uris())
        ...                         # serve until asked to stop

The service owns UDP and TCP listeners (TURN over TCP framed per RFC 8656 §12.5), a TLS
listener when ``cert``/``pkey`` are given, one UDP relay socket per allocation within
``min-port..max-port``, and one timer task driving expiry. It feeds bytes to the core and
performs the actions it returns; no protocol decision is made here. One misbehaving client
costs at most its own connection: frames are bounded, slow TCP readers lose packets instead of
growing memory, idle or stalled TCP/TLS clients are closed after ``max-allocate-timeout``, and
the core never raises.

Speed: UDP sockets are drained on each readiness event (one epoll round trip per burst), and
ChannelData, peer data and bare Binding requests go through the core's lean entry points
(:meth:`TurnServer.channel_data_fast`, :meth:`TurnServer.relay_received_fast`,
:meth:`TurnServer.binding_fast`) that return plain tuples instead of action objects. This works
on asyncio's own loop, on qasync (the GUI) and on uvloop (``peercall relay``'s default). Where
the optional C extension :mod:`nat._mmsg_ext` is built (Linux), a burst is read with one
recvmmsg(2) and what it relays is sent with one sendmmsg(2) per run of datagrams leaving by the
same socket (also for the frames of one TCP/TLS read); ``PEERCALL_NO_MMSG=1`` forces the
per-datagram path (see :mod:`nat._mmsg`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import cast

from nat import _mmsg, stun
from nat.allocation import Allocation
from nat.config import RelayConfig
from nat.errors import ServiceError, StunFormatError
from nat.five_tuple import Address, FiveTuple, Transport
from nat.quota import QuotaLedger
from nat.reservations import ReservationBook
from nat.server import Action, CloseRelay, OpenRelay, SendToClient, SendToPeer, TurnServer

logger = logging.getLogger(__name__)

__all__ = ["Listener", "RelayServer", "RelayStats", "listener_udp_socket", "stream_socket"]

Listener = tuple[str, str, socket.socket]
"""A listening socket bound elsewhere: ``(kind, host, socket)``, kind "udp", "tcp" or "tls"."""

SOCKET_BUFFER = 1 << 20
"""Requested SO_RCVBUF/SO_SNDBUF for UDP sockets (the kernel may cap it): absorbs bursts."""
LISTENER_BUFFER = 8 << 20
"""SO_RCVBUF of the UDP listeners, every client's first stop. A small datagram costs about
830 bytes of buffer on Linux, so this holds a burst of ~20,000 requests (issue 14's flood of
unauthenticated Allocates from 200 ports, which a 1 MiB buffer cut to a quarter). Set with
SO_RCVBUFFORCE when privileged, else capped by net.core.rmem_max. Memory is only used while
datagrams wait."""
STREAM_WRITE_LIMIT = 1 << 20
"""Bytes queued to one TCP/TLS client beyond which relayed packets to it are dropped."""
MAX_STREAMS = 4096
"""Concurrent TCP/TLS client connections; more are refused (bounded memory)."""
TICK_MAX = 1.0
"""Longest sleep of the expiry timer, so deadlines added meanwhile are never late by more."""
_BIND_ATTEMPTS = 20
DRAIN_MAX = 64
"""Datagrams read from one UDP socket per readiness event before other work gets a turn."""
RECV_SIZE = 65535


@dataclass(frozen=True)
class RelayStats:
    """Counters of a running (or stopped) relay."""

    allocations: int
    users: int
    relayed_bytes: int
    relayed_packets: int
    stun_requests: int
    errors: int


def _strerror(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; beyond rmem_max if root


def _udp_socket(
    host: str, port: int, *, receive_buffer: int = SOCKET_BUFFER, reuse_port: bool = False
) -> socket.socket:
    """A bound, non-blocking UDP socket with large buffers (raises OSError)."""
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        if ":" in host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, receive_buffer)
        except OSError:  # not privileged: the kernel caps it at net.core.rmem_max
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _hold(host: str, port: int) -> socket.socket:
    """A socket holding ``port`` for a reservation: SO_REUSEPORT, so whoever claims it can
    bind beside it, and connected to itself, so that it receives nothing meanwhile."""
    sock = _udp_socket(host, port, reuse_port=True)
    try:
        target = host if host not in ("0.0.0.0", "::") else ("::1" if ":" in host else "127.0.0.1")
        sock.connect((target, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listener_udp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A UDP listener socket as the relay binds it (raises OSError)."""
    return _udp_socket(host, port, receive_buffer=LISTENER_BUFFER, reuse_port=reuse_port)


def stream_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound (not yet listening) TCP socket for a TCP/TLS listener (raises OSError)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if ":" in host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _UdpEndpoint:
    """A bound UDP socket, read by its handler's drain.

    Where the loop offers ``add_reader`` (asyncio's selector loop, uvloop, qasync) the drain
    given to :meth:`start` runs on each readiness event and reads up to :data:`DRAIN_MAX`
    datagrams: one epoll round trip per burst instead of per datagram, which is most of a
    relay's CPU in Python. Sending is a plain non-blocking ``sendto``; a full socket buffer
    drops the datagram, as UDP would anyway. Elsewhere (e.g. the Windows proactor loop) it falls
    back to a datagram transport calling ``on_datagram`` per datagram.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_datagram: Callable[[bytes, tuple[str | int, ...]], None],
        name: str,
    ) -> None:
        self.sock = sock
        self.loop = loop
        self.on_datagram = on_datagram
        self.name = name
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = False
        self.reader: Callable[[], None]  # what a readiness event runs (set by start)
        # What the hot paths call to send: the socket's own sendto (raises OSError, counted by
        # the caller through _send_failed), saving a Python call per relayed datagram.
        self.send: Callable[[bytes, Address], object] = sock.sendto
        self.fd = sock.fileno()  # for the batched paths (nat._mmsg)

    async def start(self, reader: Callable[[], None]) -> None:
        """Start reading (raises OSError if the loop cannot watch the socket): ``reader`` on
        each readiness event where the loop offers ``add_reader``, else ``on_datagram`` per
        datagram through a datagram transport."""
        self.reader = reader  # (also what the benchmarks call)
        try:
            self.loop.add_reader(self.sock.fileno(), self.reader)
        except NotImplementedError:
            self.transport, _ = await self.loop.create_datagram_endpoint(
                lambda: _DatagramAdapter(self), sock=self.sock
            )
            self.sendto = self.transport.sendto  # type: ignore[method-assign]
            self.send = self.transport.sendto

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram now, or drop it if the socket buffer is full."""
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:  # unreachable peer, closed socket...
            self.dropped += 1
            logger.debug("udp %s -> %s: %s", self.name, addr, exc)

    def close(self) -> None:
        """Stop reading and close the socket; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            return
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _DatagramAdapter(asyncio.DatagramProtocol):
    """The fallback of :class:`_UdpEndpoint` on loops without ``add_reader``."""

    def __init__(self, endpoint: _UdpEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.endpoint.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("udp %s: %s", self.endpoint.name, exc)


def _received(endpoint: _UdpEndpoint) -> Iterator[tuple[bytes, Address]]:
    """Up to :data:`DRAIN_MAX` datagrams from ``endpoint`` by recvfrom(2), as they come (the
    readers' way without :mod:`nat._mmsg`); a socket error skips that datagram (ICMP errors
    from peers are normal on a relay), a closed socket ends the burst."""
    recvfrom = endpoint.sock.recvfrom
    v4 = endpoint.sock.family == socket.AF_INET  # IPv6 addresses have 4 fields
    for _ in range(DRAIN_MAX):
        try:
            data, addr = recvfrom(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.debug("udp %s: %s", endpoint.name, exc)
            if endpoint.closed:
                return
            continue
        yield data, (addr if v4 else addr[:2])


def _received_batch(endpoint: _UdpEndpoint) -> list[tuple[bytes, Address]]:
    """Up to :data:`DRAIN_MAX` datagrams from ``endpoint`` by one recvmmsg(2) (the readers'
    way with :mod:`nat._mmsg`); a socket error (an ICMP error from a peer, normal on a relay)
    reads nothing this time: the socket is level-triggered, what still waits brings us back."""
    assert _mmsg.recv_batch is not None
    try:
        return _mmsg.recv_batch(endpoint.fd, DRAIN_MAX, RECV_SIZE)
    except OSError as exc:
        logger.debug("udp %s: %s", endpoint.name, exc)
        return []


def _sendto_each(
    senders: dict[Address, Callable[[bytes, Address], object]],
    datagrams: list[tuple[Address, Address, bytes]],
) -> None:
    """Without a batch: each (local socket address, destination, data) sent by that socket's
    sendto(2); a socket gone meanwhile sends nothing."""
    for local, to, data in datagrams:
        send = senders.get(local)
        if send is not None:
            try:
                send(data, to)
            except OSError as exc:
                _send_failed(exc, to)


def _send_failed(exc: OSError, to: Address) -> None:
    """A relayed datagram not sent: a full socket buffer drops it, as UDP would anyway; an
    unreachable peer or a closed socket is normal on a relay."""
    if not isinstance(exc, (BlockingIOError, InterruptedError)):
        logger.debug("udp -> %s: %s", to, exc)


def _batched() -> bool:
    """Whether UDP sockets are drained with recvmmsg/sendmmsg (:mod:`nat._mmsg`)."""
    return None not in (_mmsg.recv_batch, _mmsg.send_batch, _mmsg.send_routed)


class _ClientDatagrams:
    """A UDP listener's traffic: the hot paths (ChannelData, bare Binding) through the core's
    lean entry points, everything else through :meth:`TurnServer.handle` and its actions."""

    def __init__(self, service: RelayServer, key: Transport) -> None:
        self.service = service
        self.key = key
        self.clients = service.core.clients_on(key)
        self.endpoint: _UdpEndpoint | None = None

    def drain(self) -> None:
        """The listener's reader without :mod:`nat._mmsg`: up to :data:`DRAIN_MAX` datagrams
        by recvfrom(2), decided by :meth:`_burst`, each answer sent by sendto(2)."""
        assert self.endpoint is not None
        self._burst(_received(self.endpoint), self._send_each)

    def drain_batched(self) -> None:
        """The listener's reader where :mod:`nat._mmsg` is available: one recvmmsg(2) of up
        to :data:`DRAIN_MAX` datagrams, decided by :meth:`_burst`, and what is to be sent
        sent at the end of the burst, one sendmmsg(2) per run of datagrams leaving by the
        same socket (:func:`nat._mmsg_ext.send_routed`)."""
        assert self.endpoint is not None
        self._burst(_received_batch(self.endpoint), self._flush)

    def _burst(
        self,
        datagrams: Iterable[tuple[bytes, Address]],
        flush: Callable[[list[tuple[Address, Address, bytes]], list[tuple[bytes, Address]]], None],
    ) -> None:
        """One readiness event's datagrams, whichever way they were read: ChannelData, Send
        indications and bare Bindings by the core's lean entry points (one clock read per
        burst; the core still decides), what they send handed to ``flush`` at the end of the
        burst; anything else through :meth:`other`."""
        service = self.service
        channel_data = service.core.channel_data_of
        send_indication = service.core.send_indication_of
        binding = service.core.binding_fast
        clients = self.clients  # the allocations on this listener, by client address
        now = service.clock()
        relayed: list[tuple[Address, Address, bytes]] = []  # (relay, peer, payload), as found
        replies: list[tuple[bytes, Address]] = []  # Binding answers back to clients
        for data, source in datagrams:
            if data and data[0] & 0xC0 == 0x40:
                found = channel_data(clients.get(source), data, now)
            elif len(data) >= stun.HEADER_LENGTH and data[0] == 0 and data[1] == 0x16:
                found = send_indication(clients.get(source), data, now)
            else:
                answer = binding(data, source)  # None unless a bare Binding request
                if answer is not None:
                    replies.append((answer, source))
                    continue
                # The slow path may close relay sockets or send by itself: what was decided
                # before it goes out first.
                flush(relayed, replies)
                relayed = []
                replies = []
                self.other(data, source, now)
                continue
            if found is not None:
                relayed.append(found)
        flush(relayed, replies)

    def _send_each(
        self, relayed: list[tuple[Address, Address, bytes]], replies: list[tuple[bytes, Address]]
    ) -> None:
        """:meth:`_burst`'s sending without :mod:`nat._mmsg`: one sendto(2) per datagram."""
        _sendto_each(self.service.relay_senders, relayed)
        if replies:
            assert self.endpoint is not None
            reply = self.endpoint.send
            for answer, source in replies:
                try:
                    reply(answer, source)
                except OSError as exc:
                    _send_failed(exc, source)

    def _flush(
        self, relayed: list[tuple[Address, Address, bytes]], replies: list[tuple[bytes, Address]]
    ) -> None:
        """:meth:`_burst`'s sending with :mod:`nat._mmsg`: sendmmsg(2) by runs."""
        assert _mmsg.send_routed is not None
        assert _mmsg.send_batch is not None
        assert self.endpoint is not None
        try:
            if relayed:
                _mmsg.send_routed(self.service.relay_fds, relayed)
            if replies:
                _mmsg.send_batch(self.endpoint.fd, replies)
        except OSError as exc:  # not expected: the descriptors are those of open sockets
            logger.warning("udp %s: %s", self.endpoint.name, exc)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """One datagram (loops without ``add_reader``): a burst of one."""
        source: Address = addr if len(addr) == 2 else addr[:2]  # type: ignore[assignment]
        self._burst(((data, source),), self._send_each)

    def other(self, data: bytes, source: Address, now: float) -> None:
        """What the lean entry points do not take: through :meth:`TurnServer.handle` and its
        actions."""
        actions = self.service.core.handle(data, source, self.key, now)
        if actions:
            self.service.perform(actions)


class _PeerDatagrams:
    """A relay socket: datagrams from peers go to the core, tagged with the relay address."""

    def __init__(self, service: RelayServer, relay: Address) -> None:
        self.service = service
        self.relay = relay
        self.endpoint: _UdpEndpoint | None = None

    def drain(self) -> None:
        """The relay socket's reader without :mod:`nat._mmsg`: up to :data:`DRAIN_MAX`
        datagrams by recvfrom(2), decided by :meth:`_burst`, each sent by sendto(2)."""
        assert self.endpoint is not None
        self._burst(_received(self.endpoint), self._send_each)

    def drain_batched(self) -> None:
        """The relay socket's reader where :mod:`nat._mmsg` is available: one recvmmsg(2) of
        up to :data:`DRAIN_MAX` datagrams, decided by :meth:`_burst`, and what goes back to
        UDP clients sent with one sendmmsg(2) per listener (usually one)."""
        assert self.endpoint is not None
        self._burst(_received_batch(self.endpoint), self._send_routed)

    def _burst(
        self,
        datagrams: Iterable[tuple[bytes, Address]],
        flush: Callable[[list[tuple[Address, Address, bytes]]], None],
    ) -> None:
        """One readiness event's datagrams from peers, whichever way they were read (one
        clock read per burst): what goes to UDP clients handed to ``flush`` at the end of the
        burst as (listener, client, message), what goes to TCP/TLS clients written at once."""
        received = self.service.core.relay_received_fast
        relay = self.relay
        now = self.service.clock()
        outgoing: list[tuple[Address, Address, bytes]] = []
        for data, peer in datagrams:
            found = received(relay, data, peer, now)
            if found is None:
                continue
            ft, out = found
            if ft[0] != "udp":  # (FiveTuple fields by index: cheaper on the hot path)
                self.to_stream(ft, out)
                continue
            outgoing.append((ft[2], ft[1], out))
        if outgoing:
            flush(outgoing)

    def _send_each(self, outgoing: list[tuple[Address, Address, bytes]]) -> None:
        """:meth:`_burst`'s sending without :mod:`nat._mmsg`: one sendto(2) per datagram."""
        _sendto_each(self.service.listener_senders, outgoing)

    def _send_routed(self, outgoing: list[tuple[Address, Address, bytes]]) -> None:
        """:meth:`_burst`'s sending with :mod:`nat._mmsg`: sendmmsg(2) per listener."""
        assert _mmsg.send_routed is not None
        try:
            _mmsg.send_routed(self.service.listener_fds, outgoing)
        except OSError as exc:  # not expected: the descriptors are those of open sockets
            assert self.endpoint is not None
            logger.warning("udp %s: %s", self.endpoint.name, exc)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """One datagram (loops without ``add_reader``): a burst of one."""
        peer: Address = addr if len(addr) == 2 else addr[:2]  # type: ignore[assignment]
        self._burst(((data, peer),), self._send_each)

    def to_stream(self, ft: FiveTuple, out: bytes) -> None:
        """What the core made of a peer's datagram, for a TCP/TLS client: onto its stream (UDP
        clients' datagrams are sent by :meth:`_burst`'s flush)."""
        stream = self.service.streams.get(((ft.protocol, ft.server), ft.client))  # type: ignore[arg-type]
        if stream is not None:
            stream.write(out)


_ChannelFrames = Callable[
    [Allocation | None, bytes | bytearray, int, float, list[tuple[Address, Address, bytes]]], int
]


class _ClientStream(asyncio.Protocol):
    """One TCP or TLS client connection: a byte stream cut into STUN / ChannelData frames."""

    def __init__(self, service: RelayServer, key: Transport) -> None:
        self.service = service
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.client: Address = ("", 0)
        self.buffer = bytearray()
        self.idle_since = service.clock()  # last time it had an allocation (or connected)
        self.partial_since: float | None = None  # since when a partial frame waits
        self.allocated = False  # has had an allocation: speaks TURN (see data_received)
        self.clients = service.core.clients_on(key)  # allocations by client, on this listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = (peer[0], peer[1])
        if len(self.service.streams) >= MAX_STREAMS:
            logger.warning("refusing %s: %d connections already", self.client, MAX_STREAMS)
            transport.abort()
            return
        self.service.streams[(self.key, self.client)] = self

    def data_received(self, data: bytes) -> None:
        """Hand every complete frame of the stream to the core; a partial frame at the end is
        kept in ``self.buffer`` for the next read.

        The usual read ends on a frame boundary and finds the buffer empty: its frames are
        read from the transport's bytes themselves, at an offset (no copy into the buffer; a
        frame that is the whole read is not even sliced). From the buffer, the consumed prefix
        is cut once at the end (cutting each frame off the front would move the rest of a
        64 KiB read every time). A run of ChannelData frames goes to the core in one call
        (:meth:`TurnServer.channel_frames`), Send indications by its lean entry point, as over
        UDP. What they relay is sent at the end of the read, or before a request (see
        :meth:`_send`).
        """
        buffer: bytes | bytearray = self.buffer
        if buffer:
            buffer += data  # (self.buffer, extended in place)
        else:
            buffer = data
        service = self.service
        core = service.core
        relayed: list[tuple[Address, Address, bytes]] = []  # (relay, peer, payload), as found
        client, key = self.client, self.key
        frame_length = stun.stream_frame_length
        # (The core reads a bytearray as it reads bytes: typed so here, not by a typing.cast
        # call per read.)
        channel_frames: _ChannelFrames = core.channel_frames  # type: ignore[assignment]
        # One connection is one five-tuple: its allocation is found once per read, and again
        # after a request (an Allocate or a Refresh may change it).
        clients = self.clients
        allocation = clients.get(client)
        if allocation is not None:
            self.allocated = True
        total = len(buffer)
        now = service.clock()
        pos = 0
        try:
            while total - pos >= 4:  # (a frame's length is in its first 4 bytes)
                first = buffer[pos]
                if first & 0xC0 == 0x40:  # ChannelData
                    if not self.allocated:
                        # ChannelData before any allocation: not a TURN client ("GET ..." parses
                        # as channel 0x4745). Close rather than wait for a 20 kB frame.
                        logger.info("closing %s/%s: not speaking TURN", key.protocol, client)
                        core.counters.malformed += 1
                        self.close()
                        return
                    end = channel_frames(allocation, buffer, pos, now, relayed)
                    if end == pos:  # the next frame is not complete yet
                        return
                    pos = end
                    continue
                try:
                    # (Never None here: 4 bytes are there. No typing.cast call per frame.)
                    end = pos + frame_length(buffer, pos)  # type: ignore[operator]
                except StunFormatError as exc:
                    logger.info("closing %s/%s: %s", key.protocol, client, exc)
                    core.counters.malformed += 1
                    self.close()
                    return
                if end > total:
                    return
                frame = bytes(buffer[pos:end])  # (no copy of a bytes read that is one frame)
                pos = end
                if first == 0 and frame[1] == 0x16:
                    found = core.send_indication_of(allocation, frame, now)
                    if found is not None:
                        relayed.append(found)
                    continue
                if relayed:  # the slow path may close relay sockets: send what is due first
                    self._send(relayed)
                    relayed = []
                actions = core.handle(frame, client, key, now)
                if actions:
                    service.perform(actions)
                if self.transport is None or self.transport.is_closing():
                    return
                allocation = clients.get(client)
                if allocation is not None:
                    self.allocated = True
            return
        finally:
            if buffer is self.buffer:
                del buffer[:pos]
            elif pos < total:
                self.buffer += memoryview(buffer)[pos:]
            if relayed:
                self._send(relayed)
            if not self.buffer:
                self.partial_since = None
            elif pos or self.partial_since is None:
                # A new partial frame: the stall clock starts now (trickling bytes do not
                # reset it).
                self.partial_since = service.clock()

    def _send(self, relayed: list[tuple[Address, Address, bytes]]) -> None:
        """Send what a read relays: one sendmmsg(2) per run of datagrams leaving by the same
        relay socket where :mod:`nat._mmsg` is available (one client's frames all leave by its
        allocation's socket; a run of one goes by sendto(2)), else one sendto(2) each."""
        send_routed = _mmsg.send_routed
        if send_routed is None:
            _sendto_each(self.service.relay_senders, relayed)
            return
        try:
            send_routed(self.service.relay_fds, relayed)
        except OSError as exc:  # not expected: the descriptors are those of open sockets
            logger.warning("%s/%s: %s", self.key.protocol, self.client, exc)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > STREAM_WRITE_LIMIT:
            self.service.dropped_to_slow_clients += 1  # like a full UDP buffer: drop
            return
        transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        service = self.service
        if service.streams.get((self.key, self.client)) is self:
            del service.streams[(self.key, self.client)]
            service.perform(service.core.connection_lost(self.client, self.key, service.clock()))
        self.transport = None


class RelayServer:
    """An embedded STUN/TURN relay serving ``config``; start it, use it, stop it.

    ``clock`` returns Unix time (TURN REST usernames carry Unix expiry times); tests may pass
    their own.
    """

    def __init__(
        self,
        config: RelayConfig,
        *,
        clock: Callable[[], float] = time.time,
        listeners: Sequence[Listener] = (),
        ledger: QuotaLedger | None = None,
        reservations: ReservationBook | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.core = TurnServer(config, ledger=ledger, reservations=reservations)
        # Sockets bound for us (a relay worker shares its listening ports with the others);
        # when empty, start() binds the listeners of ``config`` itself.
        self._given = tuple(listeners)
        self.udp_listeners: dict[Transport, _UdpEndpoint] = {}
        self.relays: dict[Address, _UdpEndpoint] = {}
        # The endpoints' raw send callables, by local address (the listeners') and by relay
        # address (the relays, kept in step with that dict), for the hot paths.
        self.listener_senders: dict[Address, Callable[[bytes, Address], object]] = {}
        self.relay_senders: dict[Address, Callable[[bytes, Address], object]] = {}
        # Their descriptors, for the batched paths (nat._mmsg.send_routed); same keys again.
        self.listener_fds: dict[Address, int] = {}
        self.relay_fds: dict[Address, int] = {}
        self.streams: dict[tuple[Transport, Address], _ClientStream] = {}
        self.dropped_to_slow_clients = 0
        self._held: dict[Address, socket.socket] = {}  # ports reserved by EVEN-PORT's R bit
        self._servers: list[tuple[str, asyncio.Server]] = []
        self._addresses: list[tuple[str, str, int]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._started = False
        self._random = random.Random()

    # --- public API -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener; raises :class:`nat.errors.ServiceError` (one line) on failure,
        e.g. ``cannot listen on udp 127.0.0.1:3478: address already in use``."""
        if self._started:
            return
        self._started = True
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise
        self._timer = asyncio.get_running_loop().create_task(self._expiry_timer())
        logger.info("relay listening on %s", ", ".join(self.turn_uris()))

    async def stop(self) -> None:
        """Close allocations, relay sockets, connections and listeners; idempotent."""
        if not self._started:
            return
        self._started = False
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.perform(self.core.close())
        for sock in self._held.values():
            sock.close()
        self._held.clear()
        for _, server in self._servers:
            server.close()
        for stream in list(self.streams.values()):
            if stream.transport is not None:
                stream.transport.abort()
        self.streams.clear()
        for _, server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for relay in self.relays.values():
            relay.close()
        self.relays.clear()
        self.relay_senders.clear()
        self.relay_fds.clear()
        for listener in self.udp_listeners.values():
            listener.close()
        self.udp_listeners.clear()
        self.listener_senders.clear()
        self.listener_fds.clear()
        self._addresses.clear()
        # Let the transports' close callbacks run so their sockets are really closed now.
        for _ in range(3):
            await asyncio.sleep(0)

    async def __aenter__(self) -> RelayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        """``(transport, host, port)`` of every listener actually bound ("udp"|"tcp"|"tls")."""
        return list(self._addresses)

    def stats(self) -> RelayStats:
        """The counters so far."""
        counters = self.core.counters
        return RelayStats(
            allocations=len(self.core.allocations.by_five_tuple),
            users=self.core.allocations.users,
            relayed_bytes=counters.relayed_bytes,
            relayed_packets=counters.relayed_packets,
            stun_requests=counters.stun_requests,
            errors=counters.error_responses + counters.malformed + counters.internal_errors,
        )

    def turn_uris(self) -> list[str]:
        """TURN URIs (RFC 7065) of the bound listeners: ``turn:127.0.0.1:3478?transport=udp``..."""
        uris = []
        for kind, host, port in self._addresses:
            where = _hostport(host, port)
            if kind == "tls":
                uris.append(f"turns:{where}?transport=tcp")
            else:
                uris.append(f"turn:{where}?transport={kind}")
        return uris

    # --- listeners ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        config = self.config
        if self._given:
            context = self._tls_context() if config.tls_enabled else None
            for kind, host, sock in self._given:
                if kind == "udp":
                    await self._serve_udp(host, sock)
                else:
                    await self._serve_stream(kind, host, sock, context if kind == "tls" else None)
            return
        port = config.listening_port
        attempts = _BIND_ATTEMPTS if port == 0 else 1
        for attempt in range(attempts):
            try:
                await self._listen_plain(port)
                break
            except ServiceError as exc:
                # An ephemeral UDP port whose TCP twin is taken: try another number.
                retry = port == 0 and attempt + 1 < attempts and exc.__cause__ is not None
                if not retry or getattr(exc.__cause__, "errno", None) != errno.EADDRINUSE:
                    raise
                await self._close_listeners()
        if config.tls_enabled:
            await self._listen_tls()

    async def _listen_plain(self, port: int) -> None:
        config = self.config
        for host in config.listening_ips:
            if not config.no_udp:
                try:
                    sock = listener_udp_socket(host, port)
                except OSError as exc:
                    raise ServiceError(
                        f"cannot listen on udp {_hostport(host, port)}: {_strerror(exc)}"
                    ) from exc
                port = port or sock.getsockname()[1]
                await self._serve_udp(host, sock)
            if not config.no_tcp:
                await self._listen_stream("tcp", host, port, None)
                port = port or self._addresses[-1][2]

    def _tls_context(self) -> ssl.SSLContext:
        config = self.config
        assert config.cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(config.cert, config.pkey)
        except (OSError, ssl.SSLError) as exc:
            reason = _strerror(exc) if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ServiceError(f"cannot load TLS certificate {config.cert}: {reason}") from exc
        return context

    async def _listen_tls(self) -> None:
        context = self._tls_context()
        for host in self.config.listening_ips:
            await self._listen_stream("tls", host, self.config.tls_listening_port, context)

    async def _listen_stream(
        self, kind: str, host: str, port: int, context: ssl.SSLContext | None
    ) -> None:
        try:
            sock = stream_socket(host, port)
        except OSError as exc:
            raise ServiceError(
                f"cannot listen on {kind} {_hostport(host, port)}: {_strerror(exc)}"
            ) from exc
        await self._serve_stream(kind, host, sock, context)

    async def _serve_udp(self, host: str, sock: socket.socket) -> None:
        """Serve clients on the bound UDP listener ``sock`` (closed on failure)."""
        bound = sock.getsockname()[1]
        key = Transport("udp", (host, bound))
        handler = _ClientDatagrams(self, key)
        endpoint = _UdpEndpoint(
            asyncio.get_running_loop(), sock, handler.datagram_received, f"{host}:{bound}"
        )
        handler.endpoint = endpoint
        try:
            await endpoint.start(handler.drain_batched if _batched() else handler.drain)
        except BaseException:
            endpoint.close()
            raise
        self.udp_listeners[key] = endpoint
        self.listener_senders[key.local] = endpoint.send
        self.listener_fds[key.local] = endpoint.fd
        self._addresses.append(("udp", host, bound))

    async def _serve_stream(
        self, kind: str, host: str, sock: socket.socket, context: ssl.SSLContext | None
    ) -> None:
        """Accept TCP/TLS clients on the bound socket ``sock``."""
        bound = sock.getsockname()[1]
        key = Transport(kind, (host, bound))
        server = await asyncio.get_running_loop().create_server(
            lambda: _ClientStream(self, key), sock=sock, ssl=context, backlog=256
        )
        self._servers.append((kind, server))
        self._addresses.append((kind, host, bound))

    async def _close_listeners(self) -> None:
        for listener in self.udp_listeners.values():
            listener.close()
        self.udp_listeners.clear()
        self.listener_senders.clear()
        self.listener_fds.clear()
        for _, server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()
        self._addresses.clear()
        await asyncio.sleep(0)

    # --- actions --------------------------------------------------------------------------------

    def perform(self, actions: list[Action]) -> None:
        """Carry out what the core asked for."""
        for action in actions:
            if type(action) is SendToPeer:
                relay = self.relays.get(action.relay)
                if relay is not None:
                    relay.sendto(action.data, action.peer)
            elif type(action) is SendToClient:
                if action.transport.protocol == "udp":
                    listener = self.udp_listeners.get(action.transport)
                    if listener is not None:
                        listener.sendto(action.data, action.client)
                else:
                    stream = self.streams.get((action.transport, action.client))
                    if stream is not None:
                        stream.write(action.data)
            elif type(action) is OpenRelay:
                task = asyncio.get_running_loop().create_task(self._open_relay(action))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif type(action) is CloseRelay:
                relay = self.relays.pop(action.relay, None)
                self.relay_senders.pop(action.relay, None)
                self.relay_fds.pop(action.relay, None)
                if relay is not None:
                    relay.close()
                held = self._held.pop(action.relay, None)
                if held is not None:
                    held.close()

    async def _open_relay(self, action: OpenRelay) -> None:
        """Bind the relay socket(s) for an Allocate and report the outcome to the core."""
        try:
            sock, reserved = self._bind_relay(action)
        except OSError as exc:
            logger.warning("no relay port for %s: %s", action.five_tuple.client, exc)
            self.perform(self.core.relay_failed(action.five_tuple, self.clock()))
            return
        try:
            relay = await self._serve_relay(sock)
        except BaseException:
            if reserved is not None:
                reserved.close()
            raise
        reserved_address: Address | None = None
        if reserved is not None:
            reserved_address = reserved.getsockname()[:2]
            self._held[reserved_address] = reserved
        additional: Address | None = None
        if action.additional_host is not None:  # the IPv6 half of a dual allocation
            try:
                extra = self._bind_relay(OpenRelay(action.five_tuple, action.additional_host))[0]
            except OSError as exc:
                logger.warning("no IPv6 relay port for %s: %s", action.five_tuple.client, exc)
            else:
                additional = await self._serve_relay(extra)
        reached = self._reached(action.five_tuple) if relay[0] in ("0.0.0.0", "::") else None
        self.perform(
            self.core.relay_opened(
                action.five_tuple,
                relay,
                reserved_address,
                self.clock(),
                reached=reached,
                additional=additional,
            )
        )

    async def _serve_relay(self, sock: socket.socket) -> Address:
        """Register the bound relay socket ``sock`` (closed on failure); its address."""
        relay: Address = sock.getsockname()[:2]
        try:
            handler = _PeerDatagrams(self, relay)
            endpoint = _UdpEndpoint(
                asyncio.get_running_loop(), sock, handler.datagram_received, _hostport(*relay)
            )
            handler.endpoint = endpoint
            await endpoint.start(handler.drain_batched if _batched() else handler.drain)
        except BaseException:
            sock.close()
            raise
        self.relays[relay] = endpoint
        self.relay_senders[relay] = endpoint.send
        self.relay_fds[relay] = endpoint.fd
        return relay

    def _reached(self, ft: FiveTuple) -> str | None:
        """The local address ``ft``'s client talks to: the connection's own address for
        TCP/TLS, the listener's if it is specific, else the one the kernel routes to the
        client from (a connected UDP socket sends nothing)."""
        if ft.protocol != "udp":
            stream = self.streams.get((ft.transport, ft.client))
            if stream is not None and stream.transport is not None:
                local = stream.transport.get_extra_info("sockname")
                if local:
                    return str(local[0])
        if ft.server[0] not in ("0.0.0.0", "::"):
            return ft.server[0]
        try:
            with socket.socket(_family(ft.client[0]), socket.SOCK_DGRAM) as probe:
                probe.connect(ft.client)
                return str(probe.getsockname()[0])
        except OSError:
            return None

    def _bind_relay(self, action: OpenRelay) -> tuple[socket.socket, socket.socket | None]:
        """A UDP socket on ``action.host`` in min-port..max-port (even, and with port + 1 held,
        when EVEN-PORT asks), or on the port held for a RESERVATION-TOKEN. Raises OSError.

        A held port's socket shares it (SO_REUSEPORT) but is connected to itself, so it takes
        no peer datagrams; the claimer binds beside it, here or in another relay worker (see
        :mod:`nat.reservations`), and the holder's socket is closed once claimed or expired.
        """
        host = action.host
        if action.port is not None:
            sock = _udp_socket(host, action.port, reuse_port=True)
            held = self._held.pop((host, action.port), None)
            if held is not None:
                held.close()
            return sock, None
        low, high = self.config.min_port, self.config.max_port
        span = high - low + 1
        start = self._random.randrange(span)
        for i in range(span):
            port = low + (start + i) % span
            if (
                (action.even and port % 2)
                or (host, port) in self.relays
                or (host, port) in self._held
            ):
                continue
            try:
                sock = _udp_socket(host, port)
            except OSError:
                continue
            if not action.reserve_next:
                return sock, None
            if port + 1 > high:
                sock.close()
                continue
            try:
                return sock, _hold(host, port + 1)
            except OSError:
                sock.close()
        raise OSError(errno.EADDRINUSE, f"no free port in {low}-{high} on {host}")

    # --- timers ---------------------------------------------------------------------------------

    async def _expiry_timer(self) -> None:
        """Call the core's tick at its deadlines (checking at least every TICK_MAX seconds)."""
        while True:
            deadline = self.core.next_deadline()
            delay = TICK_MAX if deadline is None else min(TICK_MAX, deadline - self.clock())
            await asyncio.sleep(max(0.0, delay))
            now = self.clock()
            self.perform(self.core.tick(now))
            self._close_idle_streams(now)

    def _close_idle_streams(self, now: float) -> None:
        """``max-allocate-timeout`` for TCP/TLS (as coturn): close a connection that has had no
        allocation, or has sat in the middle of a message, for that long. Bounds what clients
        that connect and never speak (or stall) can hold; MAX_STREAMS caps how many."""
        timeout = self.config.max_allocate_timeout
        core = self.core
        for stream in list(self.streams.values()):
            if stream.partial_since is not None and now - stream.partial_since >= timeout:
                reason = "stalled in the middle of a message"
            elif core.allocation(stream.client, stream.key) is not None:
                stream.idle_since = now
                continue
            elif now - stream.idle_since >= timeout:
                reason = "no allocation"
            else:
                continue
            logger.info(
                "closing %s/%s: %s for %d s", stream.key.protocol, stream.client, reason, timeout
            )
            stream.close()
