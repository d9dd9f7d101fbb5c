"""STUN message codec (RFC 8489) with the TURN attributes (RFC 8656, RFC 6156) and ChannelData.

Pure functions and plain objects: bytes in, :class:`Message` out, and back. Attributes are declared
once, in :data:`ATTRIBUTES` (type, name, encode, decode); :class:`Attr` objects are typed handles
into that table, so ``msg.get(LIFETIME)`` is an ``int | None`` for the type checker.

Malformed input raises a subclass of :class:`nat.errors.StunError` (or
:class:`nat.errors.ChannelDataError`), never anything else: the server core relies on that.

Round trip: a parsed message keeps every attribute's wire bytes (value and padding), so
``bytes(parse_message(x)) == x`` for any well-formed message, including the RFC 5769 vectors whose
padding is not zero.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, Generic, NamedTuple, TypeVar

from nat.errors import ChannelDataError, StunAttributeError, StunFormatError

__all__ = [
    "ATTRIBUTES",
    "CHANNEL_DATA_HEADER",
    "HEADER_LENGTH",
    "MAGIC_COOKIE",
    "Attr",
    "ErrorCode",
    "Message",
    "Method",
    "MsgClass",
    "encode_channel_data",
    "message_integrity",
    "parse_channel_data",
    "parse_message",
    "stream_frame_length",
]

Address = tuple[str, int]
T = TypeVar("T")

HEADER_LENGTH: Final = 20
MAGIC_COOKIE: Final = 0x2112A442
_COOKIE_BYTES: Final = struct.pack(">I", MAGIC_COOKIE)
FINGERPRINT_XOR: Final = 0x5354554E
CHANNEL_DATA_HEADER: Final = 4
_INTEGRITY_LENGTH: Final = 20  # HMAC-SHA1
_HEADER = struct.Struct(">HHI12s")
_ATTR_HEADER = struct.Struct(">HH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Method(IntEnum):
    """STUN/TURN methods (RFC 8489 §18.2, RFC 8656 §17)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class MsgClass(IntEnum):
    """The two class bits C1 C0, already in their message-type positions (RFC 8489 §5)."""

    REQUEST = 0x000
    INDICATION = 0x010
    SUCCESS = 0x100
    ERROR = 0x110


def message_type(method: int, cls: int) -> int:
    """Interleave the 12 method bits with the class bits (RFC 8489 §5, figure 3)."""
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | cls


def split_message_type(msg_type: int) -> tuple[int, int]:
    """The inverse of :func:`message_type`: ``(method, class)``."""
    method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2)
    return method, msg_type & 0x0110


def _pad(length: int) -> int:
    """Bytes of padding after a value of ``length`` bytes (RFC 8489 §14: 32-bit boundaries)."""
    return -length & 3


class ErrorCode(NamedTuple):
    """The ERROR-CODE value: a 300..699 code and a reason phrase (RFC 8489 §14.8)."""

    code: int
    reason: str


# --- value codecs -------------------------------------------------------------------------------
# Each decoder takes (value, transaction_id) and raises ValueError/struct.error/UnicodeError on a
# malformed value; _decode_attribute turns those into StunAttributeError naming the attribute.


def _enc_u32(value: int, tid: bytes) -> bytes:
    return _U32.pack(value)


def _dec_u32(value: bytes, tid: bytes) -> int:
    if len(value) != 4:
        raise ValueError("expected 4 bytes")
    result: int = _U32.unpack(value)[0]
    return result


def _enc_u8_rffu(value: int, tid: bytes) -> bytes:
    """One byte then three reserved bytes (REQUESTED-TRANSPORT, REQUESTED-ADDRESS-FAMILY)."""
    return bytes((value, 0, 0, 0))


def _dec_u8_rffu(value: bytes, tid: bytes) -> int:
    if len(value) != 4:
        raise ValueError("expected 4 bytes")
    return value[0]


def _enc_u16_rffu(value: int, tid: bytes) -> bytes:
    """CHANNEL-NUMBER: two bytes of number, two reserved (RFC 8656 §18.1)."""
    return _U16.pack(value) + b"\x00\x00"


def _dec_u16_rffu(value: bytes, tid: bytes) -> int:
    if len(value) != 4:
        raise ValueError("expected 4 bytes")
    result: int = _U16.unpack_from(value)[0]
    return result


def _enc_bytes(value: bytes, tid: bytes) -> bytes:
    return value


def _dec_bytes(value: bytes, tid: bytes) -> bytes:
    return value


def _fixed_bytes(size: int) -> Callable[[bytes, bytes], bytes]:
    def decode(value: bytes, tid: bytes) -> bytes:
        if len(value) != size:
            raise ValueError(f"expected {size} bytes")
        return value

    return decode


def _text(limit: int) -> tuple[Callable[[str, bytes], bytes], Callable[[bytes, bytes], str]]:
    """UTF-8 text limited to ``limit`` bytes (RFC 8489 §14.3 USERNAME < 513, §14.9 REALM < 763)."""

    def encode(value: str, tid: bytes) -> bytes:
        return value.encode("utf-8")

    def decode(value: bytes, tid: bytes) -> str:
        if len(value) > limit:
            raise ValueError(f"longer than {limit} bytes")
        return value.decode("utf-8")

    return encode, decode


def _enc_empty(value: bool, tid: bytes) -> bytes:
    return b""


def _dec_empty(value: bytes, tid: bytes) -> bool:
    if value:
        raise ValueError("expected no value")
    return True


def _enc_even_port(value: bool, tid: bytes) -> bytes:
    """EVEN-PORT: one byte whose top bit R asks to reserve the next port (RFC 8656 §18.5)."""
    return b"\x80" if value else b"\x00"


def _dec_even_port(value: bytes, tid: bytes) -> bool:
    if len(value) != 1:
        raise ValueError("expected 1 byte")
    return bool(value[0] & 0x80)


def _enc_error_code(value: ErrorCode, tid: bytes) -> bytes:
    code, reason = value
    return bytes((0, 0, code // 100, code % 100)) + reason.encode("utf-8")


def _dec_error_code(value: bytes, tid: bytes) -> ErrorCode:
    if len(value) < 4:
        raise ValueError("shorter than 4 bytes")
    klass, number = value[2] & 0x07, value[3]
    if not 3 <= klass <= 6 or number > 99:
        raise ValueError(f"bad code {klass}{number:02d}")
    return ErrorCode(klass * 100 + number, value[4:].decode("utf-8"))


def _enc_address_error(value: tuple[int, ErrorCode], tid: bytes) -> bytes:
    family, (code, reason) = value
    return bytes((family, 0, code // 100, code % 100)) + reason.encode("utf-8")


def _dec_address_error(value: bytes, tid: bytes) -> tuple[int, ErrorCode]:
    """ADDRESS-ERROR-CODE (RFC 8656 §18.12): (family 1|2, ERROR-CODE-like code and reason)."""
    return value[0] if value else 0, _dec_error_code(value, tid)


def _enc_unknown(value: tuple[int, ...], tid: bytes) -> bytes:
    return b"".join(_U16.pack(t) for t in value)


def _dec_unknown(value: bytes, tid: bytes) -> tuple[int, ...]:
    if len(value) % 2:
        raise ValueError("odd length")
    return tuple(_U16.unpack_from(value, i)[0] for i in range(0, len(value), 2))


_FAMILY_V4: Final = 0x01
_FAMILY_V6: Final = 0x02


def _enc_address(value: Address, tid: bytes) -> bytes:
    host, port = value
    if ":" in host:
        return struct.pack(">BBH", 0, _FAMILY_V6, port) + socket.inet_pton(socket.AF_INET6, host)
    return struct.pack(">BBH", 0, _FAMILY_V4, port) + socket.inet_pton(socket.AF_INET, host)


def _dec_address(value: bytes, tid: bytes) -> Address:
    if len(value) < 4:
        raise ValueError("shorter than 4 bytes")
    family, port = value[1], _U16.unpack_from(value, 2)[0]
    if family == _FAMILY_V4 and len(value) == 8:
        return socket.inet_ntop(socket.AF_INET, value[4:]), port
    if family == _FAMILY_V6 and len(value) == 20:
        return socket.inet_ntop(socket.AF_INET6, value[4:]), port
    raise ValueError(f"bad family {family} or length {len(value)}")


def _xor(data: bytes, key: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(key[: len(data)], "big")).to_bytes(
        len(data), "big"
    )


def _enc_xor_address(value: Address, tid: bytes) -> bytes:
    """XOR-*-ADDRESS: port xor the cookie's top half, address xor cookie (+ tid for IPv6).

    RFC 8489 §14.2.
    """
    host, port = value
    xport = port ^ (MAGIC_COOKIE >> 16)
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host)
        return struct.pack(">BBH", 0, _FAMILY_V6, xport) + _xor(raw, _COOKIE_BYTES + tid)
    raw = socket.inet_pton(socket.AF_INET, host)
    return struct.pack(">BBH", 0, _FAMILY_V4, xport) + _xor(raw, _COOKIE_BYTES)


def _dec_xor_address(value: bytes, tid: bytes) -> Address:
    if len(value) < 4:
        raise ValueError("shorter than 4 bytes")
    family, port = value[1], _U16.unpack_from(value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    if family == _FAMILY_V4 and len(value) == 8:
        return socket.inet_ntop(socket.AF_INET, _xor(value[4:], _COOKIE_BYTES)), port
    if family == _FAMILY_V6 and len(value) == 20:
        return socket.inet_ntop(socket.AF_INET6, _xor(value[4:], _COOKIE_BYTES + tid)), port
    raise ValueError(f"bad family {family} or length {len(value)}")


# --- the attribute table ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Attr(Generic[T]):
    """One row of the attribute table: the wire type, its name and the value codec."""

    type: int
    name: str
    encode: Callable[[T, bytes], bytes]
    decode: Callable[[bytes, bytes], T]

    @property
    def comprehension_required(self) -> bool:
        """Types below 0x8000 must be understood or the request rejected (RFC 8489 §14)."""
        return self.type < 0x8000

    def __repr__(self) -> str:
        return f"<Attr {self.name} 0x{self.type:04x}>"


_username_codec = _text(512)
_realm_codec = _text(762)
_software_codec = _text(762)

# RFC 8489 §18.3, RFC 8656 §18, RFC 6156 §4.1, RFC 8445 §16.1 (ICE), RFC 5780 §7.
MAPPED_ADDRESS: Final = Attr(0x0001, "MAPPED-ADDRESS", _enc_address, _dec_address)
USERNAME: Final = Attr(0x0006, "USERNAME", *_username_codec)
MESSAGE_INTEGRITY: Final = Attr(
    0x0008, "MESSAGE-INTEGRITY", _enc_bytes, _fixed_bytes(_INTEGRITY_LENGTH)
)
ERROR_CODE: Final = Attr(0x0009, "ERROR-CODE", _enc_error_code, _dec_error_code)
UNKNOWN_ATTRIBUTES: Final = Attr(0x000A, "UNKNOWN-ATTRIBUTES", _enc_unknown, _dec_unknown)
CHANNEL_NUMBER: Final = Attr(0x000C, "CHANNEL-NUMBER", _enc_u16_rffu, _dec_u16_rffu)
LIFETIME: Final = Attr(0x000D, "LIFETIME", _enc_u32, _dec_u32)
XOR_PEER_ADDRESS: Final = Attr(0x0012, "XOR-PEER-ADDRESS", _enc_xor_address, _dec_xor_address)
DATA: Final = Attr(0x0013, "DATA", _enc_bytes, _dec_bytes)
REALM: Final = Attr(0x0014, "REALM", *_realm_codec)
NONCE: Final = Attr(0x0015, "NONCE", _enc_bytes, _dec_bytes)
XOR_RELAYED_ADDRESS: Final = Attr(0x0016, "XOR-RELAYED-ADDRESS", _enc_xor_address, _dec_xor_address)
REQUESTED_ADDRESS_FAMILY: Final = Attr(
    0x0017, "REQUESTED-ADDRESS-FAMILY", _enc_u8_rffu, _dec_u8_rffu
)
EVEN_PORT: Final = Attr(0x0018, "EVEN-PORT", _enc_even_port, _dec_even_port)
REQUESTED_TRANSPORT: Final = Attr(0x0019, "REQUESTED-TRANSPORT", _enc_u8_rffu, _dec_u8_rffu)
DONT_FRAGMENT: Final = Attr(0x001A, "DONT-FRAGMENT", _enc_empty, _dec_empty)
XOR_MAPPED_ADDRESS: Final = Attr(0x0020, "XOR-MAPPED-ADDRESS", _enc_xor_address, _dec_xor_address)
RESERVATION_TOKEN: Final = Attr(0x0022, "RESERVATION-TOKEN", _enc_bytes, _fixed_bytes(8))
PRIORITY: Final = Attr(0x0024, "PRIORITY", _enc_u32, _dec_u32)
USE_CANDIDATE: Final = Attr(0x0025, "USE-CANDIDATE", _enc_empty, _dec_empty)
ADDITIONAL_ADDRESS_FAMILY: Final = Attr(
    0x8000, "ADDITIONAL-ADDRESS-FAMILY", _enc_u8_rffu, _dec_u8_rffu
)
ADDITIONAL_ADDRESS_FAMILY_DRAFT: Final = Attr(
    0x8032, "ADDITIONAL-ADDRESS-FAMILY-DRAFT", _enc_u8_rffu, _dec_u8_rffu
)
"""The pre-RFC code point of ADDITIONAL-ADDRESS-FAMILY (draft-ietf-tram-turnbis), still sent by
coturn's turnutils_uclient -Z; accepted as an alias."""
ADDRESS_ERROR_CODE: Final = Attr(
    0x8001, "ADDRESS-ERROR-CODE", _enc_address_error, _dec_address_error
)
SOFTWARE: Final = Attr(0x8022, "SOFTWARE", *_software_codec)
ALTERNATE_SERVER: Final = Attr(0x8023, "ALTERNATE-SERVER", _enc_address, _dec_address)
FINGERPRINT: Final = Attr(0x8028, "FINGERPRINT", _enc_u32, _dec_u32)
ICE_CONTROLLED: Final = Attr(0x8029, "ICE-CONTROLLED", _enc_bytes, _fixed_bytes(8))
ICE_CONTROLLING: Final = Attr(0x802A, "ICE-CONTROLLING", _enc_bytes, _fixed_bytes(8))
RESPONSE_ORIGIN: Final = Attr(0x802B, "RESPONSE-ORIGIN", _enc_address, _dec_address)
OTHER_ADDRESS: Final = Attr(0x802C, "OTHER-ADDRESS", _enc_address, _dec_address)

ATTRIBUTES: Final[dict[int, Attr[Any]]] = {
    a.type: a
    for a in (
        MAPPED_ADDRESS,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
        CHANNEL_NUMBER,
        LIFETIME,
        XOR_PEER_ADDRESS,
        DATA,
        REALM,
        NONCE,
        XOR_RELAYED_ADDRESS,
        REQUESTED_ADDRESS_FAMILY,
        EVEN_PORT,
        REQUESTED_TRANSPORT,
        DONT_FRAGMENT,
        XOR_MAPPED_ADDRESS,
        RESERVATION_TOKEN,
        PRIORITY,
        USE_CANDIDATE,
        ADDITIONAL_ADDRESS_FAMILY,
        ADDRESS_ERROR_CODE,
        ADDITIONAL_ADDRESS_FAMILY_DRAFT,
        SOFTWARE,
        ALTERNATE_SERVER,
        FINGERPRINT,
        ICE_CONTROLLED,
        ICE_CONTROLLING,
        RESPONSE_ORIGIN,
        OTHER_ADDRESS,
    )
}
"""Every attribute this codec knows, by wire type. Others are kept as raw bytes."""


def _unknown_attr(attr_type: int) -> Attr[bytes]:
    return Attr(attr_type, f"0x{attr_type:04X}", _enc_bytes, _dec_bytes)


# --- integrity and fingerprint ------------------------------------------------------------------


def message_integrity(key: bytes, prefix: bytes) -> bytes:
    """HMAC-SHA1 over ``prefix`` (a message up to MESSAGE-INTEGRITY, its length already adjusted).

    RFC 8489 §14.5: the length field counts up to and including the MESSAGE-INTEGRITY attribute.
    """
    return hmac.digest(key, prefix, hashlib.sha1)


def _with_length(data: bytes | bytearray, body_length: int) -> bytes:
    return bytes(data[:2]) + _U16.pack(body_length) + bytes(data[4:])


def fingerprint(prefix: bytes) -> int:
    """CRC-32 of the message up to FINGERPRINT, xor 0x5354554e (RFC 8489 §14.7)."""
    return (binascii.crc32(prefix) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


# --- messages -----------------------------------------------------------------------------------


class _Entry(NamedTuple):
    attr: Attr[Any]
    value: Any
    wire: bytes | None  # value bytes as received (None for attributes added locally)
    padding: bytes  # padding bytes as received (zeros for local ones)


class Message:
    """A STUN message: method, class, transaction id and ordered attributes.

    ``integrity_offset`` / ``raw`` are set by :func:`parse_message` so the integrity of a
    received message can be checked with :meth:`check_integrity`.
    """

    __slots__ = ("_entries", "cls", "integrity_offset", "method", "raw", "transaction_id")

    def __init__(self, method: int, cls: int, transaction_id: bytes) -> None:
        if len(transaction_id) != 12:
            raise ValueError("a STUN transaction id is 12 bytes")
        self.method = method
        self.cls = cls
        self.transaction_id = transaction_id
        self._entries: list[_Entry] = []
        self.integrity_offset: int | None = None
        self.raw: bytes | None = None

    # -- attributes
    def add(self, attr: Attr[T], value: T) -> Message:
        """Append an attribute (repeats are allowed: e.g. several XOR-PEER-ADDRESS)."""
        self._entries.append(_Entry(attr, value, None, bytes(_pad(0))))
        return self

    def get(self, attr: Attr[T]) -> T | None:
        """The first value of ``attr``, or None."""
        for entry in self._entries:
            if entry.attr is attr:
                value: T = entry.value
                return value
        return None

    def get_all(self, attr: Attr[T]) -> list[T]:
        """Every value of ``attr``, in order."""
        return [e.value for e in self._entries if e.attr is attr]

    def __contains__(self, attr: Attr[Any]) -> bool:
        return any(e.attr is attr for e in self._entries)

    @property
    def attribute_types(self) -> list[int]:
        """The wire types of the attributes, in order."""
        return [e.attr.type for e in self._entries]

    def items(self) -> Iterator[tuple[Attr[Any], Any]]:
        """``(attr, value)`` pairs in order."""
        for entry in self._entries:
            yield entry.attr, entry.value

    def unknown_required(self) -> list[int]:
        """Comprehension-required attribute types this codec does not know (RFC 8489 §7.3.1)."""
        return [
            e.attr.type
            for e in self._entries
            if e.attr.type < 0x8000 and e.attr.type not in ATTRIBUTES
        ]

    # -- encoding
    def _attribute_bytes(self, skip_trailer: bool) -> bytearray:
        out = bytearray()
        tid = self.transaction_id
        for attr, value, wire, padding in self._entries:
            if skip_trailer and (attr is MESSAGE_INTEGRITY or attr is FINGERPRINT):
                continue
            body = wire if wire is not None else attr.encode(value, tid)
            out += _ATTR_HEADER.pack(attr.type, len(body))
            out += body
            out += padding if wire is not None else bytes(_pad(len(body)))
        return out

    def __bytes__(self) -> bytes:
        """The message as it would go on the wire, attributes exactly as stored."""
        body = self._attribute_bytes(skip_trailer=False)
        head = _HEADER.pack(
            message_type(self.method, self.cls), len(body), MAGIC_COOKIE, self.transaction_id
        )
        return head + bytes(body)

    def encode(self, key: bytes | None = None, *, add_fingerprint: bool = False) -> bytes:
        """Serialise, then append MESSAGE-INTEGRITY (if ``key``) and FINGERPRINT (if asked).

        Any MESSAGE-INTEGRITY/FINGERPRINT already stored is dropped and recomputed, so a
        parsed message can be re-signed.
        """
        body = self._attribute_bytes(skip_trailer=True)
        msg_type = message_type(self.method, self.cls)
        if key is not None:
            head = _HEADER.pack(msg_type, len(body) + 24, MAGIC_COOKIE, self.transaction_id)
            mac = message_integrity(key, head + body)
            body += _ATTR_HEADER.pack(MESSAGE_INTEGRITY.type, _INTEGRITY_LENGTH) + mac
        if add_fingerprint:
            head = _HEADER.pack(msg_type, len(body) + 8, MAGIC_COOKIE, self.transaction_id)
            crc = fingerprint(head + body)
            return head + bytes(body) + _ATTR_HEADER.pack(FINGERPRINT.type, 4) + _U32.pack(crc)
        return _HEADER.pack(msg_type, len(body), MAGIC_COOKIE, self.transaction_id) + body

    # -- checks on received messages
    def check_integrity(self, key: bytes) -> bool:
        """Whether the received MESSAGE-INTEGRITY matches ``key`` (RFC 8489 §14.5).

        False when the message was not parsed from bytes or carries no MESSAGE-INTEGRITY.
        """
        offset, raw = self.integrity_offset, self.raw
        if offset is None or raw is None:
            return False
        received = raw[offset + 4 : offset + 4 + _INTEGRITY_LENGTH]
        expected = message_integrity(key, _with_length(raw[:offset], offset + 24 - HEADER_LENGTH))
        return hmac.compare_digest(received, expected)

    def __repr__(self) -> str:
        try:
            name = Method(self.method).name
        except ValueError:
            name = f"0x{self.method:03x}"
        attrs = ", ".join(f"{a.name}={v!r}" for a, v in self.items())
        return f"Message({name} {MsgClass(self.cls).name} {self.transaction_id.hex()} [{attrs}])"


def _decode_attribute(attr: Attr[Any], value: bytes, tid: bytes) -> Any:
    try:
        return attr.decode(value, tid)
    except (ValueError, struct.error, UnicodeError, OSError) as exc:
        raise StunAttributeError(attr.type, f"malformed {attr.name} attribute: {exc}") from None


def parse_message(data: bytes) -> Message:
    """Parse one STUN message (RFC 8489 §5, §14); raises :class:`StunError` subclasses.

    The header must be well formed and ``data`` exactly one message. A FINGERPRINT, if present,
    must be last and correct (§14.7). Attributes after MESSAGE-INTEGRITY other than FINGERPRINT
    are ignored as §14.5 requires.
    """
    size = len(data)
    if size < HEADER_LENGTH:
        raise StunFormatError(f"STUN message too short: {size} bytes")
    msg_type, length, cookie, tid = _HEADER.unpack_from(data)
    if msg_type & 0xC000:
        raise StunFormatError("not a STUN message: first two bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunFormatError("not a STUN message: bad magic cookie")
    if length & 3:
        raise StunFormatError(f"STUN length {length} is not a multiple of 4")
    if length != size - HEADER_LENGTH:
        raise StunFormatError(
            f"STUN length {length} does not match the {size - HEADER_LENGTH} bytes received"
        )
    method, cls = split_message_type(msg_type)
    msg = Message(method, cls, tid)
    msg.raw = bytes(data)
    entries = msg._entries
    pos = HEADER_LENGTH
    after_integrity = False
    while pos < size:
        if pos + 4 > size:
            raise StunFormatError("truncated STUN attribute header")
        attr_type, attr_len = _ATTR_HEADER.unpack_from(data, pos)
        start = pos + 4
        end = start + attr_len
        padded_end = end + _pad(attr_len)
        if padded_end > size:
            raise StunFormatError(f"STUN attribute 0x{attr_type:04X} overruns the message")
        if attr_type == FINGERPRINT.type:
            if padded_end != size:
                raise StunFormatError("FINGERPRINT is not the last attribute")
            value = _decode_attribute(FINGERPRINT, bytes(data[start:end]), tid)
            if value != fingerprint(_with_length(data[:pos], pos + 8 - HEADER_LENGTH)):
                raise StunFormatError("FINGERPRINT does not match")
            entries.append(_Entry(FINGERPRINT, value, bytes(data[start:end]), b""))
            break
        if not after_integrity:
            attr = ATTRIBUTES.get(attr_type) or _unknown_attr(attr_type)
            wire = bytes(data[start:end])
            entries.append(
                _Entry(attr, _decode_attribute(attr, wire, tid), wire, bytes(data[end:padded_end]))
            )
            if attr is MESSAGE_INTEGRITY:
                msg.integrity_offset = pos
                after_integrity = True
        pos = padded_end
    return msg


# --- ChannelData (RFC 8656 §12.4) and stream framing --------------------------------------------

CHANNEL_MIN: Final = 0x4000
"""First channel number (RFC 8656 §12)."""
CHANNEL_MAX: Final = 0x7FFF
"""Last channel number accepted. RFC 8656 narrowed the range to 0x4FFF; RFC 5766 and coturn's
clients use up to 0x7FFF, so we accept the wider one."""


def parse_channel_data(data: bytes) -> tuple[int, bytes]:
    """``(channel number, application data)`` of a ChannelData message.

    Trailing padding (mandatory over TCP, optional over UDP, RFC 8656 §12.5) is ignored.
    """
    if len(data) < CHANNEL_DATA_HEADER:
        raise ChannelDataError(f"ChannelData too short: {len(data)} bytes")
    channel, length = struct.unpack_from(">HH", data)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ChannelDataError(f"bad channel number 0x{channel:04X}")
    if length > len(data) - CHANNEL_DATA_HEADER:
        raise ChannelDataError(
            f"ChannelData length {length} exceeds the {len(data) - 4} bytes received"
        )
    return channel, bytes(data[CHANNEL_DATA_HEADER : CHANNEL_DATA_HEADER + length])


def encode_channel_data(channel: int, payload: bytes, *, pad: bool = False) -> bytes:
    """A ChannelData message; ``pad`` to 4 bytes for TCP/TLS (RFC 8656 §12.5)."""
    head = struct.pack(">HH", channel, len(payload))
    if pad and len(payload) & 3:
        return head + payload + bytes(_pad(len(payload)))
    return head + payload


def stream_frame_length(buffer: bytes | bytearray | memoryview, pos: int = 0) -> int | None:
    """Bytes taken by the next STUN or ChannelData message at ``pos`` in a TCP stream's buffer.

    None means more bytes are needed; raises :class:`StunFormatError` when the stream cannot be
    STUN/TURN at all (the connection should be closed). RFC 8656 §12.5: ChannelData over a
    stream is padded to a multiple of 4, its length field not counting the padding. (An offset
    rather than a slice: no copy per frame on the TCP hot path.)
    """
    if len(buffer) - pos < 4:
        return None
    first = buffer[pos]
    length = (buffer[pos + 2] << 8) | buffer[pos + 3]
    if first < 0x40:
        return HEADER_LENGTH + length
    if first < 0x80:
        return CHANNEL_DATA_HEADER + length + (-length & 3)
    raise StunFormatError(f"stream byte 0x{first:02X} starts neither STUN nor ChannelData")


# --- fast paths for relayed traffic -------------------------------------------------------------


def scan_send_indication(
    data: bytes, known_required: frozenset[int] | None = None
) -> tuple[Address, bytes] | None:
    """``(peer, payload)`` of a Send indication, or None if either attribute is missing.

    With ``known_required``, an indication carrying any other comprehension-required attribute
    type also gives None: RFC 8489 §6.3.2 says to discard it.

    A lean walk over the attributes (no objects, no decoding of others) for the relay's hot path;
    ``data`` must already be known to be a STUN Send indication of consistent length. Raises
    :class:`StunError` subclasses on malformed framing or XOR-PEER-ADDRESS.
    """
    size = len(data)
    pos = HEADER_LENGTH
    peer_raw: bytes | None = None
    payload: bytes | None = None
    while pos + 4 <= size:
        attr_type, attr_len = _ATTR_HEADER.unpack_from(data, pos)
        start = pos + 4
        end = start + attr_len
        if end > size:
            raise StunFormatError(f"STUN attribute 0x{attr_type:04X} overruns the message")
        if attr_type == 0x0013 and payload is None:
            payload = data[start:end]
        elif attr_type == 0x0012 and peer_raw is None:
            peer_raw = data[start:end]
        elif attr_type == 0x0008:  # MESSAGE-INTEGRITY: nothing after it counts (§14.5)
            break
        elif known_required is not None and attr_type < 0x8000 and attr_type not in known_required:
            return None
        pos = end + (-attr_len & 3)
    if peer_raw is None or payload is None:
        return None
    # An IPv4 XOR address does not depend on the transaction id: remember the decoded form
    # (a client sends to few peers, thousands of times a second). Bounded.
    if len(peer_raw) == 8:
        return xor_peer_v4(peer_raw), payload
    return _decode_attribute(XOR_PEER_ADDRESS, peer_raw, data[8:20]), payload


_PEER_CACHE: dict[bytes, Address] = {}
_PEER_CACHE_MAX = 4096

SEND_INDICATION_V4_END: Final = 36
"""Where the DATA value starts in a Send indication laid out as :data:`SEND_INDICATION_V4_HEAD`."""
SEND_INDICATION_V4_HEAD: Final = struct.Struct(">HH8sHH")
"""What every client we know sends as a Send indication (RFC 8656 §11.2): after the 20-byte
header, XOR-PEER-ADDRESS with an IPv4 address (type 0x0012, length 8, the 8 value bytes) and then
DATA's type (0x0013) and length. One unpack instead of an attribute walk on the hot path."""

SEND_INDICATION_V4_FRAME: Final = struct.Struct(">H16xHH8sHH")
"""From offset 2 of a Send indication: the message length, then (past the magic cookie and the
transaction id) the fields of :data:`SEND_INDICATION_V4_HEAD`; one unpack for both checks."""


def xor_peer_v4(raw: bytes) -> Address:
    """The peer of an IPv4 XOR-PEER-ADDRESS value (8 bytes; RFC 8489 §14.2: an IPv4 XOR address
    does not depend on the transaction id, so decoded forms are remembered, bounded). Raises
    :class:`StunAttributeError` when malformed (e.g. the IPv6 family with 8 bytes)."""
    peer = _PEER_CACHE.get(raw)
    if peer is None:
        peer = _decode_attribute(XOR_PEER_ADDRESS, raw, b"")
        if len(_PEER_CACHE) >= _PEER_CACHE_MAX:
            _PEER_CACHE.clear()
        _PEER_CACHE[raw] = peer
    return peer


def send_indication_parts(
    data: bytes, known_required: frozenset[int] | None = None
) -> tuple[Address, bytes] | None:
    """:func:`scan_send_indication`, with the usual layout taken in one step.

    When XOR-PEER-ADDRESS (IPv4) comes first and DATA second with nothing but padding after it
    (:data:`SEND_INDICATION_V4_HEAD`), the walk would find exactly these two attributes, so they
    are read at their fixed offsets; any other layout takes the walk. Same results and the same
    exceptions as :func:`scan_send_indication` for every input.
    """
    size = len(data)
    if size >= SEND_INDICATION_V4_END:
        peer_type, peer_len, raw, data_type, n = SEND_INDICATION_V4_HEAD.unpack_from(data, 20)
        end = SEND_INDICATION_V4_END + n
        # (size - end < 4: the walk stops there too, whatever padding is or is not present)
        if peer_type == 0x0012 and peer_len == 8 and data_type == 0x0013 and 0 <= size - end < 4:
            return _PEER_CACHE.get(raw) or xor_peer_v4(raw), data[SEND_INDICATION_V4_END:end]
    return scan_send_indication(data, known_required)


def encode_data_indication(
    transaction_id: bytes, peer: Address, payload: bytes, *, add_fingerprint: bool
) -> bytes:
    """A Data indication carrying ``payload`` from ``peer`` (RFC 8656 §11.4), built directly."""
    addr = _enc_xor_address(peer, transaction_id)
    n = len(payload)
    pad = -n & 3
    length = 4 + len(addr) + 4 + n + pad + (8 if add_fingerprint else 0)
    out = b"".join(
        (
            _HEADER.pack(0x0017, length, MAGIC_COOKIE, transaction_id),
            _ATTR_HEADER.pack(0x0012, len(addr)),
            addr,
            _ATTR_HEADER.pack(0x0013, n),
            payload,
            b"\x00\x00\x00"[:pad],
        )
    )
    if add_fingerprint:
        return out + _ATTR_HEADER.pack(0x8028, 4) + _U32.pack(fingerprint(out))
    return out


def data_indication_encoder(*, add_fingerprint: bool) -> Callable[[bytes, Address, bytes], bytes]:
    """A lean :func:`encode_data_indication` for the relay's peer -> client hot path.

    Returns ``encode(transaction_id, peer, payload)`` giving exactly the bytes
    :func:`encode_data_indication` (and :class:`Message`) would. An IPv4 XOR-PEER-ADDRESS does
    not depend on the transaction id (RFC 8489 §14.2), so its whole attribute is kept per peer
    (bounded) and the header, that attribute and DATA's header are one struct pack; an IPv6
    one XORs the transaction id too, so IPv6 peers take :func:`encode_data_indication`.
    """
    pack = struct.Struct(">HHI12s12sHH").pack  # header, XOR-PEER-ADDRESS (IPv4), DATA's header
    trailer = 8 if add_fingerprint else 0
    cookie = MAGIC_COOKIE
    crc32 = binascii.crc32
    fp_pack = struct.Struct(">HHI").pack
    pads = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")
    attributes: dict[Address, bytes] = {}

    def encode(transaction_id: bytes, peer: Address, payload: bytes) -> bytes:
        attribute = attributes.get(peer)
        if attribute is None:
            if ":" in peer[0]:
                return encode_data_indication(
                    transaction_id, peer, payload, add_fingerprint=add_fingerprint
                )
            attribute = _ATTR_HEADER.pack(0x0012, 8) + _enc_xor_address(peer, b"")
            if len(attributes) >= _PEER_CACHE_MAX:
                attributes.clear()
            attributes[peer] = attribute
        n = len(payload)
        pad = -n & 3
        head = pack(0x0017, 16 + n + pad + trailer, cookie, transaction_id, attribute, 0x0013, n)
        if pad:
            payload += pads[pad]
        if add_fingerprint:  # RFC 8489 §14.7: CRC-32 of everything before it, xor 0x5354554e
            crc = (crc32(payload, crc32(head)) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            return b"".join((head, payload, fp_pack(0x8028, 4, crc)))
        return head + payload

    return encode


def binding_response_encoder(
    software: str, *, add_fingerprint: bool
) -> Callable[[bytes, Address], bytes]:
    """A lean encoder of Binding success responses for the server's hot path.

    Returns ``encode(transaction_id, mapped)`` giving exactly the bytes :class:`Message` would
    (XOR-MAPPED-ADDRESS, SOFTWARE, then FINGERPRINT if asked; RFC 8489 §6.3.1, §14.7): the
    SOFTWARE attribute is encoded once here, the address is packed with struct and the
    fingerprint is one CRC-32.
    """
    name = _software_codec[0](software, b"")
    software_tlv = _ATTR_HEADER.pack(SOFTWARE.type, len(name)) + name + bytes(_pad(len(name)))
    trailer = 8 if add_fingerprint else 0
    length_v4 = 12 + len(software_tlv) + trailer
    length_v6 = 24 + len(software_tlv) + trailer
    xport = MAGIC_COOKIE >> 16
    cookie = MAGIC_COOKIE
    header = _HEADER.pack
    v4 = struct.Struct(">HHBBHI").pack
    inet_pton = socket.inet_pton
    crc32 = binascii.crc32
    fp_head = _ATTR_HEADER.pack(0x8028, 4)
    u32 = _U32.pack
    tails: dict[Address, bytes] = {}

    def encode(transaction_id: bytes, mapped: Address) -> bytes:
        host, port = mapped
        if ":" in host:
            raw = _xor(inet_pton(socket.AF_INET6, host), _COOKIE_BYTES + transaction_id)
            head = header(0x0101, length_v6, cookie, transaction_id)
            attr = _ATTR_HEADER.pack(0x0020, 20) + struct.pack(">BBH", 0, _FAMILY_V6, port ^ xport)
            out = head + attr + raw + software_tlv
        else:
            # An IPv4 XOR-MAPPED-ADDRESS does not depend on the transaction id (RFC 8489
            # §14.2): kept per client with SOFTWARE after it, as Binding floods repeat sources.
            tail = tails.get(mapped)
            if tail is None:
                address = int.from_bytes(inet_pton(socket.AF_INET, host), "big") ^ cookie
                tail = v4(0x0020, 8, 0, _FAMILY_V4, port ^ xport, address) + software_tlv
                if len(tails) >= _PEER_CACHE_MAX:
                    tails.clear()
                tails[mapped] = tail
            out = header(0x0101, length_v4, cookie, transaction_id) + tail
        if add_fingerprint:
            return out + fp_head + u32((crc32(out) ^ FINGERPRINT_XOR) & 0xFFFFFFFF)
        return out

    return encode


def challenge_encoder(
    realm: str, software: str, *, add_fingerprint: bool
) -> Callable[[int, bytes, int, str, bytes], bytes]:
    """A lean encoder of unsigned 401/438 challenges (RFC 8489 §9.2.4) for floods of
    unauthenticated requests.

    Returns ``encode(method, transaction_id, code, reason, nonce)`` giving exactly the bytes
    :class:`Message` would (ERROR-CODE, REALM, NONCE, SOFTWARE, then FINGERPRINT if asked): the
    constant attributes are encoded once, per error code on first use.
    """

    def tlv(attr: Attr[Any], value: Any) -> bytes:
        body = attr.encode(value, bytes(12))
        return _ATTR_HEADER.pack(attr.type, len(body)) + body + bytes(_pad(len(body)))

    realm_tlv = tlv(REALM, realm)
    software_tlv = tlv(SOFTWARE, software)
    errors: dict[tuple[int, str], bytes] = {}
    header = _HEADER.pack
    crc32 = binascii.crc32
    fp_head = _ATTR_HEADER.pack(0x8028, 4)
    u32 = _U32.pack
    nonce_type = NONCE.type
    trailer = 8 if add_fingerprint else 0

    def encode(method: int, transaction_id: bytes, code: int, reason: str, nonce: bytes) -> bytes:
        error = errors.get((code, reason))
        if error is None:
            error = errors[code, reason] = tlv(ERROR_CODE, ErrorCode(code, reason)) + realm_tlv
        body = (
            error
            + _ATTR_HEADER.pack(nonce_type, len(nonce))
            + nonce
            + bytes(_pad(len(nonce)))
            + software_tlv
        )
        msg_type = message_type(method, MsgClass.ERROR)
        out = header(msg_type, len(body) + trailer, MAGIC_COOKIE, transaction_id) + body
        if add_fingerprint:
            return out + fp_head + u32((crc32(out) ^ FINGERPRINT_XOR) & 0xFFFFFFFF)
        return out

    return encode
