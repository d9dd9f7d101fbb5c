"""The sans-I/O signaling room core: every room rule, no sockets, clocks or asyncio.

In the spirit of h11 and ``nat/server.py``: the I/O layer (``signaling/server.py`` for one
process, ``signaling/cluster.py`` for several on Redis) feeds events in and performs the
actions that come back:

* :meth:`RoomTable.open` / :meth:`RoomTable.disconnect` - a WebSocket came or went;
* :meth:`RoomTable.handle` - one frame from a connection (bytes, or already parsed);
* :meth:`RoomTable.on_timer` - an :class:`Arm` came due (a dropped seat's grace ran out).

Each returns a list of :class:`Send`, :class:`Close` and :class:`Arm`. ``now`` is seconds on
one clock for the whole table (Unix time when rooms are shared between processes).
``handle`` never raises for anything a client sends: every bad frame is answered with an
``error`` frame (docs/signaling-protocol.md, "Errors").

Rules held here: join (the first joiner sets the secret, constant-time compare), two seats per
room, resume with the session token within the grace, per-sender sequence order, acks, queue
caps by frames and by bytes (per room and per client address), seats per address, per-room and
per-address back-off on wrong secrets, the per-connection rate limit, seat expiry.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from signaling.ratelimit import Backoff, TokenBucket
from signaling.ws_protocol import (
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
DEFAULT_RESUME_GRACE: Final = 30.0
DEFAULT_MAX_QUEUE: Final = 256
# A room's queues normally hold one offer or answer and tens of candidates (a few KiB to
# ~130 KiB for the largest legal offer); 1 MiB leaves room for several re-offers. Per address,
# 16 MiB covers dozens of busy rooms behind one NAT while one address can no longer hold GiBs.
DEFAULT_MAX_ROOM_BYTES: Final = 1024 * 1024
DEFAULT_MAX_ADDRESS_BYTES: Final = 16 * 1024 * 1024
# Seats (connected, or dropped and within the resume grace) one address may hold: twice the
# default connection cap, so a whole office can reconnect at once, but a join flood of
# distinct rooms stops here and its rooms are freed when their grace runs out.
DEFAULT_MAX_SEATS_PER_IP: Final = 200
DEFAULT_RATE_LIMIT: Final = 50.0
DEFAULT_RATE_BURST: Final = 200
# Wrong secrets: a few typos are free, then each one locks out for 1, 2, 4 ... s (at most 60 s
# per address, 30 s per room); 10 minutes without a failure forgets them. 50 links guessing in
# parallel then get about one guess per lock-out instead of thousands per second.
SECRET_FREE_PER_ADDRESS: Final = 5
SECRET_FREE_PER_ROOM: Final = 10
SECRET_BACKOFF_BASE: Final = 1.0
SECRET_BACKOFF_CAP_ADDRESS: Final = 60.0
SECRET_BACKOFF_CAP_ROOM: Final = 30.0
SECRET_FORGET: Final = 600.0
_MAX_GUESS_RECORDS: Final = 10_000


# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``text`` (one encoded server frame) to connection ``conn``."""

    conn: str
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``conn`` with WebSocket ``code`` (RFC 6455 §7.4.1); ``drain``: read and discard
    what it still sends while closing (a flooder's backlog must not delay its close frame)."""

    conn: str
    code: int
    reason: str
    drain: bool = False


@dataclass(frozen=True, slots=True)
class Arm:
    """Call :meth:`RoomTable.on_timer` with ``room`` and ``peer`` at time ``at``."""

    room: str
    peer: str
    at: float


Action = Send | Close | Arm


# --- state ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Queued:
    """One relay waiting for the recipient's ack; ``text`` is the encoded ``relay`` frame,
    ``size`` its UTF-8 length, ``address`` the sender's IP (whose byte budget it uses)."""

    sender: str
    seq: int
    text: str
    size: int
    address: str


@dataclass(slots=True, eq=False)
class Slot:
    """A peer's seat in a room; outlives its connection for the resume grace."""

    peer: str
    name: str
    session: str
    address: str
    conn: str | None = None
    gone_at: float | None = None  # when the connection dropped (None while connected)
    inbox: list[Queued] = field(default_factory=list)  # relays for this peer, not yet acked
    first_in: int = 0  # the first relay seq accepted from this peer on this seat
    last_in: int = 0  # the highest relay seq accepted from this peer
    acked_by_peer: int = 0  # highest of this peer's seqs the other peer has acked


@dataclass(slots=True, eq=False)
class Room:
    name: str
    secret: bytes
    slots: list[Slot] = field(default_factory=list)
    # Relays sent while nobody else is in the room, handed to the next peer who joins.
    orphans: list[Queued] = field(default_factory=list)
    guard: Backoff = field(default_factory=Backoff)  # wrong secrets against this room

    def other(self, slot: Slot) -> Slot | None:
        for s in self.slots:
            if s is not slot:
                return s
        return None

    def slot_of(self, peer: str) -> Slot | None:
        for s in self.slots:
            if s.peer == peer:
                return s
        return None

    def queued(self) -> Iterator[Queued]:
        for s in self.slots:
            yield from s.inbox
        yield from self.orphans


@dataclass(slots=True, eq=False)
class Conn:
    """A connection this table serves (on this node)."""

    id: str
    address: str
    bucket: TokenBucket | None
    room: str | None = None
    peer: str | None = None
    cut_off: bool = False  # over the rate limit: everything it still sends is ignored


@dataclass(frozen=True)
class Limits:
    """The policy numbers; ``None`` disables a cap."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    resume_grace: float = DEFAULT_RESUME_GRACE
    heartbeat: float = 20.0
    max_queue: int = DEFAULT_MAX_QUEUE
    max_room_bytes: int | None = DEFAULT_MAX_ROOM_BYTES
    max_address_bytes: int | None = DEFAULT_MAX_ADDRESS_BYTES
    max_seats_per_ip: int | None = DEFAULT_MAX_SEATS_PER_IP
    rate_limit: float | None = DEFAULT_RATE_LIMIT
    rate_burst: int = DEFAULT_RATE_BURST
    secret_free_per_address: int = SECRET_FREE_PER_ADDRESS
    secret_free_per_room: int = SECRET_FREE_PER_ROOM
    secret_backoff_base: float = SECRET_BACKOFF_BASE
    secret_backoff_cap_address: float = SECRET_BACKOFF_CAP_ADDRESS
    secret_backoff_cap_room: float = SECRET_BACKOFF_CAP_ROOM
    secret_forget: float = SECRET_FORGET


@dataclass
class Counters:
    """For logs and benchmarks."""

    relayed: int = 0
    errors: int = 0
    wrong_secrets: int = 0
    locked_out: int = 0


IceServersFor = Callable[[str], tuple[IceServer, ...]]


def _no_ice_servers(peer: str) -> tuple[IceServer, ...]:
    return ()


class RoomTable:
    """Rooms of two peers and the connections in them; see the module docstring.

    ``rooms`` is the live room state. One process keeps every room here; the Redis backend
    loads the one room an event touches, runs the same method, and stores it back.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        ice_servers: IceServersFor = _no_ice_servers,
    ) -> None:
        self.limits = limits or Limits()
        self.ice_servers = ice_servers
        self.rooms: dict[str, Room] = {}
        self.conns: dict[str, Conn] = {}
        self.reserved: dict[str, bytes] = {}
        self.stats = Counters()
        # Per-address totals of queued bytes and seats over every room; _usage[room] is what
        # each address holds in that room, so a room's change is applied as a difference.
        self._usage: dict[str, dict[str, tuple[int, int]]] = {}
        self._totals: dict[str, list[int]] = {}
        self._guesses: dict[str, Backoff] = {}  # wrong secrets per client address
        self._accounting = (
            self.limits.max_address_bytes is not None or self.limits.max_seats_per_ip is not None
        )

    # --- connections --------------------------------------------------------------------

    def open(self, conn_id: str, address: str) -> Conn:
        """A new connection from ``address`` (its IP, what per-address caps count)."""
        lim = self.limits
        bucket = None if lim.rate_limit is None else TokenBucket(lim.rate_limit, lim.rate_burst)
        conn = self.conns[conn_id] = Conn(conn_id, address, bucket)
        return conn

    def disconnect(self, conn_id: str, now: float) -> list[Action]:
        """The connection is gone: its seat waits ``resume_grace`` for it to resume."""
        conn = self.conns.pop(conn_id, None)
        if conn is None or conn.room is None or conn.peer is None:
            return []
        room = self.rooms.get(conn.room)
        slot = room.slot_of(conn.peer) if room is not None else None
        if room is None or slot is None or slot.conn != conn_id:
            return []
        return self.detach(room, slot, now)

    def detach(self, room: Room, slot: Slot, now: float) -> list[Action]:
        """``slot`` lost its connection (here, or on a node that died): start its grace."""
        slot.conn = None
        slot.gone_at = now
        out: list[Action] = []
        other = room.other(slot)
        if other is not None and other.conn is not None:
            out.append(
                Send(other.conn, encode_frame(PeerLeft(slot.peer, slot.name, "disconnected")))
            )
        out.append(Arm(room.name, slot.peer, now + self.limits.resume_grace))
        return out

    def on_timer(self, room_name: str, peer: str, now: float) -> list[Action]:
        """An :class:`Arm` came due: expire the seat if it is still empty."""
        room = self.rooms.get(room_name)
        if room is None:
            return []
        out: list[Action] = []
        self._sweep(room, now, out)
        return out

    # --- frames -------------------------------------------------------------------------

    def handle(self, conn_id: str, frame: bytes | str | ClientFrame, now: float) -> list[Action]:
        """One frame from ``conn_id``: raw (size-checked and parsed here) or parsed."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.cut_off:
            return []
        if conn.bucket is not None and not conn.bucket.take(now):
            return self._rate_limited(conn)
        if isinstance(frame, bytes | str):
            parsed = self.parse(conn_id, frame)
            if not isinstance(parsed, list):
                return self.dispatch(conn, parsed, now)
            return parsed
        return self.dispatch(conn, frame, now)

    def parse(self, conn_id: str, raw: bytes | str) -> ClientFrame | list[Action]:
        """Size-check and parse ``raw``: the frame, or the error to answer with."""
        size = len(raw)
        cap = self.limits.max_message_bytes
        if size > cap:
            return self._error(
                conn_id,
                ErrorCode.TOO_BIG,
                f"frame of {size} bytes exceeds the limit of {cap} bytes",
            )
        try:
            return parse_client_frame(raw)
        except FrameError as exc:
            return self._error(conn_id, exc.code, str(exc), exc.seq)

    def take_token(self, conn_id: str, now: float) -> list[Action] | None:
        """The rate limit alone (for shells that parse before loading a room): None if the
        frame may go ahead, else the actions that cut the connection off."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.cut_off:
            return []
        if conn.bucket is not None and not conn.bucket.take(now):
            return self._rate_limited(conn)
        return None

    def room_for(self, conn_id: str, frame: ClientFrame) -> str | None:
        """The room ``frame`` touches (what the Redis backend must load first)."""
        if isinstance(frame, Join):
            return frame.room
        conn = self.conns.get(conn_id)
        return None if conn is None else conn.room

    def dispatch(self, conn: Conn, frame: ClientFrame, now: float) -> list[Action]:
        """A parsed frame from ``conn``; the room it touches must be in :attr:`rooms`."""
        if isinstance(frame, Join):
            if conn.room is not None:
                return self._error(
                    conn.id, ErrorCode.ALREADY_JOINED, "already joined a room on this link"
                )
            return self._join(conn, frame, now)
        room = self.rooms.get(conn.room) if conn.room is not None else None
        slot = room.slot_of(conn.peer) if room is not None and conn.peer is not None else None
        if room is None or slot is None or slot.conn != conn.id:
            conn.room = conn.peer = None  # the seat expired or another link took it over
            what = "relay" if isinstance(frame, Relay) else type(frame).__name__.lower()
            return self._error(
                conn.id, ErrorCode.NOT_JOINED, f"{what} before join: join a room first"
            )
        out: list[Action] = []
        match frame:
            case Relay():
                self._relay(conn, room, slot, frame, out)
            case Ack():
                self._ack(room, slot, frame, out)
            case Ping():
                out.append(Send(conn.id, _PONG))
            case IceServersRequest():
                out.append(Send(conn.id, encode_frame(IceServers(self.ice_servers(slot.peer)))))
            case Leave():
                room.slots.remove(slot)
                conn.room = conn.peer = None
                self._departed(room, slot, "left", out)
                out.append(Close(conn.id, 1000, "left"))
        return out

    # --- rooms --------------------------------------------------------------------------

    def reserve(self, room: str, secret: str) -> None:
        """Fix ``room``'s secret in advance (an advertised room), instead of its first joiner."""
        self.reserved[room] = secret.encode()

    def _join(self, conn: Conn, join: Join, now: float) -> list[Action]:
        out: list[Action] = []
        room = self.rooms.get(join.room)
        if room is None and join.room in self.reserved:
            room = self.rooms[join.room] = Room(join.room, self.reserved[join.room])
        slot: Slot | None = None
        if room is not None:
            self._sweep(room, now, out)
            if room.name not in self.rooms:  # its last seat expired just now
                room = None
                if join.room in self.reserved:
                    room = self.rooms[join.room] = Room(join.room, self.reserved[join.room])
        if room is not None:
            if join.session is not None:
                candidate = room.slot_of(join.peer)
                if candidate is not None and hmac.compare_digest(
                    candidate.session.encode(), join.session.encode()
                ):
                    slot = candidate  # a valid session token is not a guess: no lock-out
            if slot is None:
                wait = self._lockout(conn.address, room, now)
                if wait:
                    self.stats.locked_out += 1
                    return out + self._error(
                        conn.id,
                        ErrorCode.LOCKED_OUT,
                        f"too many wrong room secrets; try again in {math.ceil(wait)} s",
                    )
            if not hmac.compare_digest(room.secret, join.secret.encode()):
                self._wrong_secret(conn.address, room, now)
                return out + self._error(conn.id, ErrorCode.WRONG_SECRET, "wrong room secret")
            self._guesses.pop(conn.address, None)
            room.guard = Backoff()
        resumed = slot is not None
        if slot is None:
            if room is not None and len(room.slots) >= 2:
                return out + self._error(conn.id, ErrorCode.ROOM_FULL, "room is full")
            cap = self.limits.max_seats_per_ip
            if cap is not None and self._total(conn.address)[1] >= cap:
                return out + self._error(
                    conn.id,
                    ErrorCode.TOO_MANY_ROOMS,
                    f"at most {cap} room seats per address (dropped ones count until their "
                    f"{self.limits.resume_grace:g} s grace ends)",
                )
            if room is None:
                room = self.rooms[join.room] = Room(join.room, join.secret.encode())
            slot = Slot(join.peer, join.name, secrets.token_urlsafe(18), conn.address)
            slot.inbox, room.orphans = room.orphans, []
            room.slots.append(slot)
        else:
            assert room is not None
            if slot.conn is not None and slot.conn != conn.id:  # the old link is half-dead
                old = self.conns.get(slot.conn)
                if old is not None:
                    old.room = old.peer = None
                replaced = ErrorFrame(ErrorCode.REPLACED, "replaced by a newer connection", True)
                out.append(Send(slot.conn, encode_frame(replaced)))
                out.append(Close(slot.conn, 4000, "replaced"))
            slot.name = join.name or slot.name
            slot.address = conn.address
        slot.conn = conn.id
        slot.gone_at = None
        conn.room, conn.peer = room.name, slot.peer
        other = room.other(slot)
        peers = () if other is None else (PeerInfo(other.peer, other.name, other.conn is not None),)
        joined = Joined(
            room=room.name,
            session=slot.session,
            resumed=resumed,
            peers=peers,
            acked=slot.acked_by_peer,
            ice_servers=self.ice_servers(slot.peer),
            max_message_bytes=self.limits.max_message_bytes,
            heartbeat=self.limits.heartbeat,
        )
        out.append(Send(conn.id, encode_frame(joined)))
        logger.info(
            "%s %s room %s", slot.name or slot.peer, "resumed" if resumed else "joined", room.name
        )
        if other is not None and other.conn is not None:
            out.append(Send(other.conn, encode_frame(PeerJoined(slot.peer, slot.name, resumed))))
        for queued in slot.inbox:  # what arrived while this peer was away, in order
            out.append(Send(conn.id, queued.text))
        self._account(room)
        return out

    def _lockout(self, address: str, room: Room, now: float) -> float:
        forget = self.limits.secret_forget
        record = self._guesses.get(address)
        wait = record.locked(now, forget) if record is not None else 0.0
        return max(wait, room.guard.locked(now, forget))

    def _wrong_secret(self, address: str, room: Room, now: float) -> None:
        lim = self.limits
        self.stats.wrong_secrets += 1
        if len(self._guesses) >= _MAX_GUESS_RECORDS and address not in self._guesses:
            for key in [k for k, v in self._guesses.items() if v.idle(now, lim.secret_forget)]:
                del self._guesses[key]
            if len(self._guesses) >= _MAX_GUESS_RECORDS:  # all locked: drop the oldest
                del self._guesses[next(iter(self._guesses))]
        record = self._guesses.setdefault(address, Backoff())
        base = lim.secret_backoff_base
        record.fail(now, lim.secret_free_per_address, base, lim.secret_backoff_cap_address)
        room.guard.fail(now, lim.secret_free_per_room, base, lim.secret_backoff_cap_room)

    def _relay(self, conn: Conn, room: Room, slot: Slot, relay: Relay, out: list[Action]) -> None:
        seq = relay.seq
        if slot.first_in:
            if slot.first_in <= seq <= slot.last_in:
                return  # a re-send after reconnecting: we have it already
            if seq < slot.first_in:
                out += self._error(
                    conn.id,
                    ErrorCode.OUT_OF_ORDER,
                    f"relay seq {seq} is before this seat's first relay {slot.first_in}",
                    seq,
                )
                return
            if seq != slot.last_in + 1:
                out += self._error(
                    conn.id,
                    ErrorCode.OUT_OF_ORDER,
                    f"relay seq {seq} out of order (expected {slot.last_in + 1})",
                    seq,
                )
                return
        other = room.other(slot)
        queue = other.inbox if other is not None else room.orphans
        lim = self.limits
        if len(queue) >= lim.max_queue:
            out += self._error(
                conn.id,
                ErrorCode.QUEUE_FULL,
                f"peer has {len(queue)} unacknowledged messages; retry later",
                seq,
            )
            return
        text = encode_frame(Deliver(slot.peer, seq, relay.data))
        size = len(text) if text.isascii() else len(text.encode())  # SDP is ASCII
        if lim.max_room_bytes is not None:
            held = sum(q.size for q in room.queued())
            if held + size > lim.max_room_bytes:
                out += self._error(
                    conn.id,
                    ErrorCode.QUEUE_FULL,
                    f"room holds {held} unacknowledged bytes (limit {lim.max_room_bytes}); "
                    "retry later",
                    seq,
                )
                return
        if lim.max_address_bytes is not None:
            held = self._total(conn.address)[0]
            if held + size > lim.max_address_bytes:
                out += self._error(
                    conn.id,
                    ErrorCode.QUEUE_FULL,
                    f"your address holds {held} unacknowledged bytes (limit "
                    f"{lim.max_address_bytes}); retry later",
                    seq,
                )
                return
        if not slot.first_in:
            slot.first_in = seq
        slot.last_in = seq
        queued = Queued(slot.peer, seq, text, size, conn.address)
        queue.append(queued)
        self.stats.relayed += 1
        if other is not None and other.conn is not None:
            out.append(Send(other.conn, text))
        self._account(room)

    def _ack(self, room: Room, slot: Slot, ack: Ack, out: list[Action]) -> None:
        inbox = slot.inbox
        kept = [q for q in inbox if not (q.sender == ack.sender and q.seq <= ack.seq)]
        if len(kept) != len(inbox):
            slot.inbox = kept
            self._account(room)
        other = room.other(slot)
        if other is not None and other.peer == ack.sender:
            seq = min(ack.seq, other.last_in) if other.last_in else ack.seq
            if seq > other.acked_by_peer:
                other.acked_by_peer = seq
                if other.conn is not None:
                    out.append(Send(other.conn, encode_frame(Delivered(seq))))

    def _sweep(self, room: Room, now: float, out: list[Action]) -> None:
        """Free every seat whose grace is over; its queue waits for the next joiner."""
        grace = self.limits.resume_grace
        for slot in [s for s in room.slots if s.gone_at is not None and s.gone_at + grace <= now]:
            room.slots.remove(slot)
            room.orphans.extend(slot.inbox)
            self._departed(room, slot, "expired", out)

    def _departed(self, room: Room, slot: Slot, reason: str, out: list[Action]) -> None:
        logger.info("%s %s room %s", slot.name or slot.peer, reason, room.name)
        other = room.other(slot)
        if other is not None and other.conn is not None:
            out.append(Send(other.conn, encode_frame(PeerLeft(slot.peer, slot.name, reason))))
        if not room.slots:
            del self.rooms[room.name]
        self._account(room)

    # --- per-address accounting ---------------------------------------------------------

    def _account(self, room: Room) -> None:
        """Re-count what each address holds in ``room`` (seats, queued bytes)."""
        if not self._accounting:
            return
        now = room_usage(room) if room.name in self.rooms else {}
        before = self._usage.pop(room.name, {})
        for address, (b, n) in before.items():
            total = self._totals[address]
            total[0] -= b
            total[1] -= n
        for address, (b, n) in now.items():
            total = self._totals.setdefault(address, [0, 0])
            total[0] += b
            total[1] += n
        for address in before:
            if self._totals.get(address) == [0, 0]:
                del self._totals[address]
        if now:
            self._usage[room.name] = now

    def forget_room(self, name: str) -> None:
        """Drop ``name`` from this table (the Redis backend, after storing it) but keep what
        its addresses hold in the per-address totals until the room is loaded again."""
        self.rooms.pop(name, None)

    def adopt(
        self,
        room: Room | None,
        address: str | None = None,
        totals: tuple[int, int] | None = None,
        guesses: Backoff | None = None,
    ) -> None:
        """A shared table (the Redis backend), before one event on ``room``: forget what
        other rooms held here, and take ``room``'s own usage and, for the acting ``address``,
        its cluster-wide totals and wrong-secret record (what Redis holds)."""
        self._usage.clear()
        self._totals.clear()
        self._guesses.clear()
        if room is not None and self._accounting:
            held = room_usage(room)
            if held:
                self._usage[room.name] = held
            for a, (b, n) in held.items():
                self._totals[a] = [b, n]
        if address is not None:
            if totals is not None and self._accounting:
                self._totals[address] = list(totals)
            if guesses is not None:
                self._guesses[address] = guesses

    @property
    def accounting(self) -> bool:
        """Whether per-address bytes or seats are capped (else they are not counted)."""
        return self._accounting

    def held_in(self, name: str) -> dict[str, tuple[int, int]]:
        """What each address holds in room ``name`` as last counted: (bytes, seats)."""
        return self._usage.get(name, {})

    def guesses_of(self, address: str) -> Backoff | None:
        """The wrong-secret record of ``address`` (None: none, or a right secret cleared it)."""
        return self._guesses.get(address)

    def usage(self, address: str) -> tuple[int, int]:
        """(queued bytes, seats) held by ``address`` over every room."""
        b, n = self._totals.get(address, (0, 0))
        return b, n

    def _total(self, address: str) -> tuple[int, int]:
        return self.usage(address)

    # --- helpers ------------------------------------------------------------------------

    def _error(self, conn_id: str, code: str, message: str, seq: int | None = None) -> list[Action]:
        self.stats.errors += 1
        return [Send(conn_id, encode_frame(ErrorFrame(code, message, seq=seq)))]

    def _rate_limited(self, conn: Conn) -> list[Action]:
        """Tell a flooding client why, then close: it must not slow the other rooms down."""
        conn.cut_off = True
        self.stats.errors += 1
        lim = self.limits
        message = f"more than {lim.rate_limit:g} frames/s (bursts of {lim.rate_burst}); closing"
        frame = ErrorFrame(ErrorCode.RATE_LIMITED, message, fatal=True)
        return [Send(conn.id, encode_frame(frame)), Close(conn.id, 1008, "rate limit", drain=True)]


_PONG: Final = encode_frame(Pong())


def room_usage(room: Room) -> dict[str, tuple[int, int]]:
    """What each address holds in ``room``: (queued bytes, seats)."""
    held: dict[str, tuple[int, int]] = {}
    for s in room.slots:
        b, n = held.get(s.address, (0, 0))
        held[s.address] = (b, n + 1)
    for q in room.queued():
        b, n = held.get(q.address, (0, 0))
        held[q.address] = (b + q.size, n)
    return held


# --- room state as plain data (the Redis backend stores it) -----------------------------


def _queued_to(q: Queued) -> list[Any]:
    return [q.sender, q.seq, q.text, q.size, q.address]


def _queued_from(v: list[Any]) -> Queued:
    return Queued(str(v[0]), int(v[1]), str(v[2]), int(v[3]), str(v[4]))


def room_to_dict(room: Room) -> dict[str, Any]:
    """``room`` as JSON-ready data (everything but the Python objects' identity)."""
    return {
        "name": room.name,
        "secret": room.secret.decode(),
        "guard": [room.guard.failures, room.guard.locked_until, room.guard.last_failure],
        "orphans": [_queued_to(q) for q in room.orphans],
        "slots": [
            {
                "peer": s.peer,
                "name": s.name,
                "session": s.session,
                "address": s.address,
                "conn": s.conn,
                "gone_at": s.gone_at,
                "inbox": [_queued_to(q) for q in s.inbox],
                "first_in": s.first_in,
                "last_in": s.last_in,
                "acked_by_peer": s.acked_by_peer,
            }
            for s in room.slots
        ],
    }


def room_from_dict(data: dict[str, Any]) -> Room:
    """The inverse of :func:`room_to_dict`."""
    failures, locked_until, last_failure = data["guard"]
    return Room(
        name=data["name"],
        secret=data["secret"].encode(),
        guard=Backoff(int(failures), float(locked_until), float(last_failure)),
        orphans=[_queued_from(q) for q in data["orphans"]],
        slots=[
            Slot(
                peer=s["peer"],
                name=s["name"],
                session=s["session"],
                address=s["address"],
                conn=s["conn"],
                gone_at=s["gone_at"],
                inbox=[_queued_from(q) for q in s["inbox"]],
                first_in=int(s["first_in"]),
                last_in=int(s["last_in"]),
                acked_by_peer=int(s["acked_by_peer"]),
            )
            for s in data["slots"]
        ],
    )


def error_text(code: str, message: str, *, fatal: bool = False) -> str:
    """An encoded ``error`` frame (for the I/O shells' own errors)."""
    return encode_frame(ErrorFrame(code, message, fatal))


__all__ = [
    "Action",
    "Arm",
    "Close",
    "Conn",
    "Counters",
    "Limits",
    "Queued",
    "Room",
    "RoomTable",
    "Send",
    "ServerFrame",
    "Slot",
    "error_text",
    "room_from_dict",
    "room_to_dict",
    "room_usage",
]
