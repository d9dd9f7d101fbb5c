"""The WebSocket signaling backend: a :class:`SignalingChannel` through a signaling server.

:class:`WebSocketChannel` joins a room on a :class:`signaling.server.SignalingServer` (or any
server speaking ``docs/signaling-protocol.md``), trickles messages as they come, and survives
the network: when the link drops it reconnects with exponential back-off and jitter, resumes
its room slot with the session token (or re-joins if the server restarted and forgot it), and
re-sends every message the peer has not acknowledged. Duplicates are dropped on receipt, so the
engine sees each message exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import broadcast
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.protocol import State

from signaling.errors import ChannelClosed, GaveUp, MessageError, PeerRejected, SignalingError
from signaling.messages import Message
from signaling.ws_protocol import Ack as AckFrame
from signaling.ws_protocol import (
    Deliver,
    Delivered,
    ErrorCode,
    ErrorFrame,
    FrameError,
    IceServers,
    Join,
    Joined,
    Leave,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Relay,
    ServerFrame,
    encode_frame,
    parse_server_frame,
)

logger = logging.getLogger(__name__)

# Acks are cumulative, so one ack may cover many relays: a receiver acks at most this long after
# a relay arrives, or at once when ACK_EVERY relays are waiting. That halves the frames each side
# handles per message under load; the only cost is that a sender frees its copy a little later.
DEFAULT_ACK_DELAY: Final = 0.1
ACK_EVERY: Final = 32

_FATAL_JOIN_ERRORS: Final = {
    ErrorCode.WRONG_SECRET: "wrong room secret",
    ErrorCode.ROOM_FULL: "room is full",
}


@dataclass(frozen=True)
class Presence:
    """The other peer came (``present``) or went; ``reason`` as in ``peer-left``."""

    peer: str
    name: str
    present: bool
    reason: str = ""
    resumed: bool = False


class _Failed:
    def __init__(self, error: SignalingError) -> None:
        self.error = error


class WebSocketChannel:
    """One peer's end of a signaling room, over WebSocket (``supports_trickle = True``).

    ``connect`` joins the room (raising :class:`PeerRejected` for a wrong secret or a full
    room, :class:`SignalingError` when the server is unreachable); afterwards the channel
    reconnects by itself until ``close`` or until ``reconnect_timeout`` seconds pass without
    a link. ``ice_servers`` holds the short-lived TURN credentials the server handed out;
    ``peer_present`` / ``on_presence`` / :meth:`wait_for_peer` report the other peer.
    ``wss://`` URLs are verified against the system CAs, or only against ``ca_file`` (PEM) for
    a self-signed or private-CA server certificate.
    """

    supports_trickle = True

    def __init__(
        self,
        url: str,
        room: str,
        secret: str,
        *,
        name: str | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        reconnect_timeout: float | None = 300.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        on_presence: Callable[[Presence], None] | None = None,
        ack_delay: float = DEFAULT_ACK_DELAY,
        ca_file: str | Path | None = None,
    ) -> None:
        secure = url.lower().startswith("wss://")
        if ca_file is not None and not secure:
            raise SignalingError(f"a CA file is only used with wss:// URLs, not {url!r}")
        # Built once (and the CA file read once): a bad file fails here, not at each reconnect.
        self._ssl: ssl.SSLContext | None = None
        if secure:
            from signaling.tls import client_context  # imports cryptography: only for wss://

            self._ssl = client_context(ca_file)
        self.url = url
        self.room = room
        self.secret = secret
        self.name = name or ""
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.reconnect_timeout = reconnect_timeout
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.on_presence = on_presence
        self.ack_delay = ack_delay
        self.peer_id = secrets.token_urlsafe(12)  # our identity in the room; stable per channel
        self.session: str | None = None
        self.ice_servers: list[dict[str, Any]] = []
        self.peer_present = False
        self.peer_name: str | None = None
        self.connected = False
        self.reconnects = 0
        self.max_message_bytes = 0
        self._ws: ClientConnection | None = None
        self._heartbeat = 20.0
        self._inbox: asyncio.Queue[Message | _Failed] = asyncio.Queue()
        self._seq = 0  # last relay seq we assigned
        self._sent_upto = 0  # last seq written to the current link
        self._unacked: dict[int, Message] = {}  # seq -> message the peer has not acked yet
        self._last_seen: dict[str, int] = {}  # sender peer id -> highest seq delivered
        self._unacked_in = 0  # deliveries received since our last ack frame
        self._ack_pending: dict[str, int] = {}  # sender -> seq to ack in the next ack frame
        self._ack_timer: asyncio.TimerHandle | None = None
        self._send_lock = asyncio.Lock()
        self._peer_event = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._closed = False
        self._failure: SignalingError | None = None

    # --- SignalingChannel ---------------------------------------------------------------

    async def connect(self) -> None:
        """Join the room; the first join is not retried, so a typo fails at once."""
        if self._closed:
            raise ChannelClosed("signaling channel is closed")
        if self._runner is not None:
            return
        ws = await self._open_and_join()
        self._runner = asyncio.create_task(self._run(ws), name=f"signaling {self.room}")

    async def send(self, message: Message) -> None:
        """Queue ``message`` for the peer; it is re-sent after reconnects until acknowledged."""
        self._check_open()
        relay = Relay(self._seq + 1, message)
        if self.max_message_bytes and len(encode_frame(relay).encode()) > self.max_message_bytes:
            raise MessageError(
                f"message too large for this signaling server (limit {self.max_message_bytes}"
                " bytes)"
            )
        self._seq += 1
        self._unacked[self._seq] = message
        if self.connected:
            await self._flush()

    async def receive(self) -> Message:
        if self._closed and self._inbox.empty():
            raise ChannelClosed("signaling channel is closed")
        item = await self._inbox.get()
        if isinstance(item, _Failed):
            self._inbox.put_nowait(item)  # every later receive fails the same way
            raise item.error
        return item

    async def close(self) -> None:
        """Leave the room for good (the peer sees ``peer-left``); idempotent."""
        if self._closed:
            return
        self._closed = True
        ws = self._ws
        if ws is not None and self.connected:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._flush()
                await ws.send(encode_frame(Leave()))
        await self._stop_tasks()
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.close()
        self.connected = False
        self._inbox.put_nowait(_Failed(ChannelClosed("signaling channel is closed")))

    # --- presence -----------------------------------------------------------------------

    async def wait_for_peer(self, present: bool = True) -> None:
        """Return once the other peer is in the room (or, with ``present=False``, gone)."""
        while self.peer_present is not present:
            self._check_open()
            self._peer_event.clear()
            await self._peer_event.wait()

    def _set_presence(self, event: Presence) -> None:
        self.peer_present = event.present
        self.peer_name = event.name or self.peer_name
        self._peer_event.set()
        if self.on_presence is not None:
            try:
                self.on_presence(event)
            except Exception:
                logger.exception("presence callback failed")

    # --- link management ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ChannelClosed("signaling channel is closed")

    async def _open_and_join(self) -> ClientConnection:
        try:
            ws = await connect(
                self.url,
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_interval,
                compression=None,
                max_size=4 * 2**20,  # the server's relays are capped far below this
                ssl=self._ssl,
            )
        except InvalidURI as exc:
            raise SignalingError(f"invalid signaling server URL {self.url!r}: {exc}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            why = " (too many connections from this address)" if status == 429 else ""
            raise SignalingError(
                f"signaling server {self.url} refused the WebSocket upgrade (HTTP {status}){why}"
            ) from None
        except TimeoutError:
            raise SignalingError(f"cannot reach signaling server {self.url}: timed out") from None
        except ssl.SSLError as exc:  # before OSError, its base: errno means nothing here
            reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise SignalingError(f"TLS with signaling server {self.url} failed: {reason}") from None
        except (OSError, InvalidHandshake) as exc:
            if isinstance(exc, OSError) and exc.errno:
                reason = os.strerror(exc.errno).lower()  # asyncio's strerror is "Connect call.."
            else:
                reason = str(exc) or type(exc).__name__
            raise SignalingError(f"cannot reach signaling server {self.url}: {reason}") from None
        try:
            await ws.send(
                encode_frame(Join(self.room, self.secret, self.peer_id, self.name, self.session))
            )
            async with asyncio.timeout(self.open_timeout):
                while True:
                    frame = parse_server_frame(await ws.recv())
                    if isinstance(frame, Joined | ErrorFrame):
                        break
            if isinstance(frame, ErrorFrame):
                if frame.code in _FATAL_JOIN_ERRORS:
                    raise PeerRejected(_FATAL_JOIN_ERRORS[frame.code])
                raise PeerRejected(f"signaling server refused the join: {frame.message}")
        except BaseException as exc:
            await ws.close()
            if isinstance(exc, TimeoutError):
                raise SignalingError(
                    f"signaling server {self.url} did not answer the join"
                ) from None
            if isinstance(exc, ConnectionClosed):
                raise SignalingError(f"signaling server {self.url} closed the link") from None
            if isinstance(exc, FrameError):
                raise SignalingError(f"signaling server {self.url} sent {exc}") from None
            raise
        await self._on_joined(ws, frame)
        return ws

    async def _on_joined(self, ws: ClientConnection, joined: Joined) -> None:
        """Adopt the new link: session, credentials, presence; then re-send what is unacked."""
        if self.session is not None and not joined.resumed:
            logger.info("signaling server forgot our session (restarted?); re-joined %s", self.room)
        self.session = joined.session
        self.ice_servers = [s.to_dict() for s in joined.ice_servers]
        self.max_message_bytes = joined.max_message_bytes
        self._heartbeat = joined.heartbeat
        self._drop_acked(joined.acked)
        present = [p for p in joined.peers if p.present]
        if present:
            self._set_presence(Presence(present[0].peer, present[0].name, True, resumed=True))
        elif self.peer_present:
            self._set_presence(Presence("", self.peer_name or "", False, "disconnected"))
        self._ws = ws
        async with self._send_lock:
            self._sent_upto = min(self._unacked, default=self._seq + 1) - 1
        self.connected = True
        await self._flush()
        self._pinger = asyncio.create_task(self._ping_loop(ws))

    async def _flush(self) -> None:
        """Write every queued relay not yet written to the current link, in order."""
        async with self._send_lock:
            ws = self._ws
            while ws is not None and self.connected and self._sent_upto < self._seq:
                seq = self._sent_upto + 1
                message = self._unacked.get(seq)
                if message is not None:
                    try:
                        await ws.send(encode_frame(Relay(seq, message)))
                    except ConnectionClosed:
                        return  # the reader notices and reconnects; we re-send from there
                self._sent_upto = seq

    def _drop_acked(self, upto: int) -> None:
        for seq in [s for s in self._unacked if s <= upto]:
            del self._unacked[seq]

    async def _ping_loop(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self._heartbeat)
                await ws.send(encode_frame(Ping()))

    async def _run(self, ws: ClientConnection) -> None:
        """Read frames; when the link drops, reconnect and resume until closed or timed out."""
        try:
            while True:
                reason = await self._read_until_closed(ws)
                self.connected = False
                if self._pinger is not None:
                    self._pinger.cancel()
                if self._closed:
                    return
                if not self.reconnect:
                    self._fail(ChannelClosed(f"lost the signaling server {self.url}: {reason}"))
                    return
                logger.warning("signaling link to %s lost (%s); reconnecting", self.url, reason)
                ws = await self._reconnect(reason)
        except SignalingError as exc:
            self._fail(exc)

    async def _reconnect(self, reason: str) -> ClientConnection:
        delay = self.backoff_initial
        deadline = (
            None if self.reconnect_timeout is None else time.monotonic() + self.reconnect_timeout
        )
        while True:
            # Full jitter keeps a crowd of clients from reconnecting in lock-step after a
            # server restart.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            try:
                ws = await self._open_and_join()
            except PeerRejected:
                raise
            except SignalingError as exc:
                reason = str(exc)
                if deadline is not None and time.monotonic() > deadline:
                    message = f"gave up reconnecting to the signaling server: {reason}"
                    raise GaveUp(message) from None
                delay = min(delay * 2, self.backoff_max)
                continue
            self.reconnects += 1
            return ws

    async def _read_until_closed(self, ws: ClientConnection) -> str:
        try:
            async for raw in ws:
                try:
                    frame = parse_server_frame(raw)
                except FrameError as exc:
                    logger.error("signaling server sent a bad frame: %s", exc)
                    continue
                await self._on_frame(ws, frame)
        except ConnectionClosed as exc:
            return f"closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        rcvd = ws.close_code
        return f"closed ({rcvd})" if rcvd is not None else "closed"

    async def _on_frame(self, ws: ClientConnection, frame: ServerFrame) -> None:
        match frame:
            case Deliver(sender=sender, seq=seq, data=data):
                if seq > self._last_seen.get(sender, 0):
                    self._last_seen[sender] = seq
                    self._inbox.put_nowait(data)
                self._ack_pending[sender] = self._last_seen[sender]
                self._unacked_in += 1
                if self._unacked_in >= ACK_EVERY or self.ack_delay <= 0:
                    self._send_acks()
                elif self._ack_timer is None:
                    self._ack_timer = asyncio.get_running_loop().call_later(
                        self.ack_delay, self._send_acks
                    )
            case Delivered(seq=seq):
                self._drop_acked(seq)
            case PeerJoined(peer=peer, name=name, resumed=resumed):
                self._set_presence(Presence(peer, name, True, resumed=resumed))
            case PeerLeft(peer=peer, name=name, reason=reason):
                self._set_presence(Presence(peer, name, False, reason))
            case IceServers(ice_servers=servers):
                self.ice_servers = [s.to_dict() for s in servers]
            case ErrorFrame(code=code, message=message):
                if code in (ErrorCode.OUT_OF_ORDER, ErrorCode.QUEUE_FULL):
                    # The server dropped a relay; re-join so the unacked tail is re-sent.
                    logger.warning("signaling server: %s; resynchronising", message)
                    await ws.close(1000, "resync")
                elif code == ErrorCode.REPLACED:
                    self._fail(ChannelClosed("another connection took over this room slot"))
                else:
                    logger.error("signaling server error (%s): %s", code, message)
            case Pong() | Joined():
                pass

    def _send_acks(self) -> None:
        """Write the pending cumulative acks on the current link (without awaiting: acks are
        tiny, never stall). The current link, not the one the relays came in on: a timer armed
        before a reconnect also covers relays the server re-sent on the new link."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        pending, self._ack_pending = self._ack_pending, {}
        self._unacked_in = 0
        ws = self._ws
        if ws is None or ws.state is not State.OPEN:
            return  # a dead link: the server re-sends after the resume and we ack then
        for sender, seq in pending.items():
            broadcast((ws,), encode_frame(AckFrame(sender, seq)))

    def _fail(self, error: SignalingError) -> None:
        if self._failure is None and not self._closed:
            self._failure = error
            self._inbox.put_nowait(_Failed(error))
            self._peer_event.set()

    async def _stop_tasks(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        for task in (self._pinger, self._runner):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
