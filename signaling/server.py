"""The WebSocket signaling server: rooms of two peers relaying offers, answers and candidates.

Runs in-process (the desktop app hosts one; ``async with SignalingServer() as server``) or
standalone (``peercall signal``). The wire format is :mod:`signaling.ws_protocol`, documented
in ``docs/signaling-protocol.md``. What it guarantees:

- a room holds two peers; the first joiner sets the room secret, later joiners must present
  it (compared in constant time); a third peer is refused with ``room-full``;
- relays are forwarded as they arrive and kept in the recipient's queue until the recipient
  acknowledges them, so a message sent while the peer is reconnecting reaches it when it
  resumes (with its session token, within ``resume_grace`` seconds);
- every bad frame is answered with an ``error`` frame naming the problem; the connection
  stays open (only a frame above websockets' hard limit, 4 x ``max_message_bytes``, closes
  it, with code 1009), and one client can never stop the server serving the others;
- dead connections are found by WebSocket keepalive pings (RFC 6455 §5.5.2) and silent ones
  by an idle timeout; clients send an application ``ping`` every ``heartbeat`` seconds;
- with a TURN shared secret, each peer gets short-lived TURN REST credentials on join.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import http
import logging
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from nat.auth import rest_credentials
from signaling import web
from signaling.base import Service
from signaling.errors import SignalingError
from signaling.ws_protocol import (
    ROOM_RE,
    Ack,
    ClientFrame,
    Deliver,
    Delivered,
    ErrorCode,
    ErrorFrame,
    FrameError,
    IceServer,
    IceServers,
    IceServersRequest,
    Join,
    Joined,
    Leave,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Relay,
    ServerFrame,
    encode_frame,
    parse_client_frame,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES: Final = 128 * 1024  # an offer's SDP (64 KiB max) once JSON-escaped
DEFAULT_IDLE_TIMEOUT: Final = 60.0
DEFAULT_PING_INTERVAL: Final = 20.0
DEFAULT_RESUME_GRACE: Final = 30.0
DEFAULT_TURN_TTL: Final = 3600.0
DEFAULT_MAX_QUEUE: Final = 256
# A call's signaling is a handful of frames (join, offer/answer, tens of candidates, acks,
# a ping every 20 s); 50 frames/s sustained with bursts of 200 never touches it, while a
# client in a send loop is cut off within a second.
DEFAULT_RATE_LIMIT: Final = 50.0
DEFAULT_RATE_BURST: Final = 200
# Enough for an office or a family behind one NAT address; a bench on loopback raises it.
DEFAULT_MAX_CONNECTIONS_PER_IP: Final = 100
HARD_LIMIT_FACTOR: Final = 4


@dataclass(eq=False)
class _Queued:
    """One relay waiting for the recipient's ack; ``text`` is the encoded ``relay`` frame."""

    sender: str
    seq: int
    text: str


@dataclass(eq=False)
class _Slot:
    """A peer's place in a room; outlives its connection for ``resume_grace`` seconds."""

    peer: str
    name: str
    session: str
    conn: _Conn | None = None
    inbox: deque[_Queued] = field(default_factory=deque)  # relays for this peer, not yet acked
    last_in: int = 0  # highest relay seq accepted from this peer (duplicates are dropped)
    acked_by_peer: int = 0  # highest of this peer's seqs the other peer has acked
    expiry: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Room:
    name: str
    secret: bytes
    slots: list[_Slot] = field(default_factory=list)
    # Relays sent while nobody else is in the room, handed to the next peer who joins.
    orphans: deque[_Queued] = field(default_factory=deque)

    def other(self, slot: _Slot) -> _Slot | None:
        return next((s for s in self.slots if s is not slot), None)


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    room: _Room | None = None
    slot: _Slot | None = None
    tokens: float = 0.0  # rate limit: a token bucket, one token per frame
    stamp: float = 0.0  # time.monotonic() of the last refill


def _address(ws: ServerConnection) -> str:
    """The peer's IP address (what the per-address connection cap counts)."""
    remote = ws.remote_address
    return str(remote[0]) if remote else "?"


def _too_many(cap: int) -> str:
    return f"at most {cap} connections per address; closing"


@dataclass
class ServerStats:
    """Counters for logs and benchmarks."""

    connections: int = 0
    rooms: int = 0
    relayed: int = 0
    errors: int = 0


class SignalingServer(Service):
    """The signaling server; ``await start()`` binds it, ``.url`` says where it listens."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        turn_secret: str | None = None,
        turn_uris: Iterable[str] = (),
        turn_ttl: float = DEFAULT_TURN_TTL,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = None,
        resume_grace: float = DEFAULT_RESUME_GRACE,
        join_timeout: float | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        rate_limit: float | None = DEFAULT_RATE_LIMIT,
        rate_burst: int = DEFAULT_RATE_BURST,
        max_connections_per_ip: int | None = DEFAULT_MAX_CONNECTIONS_PER_IP,
        clock: Callable[[], float] = time.time,
        ssl_context: ssl.SSLContext | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
    ) -> None:
        if (cert is None) != (key is None):
            raise SignalingError("TLS needs both a certificate file and its key file")
        if cert is not None and key is not None:
            if ssl_context is not None:
                raise SignalingError("give either an SSL context or certificate/key files")
            from signaling.tls import server_context  # cryptography: ~9 MiB, only for TLS

            ssl_context = server_context(cert, key)
        self.ssl_context = ssl_context
        self.turn_uris = tuple(turn_uris)
        for uri in self.turn_uris:
            if not uri.lower().startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise SignalingError(f"ICE server URI {uri!r} must start with stun:, turn: ...")
            if uri.lower().startswith("turn") and not turn_secret:
                raise SignalingError(f"TURN URI {uri!r} needs a TURN shared secret")
        if turn_ttl <= 0:
            raise SignalingError(f"TURN credential lifetime must be positive, got {turn_ttl:g}")
        if max_message_bytes < 1024:
            raise SignalingError(f"max message size must be at least 1024, got {max_message_bytes}")
        if idle_timeout <= 0:
            raise SignalingError(f"idle timeout must be positive, got {idle_timeout:g}")
        if rate_limit is not None and rate_limit <= 0:
            raise SignalingError(f"rate limit must be positive, got {rate_limit:g}")
        if rate_burst < 1:
            raise SignalingError(f"rate burst must be at least 1, got {rate_burst}")
        if max_connections_per_ip is not None and max_connections_per_ip < 1:
            raise SignalingError(
                f"connections per address must be at least 1, got {max_connections_per_ip}"
            )
        if resume_grace < 0:
            raise SignalingError(f"resume grace must not be negative, got {resume_grace:g}")
        self.host = host
        self.port = port
        self.turn_secret = turn_secret
        self.turn_ttl = turn_ttl
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.heartbeat = idle_timeout / 3
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout if ping_timeout is not None else ping_interval
        self.resume_grace = resume_grace
        self.join_timeout = join_timeout if join_timeout is not None else min(10.0, idle_timeout)
        self.max_queue = max_queue
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.max_connections_per_ip = max_connections_per_ip
        self.clock = clock
        self._per_ip: dict[str, int] = {}
        self.stats = ServerStats()
        self._rooms: dict[str, _Room] = {}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved: dict[str, bytes] = {}

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; raises :class:`SignalingError` if the port is taken."""
        if self._server is not None:
            return
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                max_size=self.max_message_bytes * HARD_LIMIT_FACTOR,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                compression=None,  # SDP compresses poorly; deflate costs ~100 KiB per client
                process_request=self._process_request,
                server_header=None,
                ssl=self.ssl_context,
            )
        except OSError as exc:
            reason = (
                "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
            )
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("signaling server listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection (code 1001, clients will reconnect) and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        for room in self._rooms.values():
            for slot in room.slots:
                if slot.expiry is not None:
                    slot.expiry.cancel()
        self._rooms.clear()
        self.stats.rooms = 0

    @property
    def url(self) -> str:
        """``ws://host:port``, or ``wss://`` with TLS (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "ws" if self.ssl_context is None else "wss"
        return f"{scheme}://{host}:{self.port}"

    def room_count(self) -> int:
        return len(self._rooms)

    def reserve_room(self, room: str, secret: str) -> None:
        """Fix ``room``'s secret in advance (an advertised room), instead of its first joiner."""
        if not ROOM_RE.fullmatch(room):
            raise SignalingError(f"room {room!r} must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
        if not secret:
            raise SignalingError("a reserved room needs a non-empty secret")
        self._reserved[room] = secret.encode()

    # --- connections --------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """``GET /healthz`` answers 200 for monitoring; other plain GETs get the call page
        (:mod:`signaling.web`); WebSocket upgrades go on to the signaling protocol.

        An address already holding ``max_connections_per_ip`` connections gets HTTP 429 (RFC
        6585 §4) before the upgrade, which costs the server nothing.
        """
        if request.path == "/healthz":
            return Response(http.HTTPStatus.OK, "OK", Headers(), b"ok\n")
        if (page := web.serve_static(request)) is not None:
            return page
        cap = self.max_connections_per_ip
        if cap is not None and self._per_ip.get(_address(conn), 0) >= cap:
            self.stats.errors += 1
            logger.warning("refused %s: %d connections from it already", _address(conn), cap)
            return Response(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                "Too Many Requests",
                Headers([("Retry-After", "10")]),
                f"at most {cap} connections per address\n".encode(),
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = _Conn(ws, tokens=float(self.rate_burst), stamp=time.monotonic())
        self.stats.connections += 1
        address = _address(ws)
        self._per_ip[address] = count = self._per_ip.get(address, 0) + 1
        try:
            cap = self.max_connections_per_ip
            if cap is not None and count > cap:  # handshakes that raced past _process_request
                self._send(conn, ErrorFrame(ErrorCode.TOO_MANY_CONNECTIONS, _too_many(cap), True))
                await ws.close(1008, "too many connections")
                return
            while True:
                timeout = self.idle_timeout if conn.slot is not None else self.join_timeout
                try:
                    async with asyncio.timeout(timeout):
                        raw = await ws.recv(decode=False)
                except TimeoutError:
                    what = "frame" if conn.slot is not None else "join"
                    self._send(
                        conn,
                        ErrorFrame(
                            ErrorCode.IDLE_TIMEOUT,
                            f"no {what} for {timeout:g} seconds; closing",
                            fatal=True,
                        ),
                    )
                    await ws.close(1008, "idle timeout")
                    return
                if self.rate_limit is not None and not self._take_token(conn):
                    await self._rate_limited(conn)
                    return
                if self._on_frame(conn, raw):
                    await ws.close(1000, "left")
                    return
        except ConnectionClosed:
            pass
        except Exception:  # a bug here must not take the server down with it
            logger.exception("signaling connection failed")
            await ws.close(1011, "internal error")
        finally:
            self.stats.connections -= 1
            left = self._per_ip[address] - 1
            if left:
                self._per_ip[address] = left
            else:
                del self._per_ip[address]
            self._on_disconnect(conn)

    def _take_token(self, conn: _Conn) -> bool:
        """Token bucket: ``rate_limit`` frames/s sustained, ``rate_burst`` at once."""
        assert self.rate_limit is not None
        now = time.monotonic()
        conn.tokens = min(
            float(self.rate_burst), conn.tokens + (now - conn.stamp) * self.rate_limit
        )
        conn.stamp = now
        if conn.tokens < 1.0:
            return False
        conn.tokens -= 1.0
        return True

    async def _rate_limited(self, conn: _Conn) -> None:
        """Tell a flooding client why, then close: it must not slow the other rooms down."""
        self.stats.errors += 1
        logger.warning("closing %s: over the rate limit", _address(conn.ws))
        message = f"more than {self.rate_limit:g} frames/s (bursts of {self.rate_burst}); closing"
        self._send(conn, ErrorFrame(ErrorCode.RATE_LIMITED, message, fatal=True))
        # Keep reading (and discarding) while closing: a flooder's frames fill websockets'
        # incoming queue, which pauses reading, and the client's close frame would sit behind
        # them until close_timeout. websockets aborts the TCP link if the close stalls anyway.
        closing = asyncio.create_task(conn.ws.close(1008, "rate limit"))
        with contextlib.suppress(ConnectionClosed):
            while True:
                await conn.ws.recv(decode=False)
        await closing

    def _send(self, conn: _Conn, frame: ServerFrame) -> None:
        self._send_text(conn, encode_frame(frame))

    @staticmethod
    def _send_text(conn: _Conn, text: str) -> None:
        # broadcast() writes without awaiting: a slow client cannot stall the sender's
        # handler; its unacked relays stay queued and keepalive pings drop it if it hangs.
        broadcast((conn.ws,), text)

    def _error(self, conn: _Conn, code: str, message: str, seq: int | None = None) -> None:
        self.stats.errors += 1
        logger.debug("error to %s: %s (%s)", conn.ws.remote_address, message, code)
        self._send(conn, ErrorFrame(code, message, seq=seq))

    def _on_frame(self, conn: _Conn, raw: bytes) -> bool:
        """Handle one frame; True when the connection should now close (``leave``)."""
        if len(raw) > self.max_message_bytes:
            self._error(
                conn,
                ErrorCode.TOO_BIG,
                f"frame of {len(raw)} bytes exceeds the limit of {self.max_message_bytes} bytes",
            )
            return False
        try:
            frame: ClientFrame = parse_client_frame(raw)
        except FrameError as exc:
            self._error(conn, exc.code, str(exc), exc.seq)
            return False
        if isinstance(frame, Join):
            if conn.slot is not None:
                self._error(conn, ErrorCode.ALREADY_JOINED, "already joined a room on this link")
            else:
                self._join(conn, frame)
            return False
        slot, room = conn.slot, conn.room
        if slot is None or room is None:
            what = "relay" if isinstance(frame, Relay) else type(frame).__name__.lower()
            self._error(conn, ErrorCode.NOT_JOINED, f"{what} before join: join a room first")
            return False
        match frame:
            case Relay():
                self._relay(conn, room, slot, frame)
            case Ack():
                self._ack(room, slot, frame)
            case Ping():
                self._send(conn, Pong())
            case IceServersRequest():
                self._send(conn, IceServers(self._ice_servers(slot)))
            case Leave():
                self._leave(room, slot)
                conn.slot = conn.room = None
                return True
        return False

    # --- rooms --------------------------------------------------------------------------

    def _join(self, conn: _Conn, join: Join) -> None:
        secret = join.secret.encode()
        room = self._rooms.get(join.room)
        if room is None and join.room in self._reserved:
            room = self._rooms[join.room] = _Room(join.room, self._reserved[join.room])
        if room is not None and not hmac.compare_digest(room.secret, secret):
            self._error(conn, ErrorCode.WRONG_SECRET, "wrong room secret")
            return
        slot: _Slot | None = None
        if room is not None and join.session is not None:
            for candidate in room.slots:
                if candidate.peer == join.peer and hmac.compare_digest(
                    candidate.session.encode(), join.session.encode()
                ):
                    slot = candidate
        resumed = slot is not None
        if slot is None:
            if room is not None and len(room.slots) >= 2:
                self._error(conn, ErrorCode.ROOM_FULL, "room is full")
                return
            if room is None:
                room = self._rooms[join.room] = _Room(join.room, secret)
                self.stats.rooms = len(self._rooms)
            slot = _Slot(join.peer, join.name, secrets.token_urlsafe(18))
            slot.inbox, room.orphans = room.orphans, deque()
            room.slots.append(slot)
        else:
            assert room is not None
            if slot.expiry is not None:
                slot.expiry.cancel()
                slot.expiry = None
            if slot.conn is not None:  # the old link is half-dead; the new one wins
                old = slot.conn
                old.slot = old.room = None
                self._send(
                    old, ErrorFrame(ErrorCode.REPLACED, "replaced by a newer connection", True)
                )
                task = asyncio.create_task(old.ws.close(4000, "replaced"))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            slot.name = join.name or slot.name
        conn.room, conn.slot, slot.conn = room, slot, conn
        other = room.other(slot)
        peers = () if other is None else (PeerInfo(other.peer, other.name, other.conn is not None),)
        self._send(
            conn,
            Joined(
                room=room.name,
                session=slot.session,
                resumed=resumed,
                peers=peers,
                acked=slot.acked_by_peer,
                ice_servers=self._ice_servers(slot),
                max_message_bytes=self.max_message_bytes,
                heartbeat=self.heartbeat,
            ),
        )
        logger.info(
            "%s %s room %s", slot.name or slot.peer, "resumed" if resumed else "joined", room.name
        )
        if other is not None and other.conn is not None:
            self._send(other.conn, PeerJoined(slot.peer, slot.name, resumed))
        for queued in slot.inbox:  # what arrived while this peer was away, in order
            self._send_text(conn, queued.text)

    def _relay(self, conn: _Conn, room: _Room, slot: _Slot, relay: Relay) -> None:
        if relay.seq <= slot.last_in:
            return  # a re-send after reconnecting: we have it already
        if slot.last_in and relay.seq != slot.last_in + 1:
            self._error(
                conn,
                ErrorCode.OUT_OF_ORDER,
                f"relay seq {relay.seq} out of order (expected {slot.last_in + 1})",
                relay.seq,
            )
            return
        other = room.other(slot)
        queue = other.inbox if other is not None else room.orphans
        if len(queue) >= self.max_queue:
            self._error(
                conn,
                ErrorCode.QUEUE_FULL,
                f"peer has {len(queue)} unacknowledged messages; retry later",
                relay.seq,
            )
            return
        slot.last_in = relay.seq
        queued = _Queued(
            slot.peer, relay.seq, encode_frame(Deliver(slot.peer, relay.seq, relay.data))
        )
        queue.append(queued)
        self.stats.relayed += 1
        if other is not None and other.conn is not None:
            self._send_text(other.conn, queued.text)

    def _ack(self, room: _Room, slot: _Slot, ack: Ack) -> None:
        if any(q.sender == ack.sender and q.seq <= ack.seq for q in slot.inbox):
            slot.inbox = deque(
                q for q in slot.inbox if not (q.sender == ack.sender and q.seq <= ack.seq)
            )
        other = room.other(slot)
        if other is not None and other.peer == ack.sender:
            seq = min(ack.seq, other.last_in) if other.last_in else ack.seq
            if seq > other.acked_by_peer:
                other.acked_by_peer = seq
                if other.conn is not None:
                    self._send(other.conn, Delivered(seq))

    def _on_disconnect(self, conn: _Conn) -> None:
        slot, room = conn.slot, conn.room
        if slot is None or room is None or slot.conn is not conn:
            return
        slot.conn = None
        other = room.other(slot)
        if other is not None and other.conn is not None:
            self._send(other.conn, PeerLeft(slot.peer, slot.name, "disconnected"))
        if self._server is None:
            return  # stopping: no timers
        loop = asyncio.get_running_loop()
        slot.expiry = loop.call_later(self.resume_grace, self._expire, room, slot)

    def _expire(self, room: _Room, slot: _Slot) -> None:
        """The grace period ran out: free the slot; its queue waits for the next joiner."""
        slot.expiry = None
        if slot not in room.slots or slot.conn is not None:
            return
        room.slots.remove(slot)
        room.orphans.extend(slot.inbox)
        self._after_departure(room, slot, "expired")

    def _leave(self, room: _Room, slot: _Slot) -> None:
        """An explicit leave: nothing queued for this peer is worth keeping."""
        if slot.expiry is not None:
            slot.expiry.cancel()
        slot.conn = None
        room.slots.remove(slot)
        self._after_departure(room, slot, "left")

    def _after_departure(self, room: _Room, slot: _Slot, reason: str) -> None:
        logger.info("%s %s room %s", slot.name or slot.peer, reason, room.name)
        other = room.other(slot)
        if other is not None and other.conn is not None:
            self._send(other.conn, PeerLeft(slot.peer, slot.name, reason))
        if not room.slots:
            del self._rooms[room.name]
            self.stats.rooms = len(self._rooms)

    def _ice_servers(self, slot: _Slot) -> tuple[IceServer, ...]:
        """TURN REST credentials (draft-uberti-behave-turn-rest-00 §2.2) for this peer."""
        if not self.turn_uris:
            return ()
        if self.turn_secret is None:
            return (IceServer(self.turn_uris),)
        username, password = rest_credentials(
            self.turn_secret, slot.peer, self.turn_ttl, self.clock()
        )
        return (IceServer(self.turn_uris, username, password),)
