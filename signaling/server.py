"""The WebSocket signaling server: rooms of two peers relaying offers, answers and candidates.

Runs in-process (the desktop app hosts one; ``async with SignalingServer() as server``) or
standalone (``peercall signal``). The wire format is :mod:`signaling.ws_protocol`, documented
in ``docs/signaling-protocol.md``. This module is the asyncio/WebSocket shell; every room rule
is in the sans-I/O :class:`signaling.rooms.RoomTable`, held in memory here, or shared between
several processes through Redis/Valkey (``redis_url=``, :mod:`signaling.cluster`). What the
server guarantees:

- a room holds two peers; the first joiner sets the room secret, later joiners must present
  it (compared in constant time; repeated wrong secrets lock the address and the room out for
  a growing delay); a third peer is refused with ``room-full``;
- relays are forwarded as they arrive and kept in the recipient's queue until the recipient
  acknowledges them, so a message sent while the peer is reconnecting reaches it when it
  resumes (with its session token, within ``resume_grace`` seconds); queues are capped by
  frames, and by bytes per room and per client address;
- every bad frame is answered with an ``error`` frame naming the problem; the connection
  stays open (only a frame above websockets' hard limit, 4 x ``max_message_bytes``, closes
  it, with code 1009), and one client can never stop the server serving the others;
- dead connections are found by WebSocket keepalive pings (RFC 6455 §5.5.2), silent ones by
  an idle timeout and connections that never finish the handshake by ``handshake_timeout``;
  clients send an application ``ping`` every ``heartbeat`` seconds;
- with a TURN shared secret, each peer gets short-lived TURN REST credentials on join.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from nat.auth import rest_credentials
from signaling import web
from signaling.base import Service
from signaling.errors import SignalingError
from signaling.rooms import (
    DEFAULT_MAX_ADDRESS_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_ROOM_BYTES,
    DEFAULT_MAX_SEATS_PER_IP,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RESUME_GRACE,
    Action,
    Arm,
    Close,
    Limits,
    RoomTable,
    Send,
    error_text,
)
from signaling.ws_protocol import ROOM_RE, ErrorCode, IceServer

if TYPE_CHECKING:
    from signaling.cluster import RedisRooms

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_ADDRESS_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_ROOM_BYTES",
    "DEFAULT_MAX_SEATS_PER_IP",
    "DEFAULT_RATE_BURST",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RESUME_GRACE",
    "ServerStats",
    "SignalingServer",
]

DEFAULT_IDLE_TIMEOUT: Final = 60.0
DEFAULT_PING_INTERVAL: Final = 20.0
DEFAULT_TURN_TTL: Final = 3600.0
# A browser or PeerCall finishes the HTTP upgrade in milliseconds; a TCP connection that sends
# no request for this long is a half-open probe and is dropped (it costs ~35 KiB meanwhile).
DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0
# Enough for an office or a family behind one NAT address; a bench on loopback raises it.
DEFAULT_MAX_CONNECTIONS_PER_IP: Final = 100
HARD_LIMIT_FACTOR: Final = 4
# TCP connections from one address beyond the cap that still get their HTTP 429 answer; past
# this many more, new ones are aborted at once (half-open floods never reach the handshake).
_TCP_SLACK: Final = 16
_ACCEPT_LOG_INTERVAL: Final = 10.0
_FD_RESERVE: Final = 32  # descriptors kept for log files, Redis, DNS ...


def _address_of(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if peer else "?"


def _too_many(cap: int) -> str:
    return f"at most {cap} connections per address; closing"


@dataclass
class ServerStats:
    """Counters for logs and benchmarks."""

    connections: int = 0
    rooms: int = 0
    relayed: int = 0
    errors: int = 0
    accept_errors: int = 0


@dataclass(eq=False, slots=True)
class _Link:
    """A local WebSocket and what the shell must do with it."""

    ws: ServerConnection
    closing: Close | None = None


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
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_room_bytes: int | None = DEFAULT_MAX_ROOM_BYTES,
        max_address_bytes: int | None = DEFAULT_MAX_ADDRESS_BYTES,
        max_seats_per_ip: int | None = DEFAULT_MAX_SEATS_PER_IP,
        rate_limit: float | None = DEFAULT_RATE_LIMIT,
        rate_burst: int = DEFAULT_RATE_BURST,
        max_connections_per_ip: int | None = DEFAULT_MAX_CONNECTIONS_PER_IP,
        redis_url: str | None = None,
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
        if handshake_timeout <= 0:
            raise SignalingError(f"handshake timeout must be positive, got {handshake_timeout:g}")
        if rate_limit is not None and rate_limit <= 0:
            raise SignalingError(f"rate limit must be positive, got {rate_limit:g}")
        if rate_burst < 1:
            raise SignalingError(f"rate burst must be at least 1, got {rate_burst}")
        for what, value in (
            ("connections per address", max_connections_per_ip),
            ("room seats per address", max_seats_per_ip),
            ("queued bytes per room", max_room_bytes),
            ("queued bytes per address", max_address_bytes),
        ):
            if value is not None and value < 1:
                raise SignalingError(f"{what} must be at least 1, got {value}")
        if max_queue < 1:
            raise SignalingError(f"max queue must be at least 1, got {max_queue}")
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
        self.handshake_timeout = handshake_timeout
        self.max_queue = max_queue
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.max_connections_per_ip = max_connections_per_ip
        self.redis_url = redis_url
        self.clock = clock
        self.limits = Limits(
            max_message_bytes=max_message_bytes,
            resume_grace=resume_grace,
            heartbeat=self.heartbeat,
            max_queue=max_queue,
            max_room_bytes=max_room_bytes,
            max_address_bytes=max_address_bytes,
            max_seats_per_ip=max_seats_per_ip,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
        )
        self.table = RoomTable(self.limits, ice_servers=self._ice_servers)
        self.stats = ServerStats()
        # Shared rooms use Unix time (every node must agree on deadlines); one process uses
        # the monotonic clock, which never jumps.
        self._now: Callable[[], float] = time.time if redis_url else time.monotonic
        self._cluster: RedisRooms | None = None
        self._per_ip: dict[str, int] = {}  # TCP connections per address, half-open included
        self._links: dict[str, _Link] = {}
        self._ids = itertools.count(1)
        self._node = ""  # prefix of this node's connection ids (set by the cluster backend)
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._last_accept_log = -_ACCEPT_LOG_INTERVAL
        self._tcp_total = 0
        self._fd_limit = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; raises :class:`SignalingError` if the port is taken or the
        Redis server (with ``redis_url``) cannot be reached."""
        if self._server is not None:
            return
        if self.redis_url is not None and self._cluster is None:
            from signaling.cluster import RedisRooms  # redis-py: only for shared rooms

            cluster = RedisRooms(self, self.redis_url)
            await cluster.start()
            self._cluster = cluster
            self._node = cluster.node + "/"
        server_ref = self

        class _Counted(ServerConnection):
            """Counts TCP connections per address from the first byte, handshake or not."""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                server_ref._tcp_opened(self, transport)

            def connection_lost(self, exc: Exception | None) -> None:
                super().connection_lost(exc)
                server_ref._tcp_closed(self)

        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                max_size=self.max_message_bytes * HARD_LIMIT_FACTOR,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                open_timeout=self.handshake_timeout,
                compression=None,  # SDP compresses poorly; deflate costs ~100 KiB per client
                process_request=self._process_request,
                server_header=None,
                ssl=self.ssl_context,
                create_connection=_Counted,
            )
        except OSError as exc:
            if self._cluster is not None:
                await self._cluster.stop()
                self._cluster = None
            reason = (
                "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
            )
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        import resource

        # Each connection is one file descriptor; warn before the accept loop hits the limit
        # (uvloop then stops accepting without a word).
        self._fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        logger.info("signaling server listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection (code 1001, clients will reconnect) and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._cluster is not None:
            await self._cluster.stop()
            self._cluster = None
        self.table.rooms.clear()
        self.stats.rooms = 0

    @property
    def url(self) -> str:
        """``ws://host:port``, or ``wss://`` with TLS (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "ws" if self.ssl_context is None else "wss"
        return f"{scheme}://{host}:{self.port}"

    def room_count(self) -> int:
        """Rooms held in this process (with Redis: those loaded right now, usually 0)."""
        return len(self.table.rooms)

    def reserve_room(self, room: str, secret: str) -> None:
        """Fix ``room``'s secret in advance (an advertised room), instead of its first joiner."""
        if not ROOM_RE.fullmatch(room):
            raise SignalingError(f"room {room!r} must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
        if not secret:
            raise SignalingError("a reserved room needs a non-empty secret")
        self.table.reserve(room, secret)

    # --- connections --------------------------------------------------------------------

    def _tcp_opened(self, ws: ServerConnection, transport: asyncio.BaseTransport) -> None:
        address = _address_of(transport)
        self._per_ip[address] = count = self._per_ip.get(address, 0) + 1
        self._tcp_total += 1
        if self._fd_limit and self._tcp_total >= self._fd_limit - _FD_RESERVE:
            self._accept_trouble(f"{self._tcp_total} connections open, near")
        cap = self.max_connections_per_ip
        if (
            cap is not None
            and count > cap + _TCP_SLACK
            and isinstance(transport, asyncio.Transport)
        ):
            transport.abort()  # a flood of (half-)open connections: not worth an answer

    def _tcp_closed(self, ws: ServerConnection) -> None:
        self._tcp_total -= 1
        address = _address_of(ws.transport)
        left = self._per_ip.get(address, 1) - 1
        if left > 0:
            self._per_ip[address] = left
        else:
            self._per_ip.pop(address, None)

    def tcp_connections(self, address: str) -> int:
        """TCP connections from ``address`` right now, those still in the handshake included."""
        return self._per_ip.get(address, 0)

    def _accept_trouble(self, what: str) -> None:
        self.stats.accept_errors += 1
        now = time.monotonic()
        if now - self._last_accept_log >= _ACCEPT_LOG_INTERVAL:
            self._last_accept_log = now
            logger.error(
                "cannot accept connections: %s the open files limit %d (%d connections); new "
                "clients wait until some leave: raise it (ulimit -n, LimitNOFILE=)",
                what,
                self._fd_limit,
                self._tcp_total,
            )

    def loop_exception_handler(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        """An event-loop exception handler for the headless server (``peercall signal``): says
        plainly when the accept loop is refused (EMFILE), the rest as asyncio would."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            self._accept_trouble(f"{exc.strerror}:")
            return
        if (
            self._server is None
            and isinstance(exc, ValueError)
            and "_start_serving" in str(context.get("handle", ""))
        ):
            return  # asyncio's accept retry timer firing after we stopped listening
        loop.default_exception_handler(context)

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """``GET /healthz`` answers 200 for monitoring; other plain GETs get the call page
        (:mod:`signaling.web`); WebSocket upgrades go on to the signaling protocol.

        An address already holding ``max_connections_per_ip`` connections (on any node, with
        shared rooms) gets HTTP 429 (RFC 6585 §4) before the upgrade, which costs nothing.
        """
        if request.path == "/healthz":
            return Response(http.HTTPStatus.OK, "OK", Headers(), b"ok\n")
        if (page := web.serve_static(request)) is not None:
            return page
        cap = self.max_connections_per_ip
        if cap is None:
            return None
        address = _address_of(conn.transport)
        count = self._per_ip.get(address, 0)
        if count <= cap and self._cluster is not None:
            count = await self._cluster.connections_from(address, count)
        if count > cap:
            self.stats.errors += 1
            logger.warning("refused %s: %d connections from it already", address, cap)
            return Response(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                "Too Many Requests",
                Headers([("Retry-After", "10")]),
                f"at most {cap} connections per address\n".encode(),
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn_id = f"{self._node}{next(self._ids)}"
        link = self._links[conn_id] = _Link(ws)
        address = _address_of(ws.transport)
        self.table.open(conn_id, address)
        self.stats.connections += 1
        cluster = self._cluster
        try:
            if cluster is not None:
                await cluster.connected(address)
            while link.closing is None:
                conn = self.table.conns.get(conn_id)
                joined = conn is not None and conn.room is not None
                timeout = self.idle_timeout if joined else self.join_timeout
                try:
                    async with asyncio.timeout(timeout):
                        raw = await ws.recv(decode=False)
                except TimeoutError:
                    what = "frame" if joined else "join"
                    message = f"no {what} for {timeout:g} seconds; closing"
                    broadcast((ws,), error_text(ErrorCode.IDLE_TIMEOUT, message, fatal=True))
                    await ws.close(1008, "idle timeout")
                    return
                if cluster is None:
                    self._run(self.table.handle(conn_id, raw, self._now()))
                else:
                    self._run(await cluster.handle(conn_id, raw, self._now()))
            await self._close(link, link.closing)
        except ConnectionClosed:
            pass
        except Exception:  # a bug here must not take the server down with it
            logger.exception("signaling connection failed")
            await ws.close(1011, "internal error")
        finally:
            self.stats.connections -= 1
            self._links.pop(conn_id, None)
            if cluster is None:
                self._run(self.table.disconnect(conn_id, self._now()))
            elif self._server is not None:
                with contextlib.suppress(Exception):
                    await cluster.released(address)
                    self._run(await cluster.disconnect(conn_id, self._now()))
            else:
                self.table.conns.pop(conn_id, None)  # stopping: seats expire in Redis alone
            self.stats.rooms = len(self.table.rooms)

    async def _close(self, link: _Link, close: Close) -> None:
        if not close.drain:
            await link.ws.close(close.code, close.reason)
            return
        # Keep reading (and discarding) while closing: a flooder's frames fill websockets'
        # incoming queue, which pauses reading, and the client's close frame would sit behind
        # them until close_timeout. websockets aborts the TCP link if the close stalls anyway.
        closing = asyncio.create_task(link.ws.close(close.code, close.reason))
        with contextlib.suppress(ConnectionClosed):
            while True:
                await link.ws.recv(decode=False)
        await closing

    # --- actions ------------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        """Perform what the room core asked for."""
        for action in actions:
            if isinstance(action, Send):
                link = self._links.get(action.conn)
                if link is not None:
                    # broadcast() writes without awaiting: a slow client cannot stall the
                    # sender's handler; its unacked relays stay queued and keepalive pings
                    # drop it if it hangs.
                    broadcast((link.ws,), action.text)
                elif self._cluster is not None and not action.conn.startswith(self._node):
                    # Only other nodes' connections go through Redis: one of ours that has
                    # gone (closed while a frame for it was in flight) is dropped here, else
                    # the frame would come back on our own channel and go round forever.
                    self._cluster.forward(action)
            elif isinstance(action, Close):
                link = self._links.get(action.conn)
                if link is not None:
                    self._close_link(action, link)
                elif self._cluster is not None and not action.conn.startswith(self._node):
                    self._cluster.forward(action)
            elif isinstance(action, Arm):
                self._arm(action)
        relayed = self.table.stats.relayed
        if relayed != self.stats.relayed:
            self.stats.relayed = relayed
        self.stats.errors = self.table.stats.errors + self.stats.accept_errors
        self.stats.rooms = len(self.table.rooms)

    def deliver_local(self, action: Send | Close) -> None:
        """An action another node sent for one of our connections (the cluster backend)."""
        self._run([action])

    def _close_link(self, close: Close, link: _Link) -> None:
        if link.closing is not None:
            return
        link.closing = close
        if close.code != 4000:
            return  # its own frame asked for it: its handler closes it after this frame
        # Another link's frame replaced this one: its handler may be waiting in recv(), so
        # close from here.
        task = asyncio.create_task(self._close(link, close))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm(self, arm: Arm) -> None:
        if self._server is None:
            return  # stopping: no timers
        loop = asyncio.get_running_loop()
        delay = max(0.0, arm.at - self._now())

        def fire() -> None:
            self._timers.discard(handle)
            if self._cluster is None:
                self._run(self.table.on_timer(arm.room, arm.peer, self._now()))
            else:
                task = asyncio.create_task(self._fire_shared(arm))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def _fire_shared(self, arm: Arm) -> None:
        assert self._cluster is not None
        try:
            self._run(await self._cluster.timer(arm.room, arm.peer, self._now()))
        except Exception:
            logger.exception("expiring a seat in room %s failed", arm.room)

    def _ice_servers(self, peer: str) -> tuple[IceServer, ...]:
        """TURN REST credentials (draft-uberti-behave-turn-rest-00 §2.2) for this peer."""
        if not self.turn_uris:
            return ()
        if self.turn_secret is None:
            return (IceServer(self.turn_uris),)
        username, password = rest_credentials(self.turn_secret, peer, self.turn_ttl, self.clock())
        return (IceServer(self.turn_uris, username, password),)
