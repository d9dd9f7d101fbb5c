"""The WebSocket signaling envelope: frames between a client and the signaling server.

Sans-I/O: dataclasses, :func:`encode_frame`, :func:`parse_client_frame` and
:func:`parse_server_frame`; no sockets or timers here (those live in :mod:`signaling.server`
and :mod:`signaling.client`). The wire format, with examples, is ``docs/signaling-protocol.md``.

Each WebSocket text message is one JSON object with ``"v": 1`` and a ``"type"``. The call-level
messages of :mod:`signaling.messages` travel inside ``relay`` frames as ``data``. Delivery is
end-to-end acknowledged: a sender numbers its relays (``seq``, per client, stable across
reconnects), the server forwards them tagged with the sender's ``peer`` id, the receiver acks
them (``ack``), and the server tells the sender (``ack``); a sender keeps what is not yet acked
and re-sends it after a reconnect, and a receiver drops ``(from, seq)`` pairs it has seen.
Parsing failures raise :class:`FrameError`, whose ``code`` goes into the ``error`` frame.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from signaling import messages
from signaling.errors import MessageError
from signaling.messages import Message

WIRE_VERSION: Final = 1

ROOM_RE: Final = re.compile(r"[A-Za-z0-9._~-]{1,64}")
PEER_RE: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_NAME: Final = 64
MAX_SECRET: Final = 256
MAX_SESSION: Final = 128
MAX_SEQ: Final = 2**53 - 1  # what a JSON number holds exactly in every implementation


class ErrorCode:
    """The ``code`` values of ``error`` frames (docs/signaling-protocol.md, "Errors")."""

    BAD_JSON = "bad-json"
    BAD_FRAME = "bad-frame"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNKNOWN_TYPE = "unknown-type"
    TOO_BIG = "too-big"
    BAD_MESSAGE = "bad-message"
    NOT_JOINED = "not-joined"
    ALREADY_JOINED = "already-joined"
    WRONG_SECRET = "wrong-secret"
    ROOM_FULL = "room-full"
    OUT_OF_ORDER = "out-of-order"
    QUEUE_FULL = "queue-full"
    IDLE_TIMEOUT = "idle-timeout"
    SHUTTING_DOWN = "shutting-down"
    REPLACED = "replaced"
    RATE_LIMITED = "rate-limited"
    TOO_MANY_CONNECTIONS = "too-many-connections"
    TOO_MANY_ROOMS = "too-many-rooms"
    LOCKED_OUT = "locked-out"


class FrameError(MessageError):
    """A frame failed validation; ``code`` is the :class:`ErrorCode` to answer with."""

    def __init__(self, code: str, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.seq = seq


# --- client -> server -------------------------------------------------------------------


@dataclass(frozen=True)
class Join:
    """Enter ``room``; the first joiner sets its ``secret``. ``session`` resumes a slot."""

    room: str
    secret: str
    peer: str
    name: str = ""
    session: str | None = None


@dataclass(frozen=True)
class Relay:
    """A call message for the other peer; ``seq`` counts this client's relays from 1."""

    seq: int
    data: Message


@dataclass(frozen=True)
class Ack:
    """Client: "I have every relay from peer ``sender`` up to ``seq``"."""

    sender: str
    seq: int


@dataclass(frozen=True)
class Ping:
    """Application heartbeat (the server answers ``pong``); keeps the idle timer quiet."""


@dataclass(frozen=True)
class Leave:
    """Leave the room for good (no resume); the peer sees ``peer-left`` reason ``left``."""


@dataclass(frozen=True)
class IceServersRequest:
    """Ask for fresh TURN credentials (they are short-lived)."""


ClientFrame = Join | Relay | Ack | Ping | Leave | IceServersRequest


# --- server -> client -------------------------------------------------------------------


@dataclass(frozen=True)
class PeerInfo:
    peer: str
    name: str
    present: bool


@dataclass(frozen=True)
class IceServer:
    """One RTCIceServer entry: ``{"urls": [...], "username": ..., "credential": ...}``."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class Joined:
    room: str
    session: str
    resumed: bool
    peers: tuple[PeerInfo, ...]
    acked: int  # the highest of our relays the other peer has acknowledged, as far as known
    ice_servers: tuple[IceServer, ...]
    max_message_bytes: int
    heartbeat: float


@dataclass(frozen=True)
class PeerJoined:
    peer: str
    name: str
    resumed: bool = False


@dataclass(frozen=True)
class PeerLeft:
    """``reason``: ``left`` (for good), ``disconnected`` (may resume), ``expired`` (did not)."""

    peer: str
    name: str
    reason: str


@dataclass(frozen=True)
class Deliver:
    """A relay from ``sender`` (its peer id), numbered by the sender."""

    sender: str
    seq: int
    data: Message


@dataclass(frozen=True)
class Delivered:
    """Server: "the other peer has every relay of yours up to ``seq``" (wire type ``ack``)."""

    seq: int


@dataclass(frozen=True)
class ErrorFrame:
    code: str
    message: str
    fatal: bool = False
    seq: int | None = None


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class IceServers:
    ice_servers: tuple[IceServer, ...] = field(default_factory=tuple)


ServerFrame = Joined | PeerJoined | PeerLeft | Deliver | Delivered | ErrorFrame | Pong | IceServers

PEER_LEFT_REASONS: Final = frozenset({"left", "disconnected", "expired"})


# --- encoding ---------------------------------------------------------------------------


def frame_to_dict(frame: ClientFrame | ServerFrame) -> dict[str, Any]:
    """The JSON-ready form of ``frame``."""
    body: dict[str, Any]
    match frame:
        case Join():
            body = {"type": "join", "room": frame.room, "secret": frame.secret, "peer": frame.peer}
            if frame.name:
                body["name"] = frame.name
            if frame.session is not None:
                body["session"] = frame.session
        case Relay(seq=seq, data=data):
            body = {"type": "relay", "seq": seq, "data": messages.to_dict(data)}
        case Ack(sender=sender, seq=seq):
            body = {"type": "ack", "from": sender, "seq": seq}
        case Ping():
            body = {"type": "ping"}
        case Leave():
            body = {"type": "leave"}
        case IceServersRequest():
            body = {"type": "ice-servers"}
        case Joined():
            body = {
                "type": "joined",
                "room": frame.room,
                "session": frame.session,
                "resumed": frame.resumed,
                "peers": [
                    {"peer": p.peer, "name": p.name, "present": p.present} for p in frame.peers
                ],
                "ack": frame.acked,
                "iceServers": [s.to_dict() for s in frame.ice_servers],
                "maxMessageBytes": frame.max_message_bytes,
                "heartbeat": frame.heartbeat,
            }
        case PeerJoined(peer=peer, name=name, resumed=resumed):
            body = {"type": "peer-joined", "peer": peer, "name": name, "resumed": resumed}
        case PeerLeft(peer=peer, name=name, reason=reason):
            body = {"type": "peer-left", "peer": peer, "name": name, "reason": reason}
        case Deliver(sender=sender, seq=seq, data=data):
            body = {"type": "relay", "from": sender, "seq": seq, "data": messages.to_dict(data)}
        case Delivered(seq=seq):
            body = {"type": "ack", "seq": seq}
        case ErrorFrame():
            body = {
                "type": "error",
                "code": frame.code,
                "message": frame.message,
                "fatal": frame.fatal,
            }
            if frame.seq is not None:
                body["seq"] = frame.seq
        case Pong():
            body = {"type": "pong"}
        case IceServers(ice_servers=servers):
            body = {"type": "ice-servers", "iceServers": [s.to_dict() for s in servers]}
    return {"v": WIRE_VERSION, **body}


# Built once: json.dumps with options other than the defaults builds an encoder per call.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_frame(frame: ClientFrame | ServerFrame) -> str:
    """Compact JSON text for one WebSocket message."""
    return _ENCODER.encode(frame_to_dict(frame))


# --- decoding ---------------------------------------------------------------------------

_MISSING = object()


def _get(data: dict[str, Any], name: str, kind: type, what: str, default: Any = _MISSING) -> Any:
    value = data.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is not _MISSING:
            return default
        raise FrameError(ErrorCode.BAD_FRAME, f"{what}: missing field '{name}'")
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise FrameError(ErrorCode.BAD_FRAME, f"{what}: field '{name}' must be {kind.__name__}")
    return value


def _seq(data: dict[str, Any], what: str, minimum: int = 1) -> int:
    seq: int = _get(data, "seq", int, what)
    if not minimum <= seq <= MAX_SEQ:
        raise FrameError(ErrorCode.BAD_FRAME, f"{what}: 'seq' out of range")
    return seq


def _peer_id(data: dict[str, Any], name: str, what: str) -> str:
    value: str = _get(data, name, str, what)
    if not PEER_RE.fullmatch(value):
        raise FrameError(
            ErrorCode.BAD_FRAME, f"{what}: '{name}' must be 8-64 characters of A-Z a-z 0-9 _ -"
        )
    return value


def _name(data: dict[str, Any], what: str) -> str:
    value: str = _get(data, "name", str, what, "")
    if len(value) > MAX_NAME or not value.isprintable():
        raise FrameError(
            ErrorCode.BAD_FRAME, f"{what}: 'name' must be printable, at most {MAX_NAME} characters"
        )
    return value


def _data(data: dict[str, Any], seq: int) -> Message:
    body = data.get("data")
    if not isinstance(body, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "relay: field 'data' must be an object", seq)
    try:
        return messages.from_dict(body)
    except MessageError as exc:
        raise FrameError(ErrorCode.BAD_MESSAGE, f"relay: {exc}", seq) from None


def _load(text: str | bytes) -> tuple[dict[str, Any], str]:
    try:
        data = json.loads(text)
    except ValueError as exc:  # includes UnicodeDecodeError for bytes that are not UTF-8
        raise FrameError(ErrorCode.BAD_JSON, f"malformed JSON: {exc}") from None
    except RecursionError:  # e.g. 100 KB of '[': the C decoder recurses once per level
        raise FrameError(ErrorCode.BAD_JSON, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    version = data.get("v")
    if version != WIRE_VERSION:
        raise FrameError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"unsupported protocol version {version!r} (expected {WIRE_VERSION})",
        )
    kind = data.get("type")
    if not isinstance(kind, str):
        raise FrameError(ErrorCode.BAD_FRAME, "frame has no 'type'")
    return data, kind


def parse_client_frame(text: str | bytes) -> ClientFrame:
    """Validate one frame a client sent; raises :class:`FrameError`."""
    data, kind = _load(text)
    if kind == "join":
        room: str = _get(data, "room", str, kind)
        if not ROOM_RE.fullmatch(room):
            raise FrameError(
                ErrorCode.BAD_FRAME, "join: 'room' must be 1-64 characters of A-Z a-z 0-9 . _ ~ -"
            )
        secret: str = _get(data, "secret", str, kind)
        if not 1 <= len(secret) <= MAX_SECRET:
            raise FrameError(
                ErrorCode.BAD_FRAME, f"join: 'secret' must be 1-{MAX_SECRET} characters"
            )
        session: str | None = _get(data, "session", str, kind, None)
        if session is not None and len(session) > MAX_SESSION:
            raise FrameError(ErrorCode.BAD_FRAME, "join: 'session' is too long")
        return Join(room, secret, _peer_id(data, "peer", kind), _name(data, kind), session)
    if kind == "relay":
        seq = _seq(data, kind)
        return Relay(seq, _data(data, seq))
    if kind == "ack":
        return Ack(_peer_id(data, "from", kind), _seq(data, kind, minimum=0))
    if kind == "ping":
        return Ping()
    if kind == "leave":
        return Leave()
    if kind == "ice-servers":
        return IceServersRequest()
    raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind!r}")


def _ice_servers(data: dict[str, Any], what: str) -> tuple[IceServer, ...]:
    entries = _get(data, "iceServers", list, what, [])
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise FrameError(ErrorCode.BAD_FRAME, f"{what}: 'iceServers' entries must be objects")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise FrameError(ErrorCode.BAD_FRAME, f"{what}: 'urls' must be a list of strings")
        out.append(
            IceServer(
                tuple(urls),
                _get(entry, "username", str, what, None),
                _get(entry, "credential", str, what, None),
            )
        )
    return tuple(out)


def parse_server_frame(text: str | bytes) -> ServerFrame:
    """Validate one frame the server sent; raises :class:`FrameError`."""
    data, kind = _load(text)
    if kind == "joined":
        peers = []
        for entry in _get(data, "peers", list, kind, []):
            if not isinstance(entry, dict):
                raise FrameError(ErrorCode.BAD_FRAME, "joined: 'peers' entries must be objects")
            peers.append(
                PeerInfo(
                    _peer_id(entry, "peer", kind),
                    _name(entry, kind),
                    _get(entry, "present", bool, kind),
                )
            )
        return Joined(
            room=_get(data, "room", str, kind),
            session=_get(data, "session", str, kind),
            resumed=_get(data, "resumed", bool, kind),
            peers=tuple(peers),
            acked=_seq(data | {"seq": data.get("ack")}, kind, minimum=0),
            ice_servers=_ice_servers(data, kind),
            max_message_bytes=_get(data, "maxMessageBytes", int, kind),
            heartbeat=float(_get(data, "heartbeat", float, kind)),
        )
    if kind == "peer-joined":
        return PeerJoined(
            _peer_id(data, "peer", kind),
            _name(data, kind),
            _get(data, "resumed", bool, kind, False),
        )
    if kind == "peer-left":
        reason: str = _get(data, "reason", str, kind)
        if reason not in PEER_LEFT_REASONS:
            raise FrameError(ErrorCode.BAD_FRAME, f"peer-left: unknown reason {reason!r}")
        return PeerLeft(_peer_id(data, "peer", kind), _name(data, kind), reason)
    if kind == "relay":
        seq = _seq(data, kind)
        return Deliver(_peer_id(data, "from", kind), seq, _data(data, seq))
    if kind == "ack":
        return Delivered(_seq(data, kind, minimum=0))
    if kind == "error":
        seq_value = data.get("seq")
        return ErrorFrame(
            _get(data, "code", str, kind),
            _get(data, "message", str, kind),
            _get(data, "fatal", bool, kind, False),
            _seq(data, kind, minimum=0) if seq_value is not None else None,
        )
    if kind == "pong":
        return Pong()
    if kind == "ice-servers":
        return IceServers(_ice_servers(data, kind))
    raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind!r}")
