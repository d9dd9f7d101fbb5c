"""The call-level signaling messages and their versioned JSON codec.

Wire format (version 1)::

    {"v": 1, "type": "offer",     "sdp": "<session description>", "name": "Alice"}
    {"v": 1, "type": "answer",    "sdp": "<session description>", "name": "Bob"}
    {"v": 1, "type": "candidate", "candidate": "candidate:...", "sdpMid": "0", "sdpMLineIndex": 0}
    {"v": 1, "type": "end-of-candidates"}
    {"v": 1, "type": "bye", "reason": "hangup"}

``name`` (optional, at most 64 characters) is the sender's display name, shown in the ring,
the chat and the history; older peers leave it out and ignore it.

``candidate`` uses the SDP ``a=candidate`` attribute value without the ``a=`` (RFC 8839 §5.1),
as browsers' ``RTCIceCandidate.candidate`` does. Backends may wrap these in their own envelopes
(rooms, presence); this module is only what two engines say to each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from signaling.errors import MessageError

PROTOCOL_VERSION = 1
MAX_SDP_LENGTH = 64 * 1024
MAX_CANDIDATE_LENGTH = 1024
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class Offer:
    sdp: str
    name: str | None = None  # the caller's display name (optional)

    def __post_init__(self) -> None:
        _check_sdp(self.sdp, "offer")
        _check_name(self.name, "offer")


@dataclass(frozen=True)
class Answer:
    sdp: str
    name: str | None = None  # the callee's display name (optional)

    def __post_init__(self) -> None:
        _check_sdp(self.sdp, "answer")
        _check_name(self.name, "answer")


@dataclass(frozen=True)
class Candidate:
    candidate: str
    sdp_mid: str | None = "0"
    sdp_mline_index: int | None = 0

    def __post_init__(self) -> None:
        if not self.candidate.startswith("candidate:"):
            raise MessageError("candidate: value must start with 'candidate:'")
        if len(self.candidate) > MAX_CANDIDATE_LENGTH:
            raise MessageError(f"candidate: longer than {MAX_CANDIDATE_LENGTH} characters")
        if self.sdp_mid is None and self.sdp_mline_index is None:
            raise MessageError("candidate: needs sdpMid or sdpMLineIndex")


@dataclass(frozen=True)
class EndOfCandidates:
    pass


@dataclass(frozen=True)
class Bye:
    reason: str = "hangup"


Message = Offer | Answer | Candidate | EndOfCandidates | Bye


def _check_sdp(sdp: str, what: str) -> None:
    if not sdp.startswith("v=0"):
        raise MessageError(f"{what}: sdp does not start with 'v=0'")
    if len(sdp) > MAX_SDP_LENGTH:
        raise MessageError(f"{what}: sdp longer than {MAX_SDP_LENGTH} characters")


def _check_name(name: str | None, what: str) -> None:
    if name is None:
        return
    if len(name) > MAX_NAME_LENGTH:
        raise MessageError(f"{what}: name longer than {MAX_NAME_LENGTH} characters")
    if any(not c.isprintable() for c in name):
        raise MessageError(f"{what}: name contains control characters")


def to_dict(message: Message) -> dict[str, Any]:
    """The JSON-ready form of ``message``."""
    body: dict[str, Any]
    match message:
        case Offer(sdp=sdp, name=name):
            body = {"type": "offer", "sdp": sdp, **({"name": name} if name else {})}
        case Answer(sdp=sdp, name=name):
            body = {"type": "answer", "sdp": sdp, **({"name": name} if name else {})}
        case Candidate(candidate=c, sdp_mid=mid, sdp_mline_index=idx):
            body = {"type": "candidate", "candidate": c, "sdpMid": mid, "sdpMLineIndex": idx}
        case EndOfCandidates():
            body = {"type": "end-of-candidates"}
        case Bye(reason=reason):
            body = {"type": "bye", "reason": reason}
    return {"v": PROTOCOL_VERSION, **body}


def encode(message: Message) -> str:
    """Serialise ``message`` to compact JSON."""
    return json.dumps(to_dict(message), separators=(",", ":"))


def _field(data: dict[str, Any], name: str, kind: type, what: str, optional: bool = False) -> Any:
    if name not in data or data[name] is None:
        if optional:
            return None
        raise MessageError(f"{what}: missing field '{name}'")
    value = data[name]
    # bool is an int subclass; a JSON true must not pass as an index.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MessageError(f"{what}: field '{name}' must be {kind.__name__}")
    return value


def from_dict(data: Any) -> Message:
    """Validate and build a message from its decoded-JSON form; raises :class:`MessageError`."""
    if not isinstance(data, dict):
        raise MessageError("message must be a JSON object")
    version = data.get("v")
    if version != PROTOCOL_VERSION:
        raise MessageError(f"unsupported protocol version {version!r} (expected 1)")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise MessageError("message has no 'type'")
    if kind == "offer":
        return Offer(_field(data, "sdp", str, kind), _field(data, "name", str, kind, True))
    if kind == "answer":
        return Answer(_field(data, "sdp", str, kind), _field(data, "name", str, kind, True))
    if kind == "candidate":
        return Candidate(
            _field(data, "candidate", str, kind),
            _field(data, "sdpMid", str, kind, optional=True),
            _field(data, "sdpMLineIndex", int, kind, optional=True),
        )
    if kind == "end-of-candidates":
        return EndOfCandidates()
    if kind == "bye":
        reason = _field(data, "reason", str, kind, optional=True)
        return Bye(reason if reason is not None else "hangup")
    raise MessageError(f"unknown message type {kind!r}")


def decode(text: str | bytes) -> Message:
    """Parse JSON text into a validated message; raises :class:`MessageError`."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"malformed JSON: {exc}") from None
    return from_dict(data)
