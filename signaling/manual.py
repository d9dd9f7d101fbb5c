"""Copy-paste signaling: the offer and answer travel as one-line text blobs the users paste.

A blob is one line of plain ASCII that survives e-mail and chat::

    peercall1:offer:1403:MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43UOV3HO6DZPI...:3A5F09C2

``peercall1`` is the format version, then the kind (``offer`` or ``answer``), the payload
length in characters, the payload, and a CRC-32 (upper-case hex) over everything before it.
The payload is the message's JSON (:mod:`signaling.messages`) compressed with zlib and written
in upper-case RFC 4648 base32 without padding: no punctuation for markdown or URL detectors to
eat, nothing a mail client re-encodes. Decoding skips whitespace, line breaks, ``>`` quote
marks and invisible characters (zero-width spaces, soft hyphens) that wrapping and quoting
insert, ignores text around the blob, and accepts an auto-capitalised ``Peercall1:``. Thanks to
the length and the checksum, a truncated or corrupted paste is reported as such, in one line.

:class:`ManualChannel` puts this behind :class:`signaling.base.SignalingChannel` for the CLI
(``stdin``/``stdout``, see :func:`stdio_channel`) and the GUI (its text boxes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import sys
import threading
import zlib
from collections.abc import Awaitable, Callable
from typing import Final

from signaling import messages
from signaling.errors import (
    BlobCorrupted,
    BlobError,
    BlobNotFound,
    BlobTruncated,
    ChannelClosed,
    MessageError,
)
from signaling.messages import Answer, Message, Offer

logger = logging.getLogger(__name__)

BLOB_VERSION: Final = 1
PREFIX: Final = f"peercall{BLOB_VERSION}:"
# Longest payload accepted, in characters: far above any real SDP (64 KiB max, compressed).
MAX_PAYLOAD_CHARS: Final = 200_000
# Longest decompressed JSON accepted: the largest valid message plus JSON overhead.
MAX_JSON_BYTES: Final = messages.MAX_SDP_LENGTH * 2 + 1024

_BASE32: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_HEX: Final = frozenset("0123456789ABCDEF")
# What pastes insert into a long line: wrapping, quoting ('> '), and invisible characters
# (NBSP, soft hyphen, zero-width space/joiners, word joiner, BOM).
_SKIP: Final = frozenset(" \t\r\n\v\f>\u00a0\u00ad\u200b\u200c\u200d\u2060\ufeff")
_KINDS: Final = {"offer": Offer, "answer": Answer}
_PREFIX_RE: Final = re.compile(r"peercall(\d+):", re.IGNORECASE)


def encode_blob(message: Offer | Answer) -> str:
    """The one-line, checksummed blob carrying ``message`` (an offer or an answer)."""
    if not isinstance(message, Offer | Answer):
        raise MessageError(f"only offers and answers travel as blobs, not {type(message).__name__}")
    kind = "offer" if isinstance(message, Offer) else "answer"
    packed = zlib.compress(messages.encode(message).encode("utf-8"), 9)
    payload = base64.b32encode(packed).decode("ascii").rstrip("=")
    head = f"{PREFIX}{kind}:{len(payload)}:{payload}"
    return f"{head}:{zlib.crc32(head.encode('ascii')):08X}"


class _Cursor:
    """Walks the significant characters of pasted text, skipping what pastes insert."""

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos
        self.taken = 0  # significant characters consumed so far

    def peek(self) -> str | None:
        while self.pos < len(self.text) and self.text[self.pos] in _SKIP:
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else None

    def take(self) -> str:
        char = self.peek()
        assert char is not None
        self.pos += 1
        self.taken += 1
        return char

    def field(self, allowed: str, max_len: int) -> str | None:
        """Characters from ``allowed`` up to a ':' (consumed); None if the text ends first."""
        out: list[str] = []
        while True:
            char = self.peek()
            if char is None:
                return None
            if char == ":":
                self.take()
                return "".join(out)
            if char not in allowed or len(out) >= max_len:
                raise BlobCorrupted("PeerCall blob is corrupted (its header is damaged)")
            out.append(self.take())


def find_blob(text: str) -> int:
    """Index just past the first ``peercall1:`` in ``text``; raises :class:`BlobError`."""
    match = _PREFIX_RE.search(text)
    if match is None:
        raise BlobNotFound(f"not a PeerCall blob (expected it to start with {PREFIX!r})")
    if match.group(1) != str(BLOB_VERSION):
        raise BlobError(
            f"unsupported blob version {match.group(0)!r} (this PeerCall reads {PREFIX!r}); "
            "update PeerCall"
        )
    return match.end()


def decode_blob(text: str) -> Offer | Answer:
    """The offer or answer in pasted ``text``; raises a one-line :class:`BlobError` subclass.

    ``text`` may contain surrounding words, line breaks, quote marks and auto-capitalisation.
    """
    cursor = _Cursor(text, find_blob(text))
    cursor.taken = len(PREFIX)
    kind = cursor.field("abcdefghijklmnopqrstuvwxyz", 6)
    length_text = None if kind is None else cursor.field("0123456789", 7)
    if kind is None or length_text is None:
        raise BlobTruncated("PeerCall blob is truncated (it ends inside its header)")
    if kind not in _KINDS:
        raise BlobCorrupted(f"PeerCall blob is corrupted (unknown kind {kind!r})")
    if not length_text or int(length_text) > MAX_PAYLOAD_CHARS:
        raise BlobCorrupted(f"{kind} blob is corrupted (bad length {length_text!r})")
    length = int(length_text)
    head = f"{PREFIX}{kind}:{length}:"
    total = len(head) + length + 1 + 8

    def truncated() -> BlobTruncated:
        return BlobTruncated(f"{kind} blob is truncated (got {cursor.taken} of {total} characters)")

    payload: list[str] = []
    while len(payload) < length:
        char = cursor.peek()
        if char is None:
            raise truncated()
        if char == ":":
            # The checksum follows, so the middle of the blob went missing or was mangled.
            raise BlobCorrupted(
                f"{kind} blob is corrupted (payload has {len(payload)} of {length} characters)"
            )
        if char not in _BASE32:
            raise truncated()
        payload.append(cursor.take())
    char = cursor.peek()
    if char is None:
        raise truncated()
    if char != ":":
        if char in _BASE32:
            raise BlobCorrupted(f"{kind} blob is corrupted (payload longer than {length})")
        raise truncated()
    cursor.take()
    checksum: list[str] = []
    while len(checksum) < 8:
        char = cursor.peek()
        if char is None or (char not in _HEX and not char.isalnum()):
            raise truncated()
        if char not in _HEX:
            raise BlobCorrupted(f"{kind} blob is corrupted (bad checksum characters)")
        checksum.append(cursor.take())

    body = "".join(payload)
    if zlib.crc32((head + body).encode("ascii")) != int("".join(checksum), 16):
        raise BlobCorrupted(f"{kind} blob is corrupted (checksum mismatch)")
    return _unpack(kind, body)


def _unpack(kind: str, body: str) -> Offer | Answer:
    """Payload characters -> message; the checksum matched, so failures mean a forged blob."""
    try:
        packed = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise BlobCorrupted(f"{kind} blob is corrupted (payload is not base32)") from None
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(packed, MAX_JSON_BYTES)
    except zlib.error:
        raise BlobCorrupted(f"{kind} blob is corrupted (payload does not decompress)") from None
    if inflater.unconsumed_tail:
        raise BlobCorrupted(f"{kind} blob is corrupted (payload larger than {MAX_JSON_BYTES})")
    if not inflater.eof:
        raise BlobCorrupted(f"{kind} blob is corrupted (payload is incomplete)")
    try:
        message = messages.decode(data)
    except MessageError as exc:
        raise BlobCorrupted(f"{kind} blob holds an invalid message ({exc})") from None
    if isinstance(message, Offer | Answer) and isinstance(message, _KINDS[kind]):
        return message
    raise BlobCorrupted(f"{kind} blob holds a {type(message).__name__.lower()}")


LineReader = Callable[[], Awaitable[str | None]]
"""Returns the next line (or box) of pasted text; ``None`` once input has ended."""
TextWriter = Callable[[str], Awaitable[None]]


async def _log_notice(text: str) -> None:
    logger.warning("%s", text)


class ManualChannel:
    """:class:`~signaling.base.SignalingChannel` over a human who copies and pastes blobs.

    ``write`` receives each outgoing blob (one line); ``read_line`` supplies pasted text;
    ``notify`` receives one-line complaints about a bad paste (then the user pastes again).
    Candidates, end-of-candidates and bye cannot reach the peer this way and are dropped:
    the blob's SDP already carries the gathered candidates (``supports_trickle = False``).
    """

    supports_trickle = False

    def __init__(
        self,
        read_line: LineReader,
        write: TextWriter,
        *,
        notify: TextWriter | None = None,
        max_paste_chars: int = 2 * MAX_PAYLOAD_CHARS,
    ) -> None:
        self._read_line = read_line
        self._write = write
        self._notify = notify or _log_notice
        self._max_paste_chars = max_paste_chars
        self._closed = False
        self._reading: asyncio.Future[str | None] | None = None

    async def connect(self) -> None:
        if self._closed:
            raise ChannelClosed("manual channel is closed")

    async def send(self, message: Message) -> None:
        if self._closed:
            raise ChannelClosed("manual channel is closed")
        if isinstance(message, Offer | Answer):
            await self._write(encode_blob(message))
        else:
            logger.debug("manual channel drops %s (no trickle over copy-paste)", message)

    async def receive(self) -> Message:
        """Read pasted text until it holds a complete, valid blob; complain and retry otherwise.

        A paste may span several lines (wrapped by the mail client): a truncated blob waits
        for more lines; a blank line or the start of another blob ends the attempt.
        """
        buffer = ""
        while True:
            chunk = await self._next_chunk()
            if not chunk.strip():
                if buffer:
                    await self._complain(buffer)
                    buffer = ""
                continue
            if buffer and _PREFIX_RE.search(chunk):
                await self._complain(buffer)
                buffer = ""
            buffer += chunk if chunk.endswith("\n") else chunk + "\n"
            try:
                return decode_blob(buffer)
            except BlobTruncated as exc:
                if len(buffer) > self._max_paste_chars:
                    await self._notify(f"{exc}; paste it again")
                    buffer = ""
            except BlobError as exc:
                await self._notify(f"{exc}; paste it again")
                buffer = ""

    async def _complain(self, buffer: str) -> None:
        try:
            decode_blob(buffer)
        except BlobError as exc:
            await self._notify(f"{exc}; paste it again")

    async def _next_chunk(self) -> str:
        if self._closed:
            raise ChannelClosed("manual channel is closed")
        self._reading = asyncio.ensure_future(self._read_line())
        try:
            chunk = await self._reading
        except asyncio.CancelledError:
            if self._closed:
                raise ChannelClosed("manual channel is closed") from None
            raise
        except EOFError:
            chunk = None
        finally:
            self._reading = None
        if chunk is None:
            self._closed = True
            raise ChannelClosed("input ended before a blob was pasted")
        return chunk

    async def close(self) -> None:
        self._closed = True
        if self._reading is not None:
            self._reading.cancel()


def stdin_reader() -> LineReader:
    """Lines of stdin on the running loop (``None`` at end of input), for pastes and chat.

    stdin is read by a daemon thread (works for terminals, pipes and files alike, and never
    keeps the process alive at exit the way a blocked executor thread would), started on the
    first read.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in iter(sys.stdin.readline, ""):
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    started = False

    async def read_line() -> str | None:
        nonlocal started
        if not started:
            started = True
            threading.Thread(target=pump, name="peercall-stdin", daemon=True).start()
        return await lines.get()

    return read_line


def stdio_channel(read_line: LineReader | None = None) -> ManualChannel:
    """A :class:`ManualChannel` for the terminal: blobs on stdout, pastes from stdin.

    Complaints go to stderr so that stdout carries only blobs (scripts can pipe them). Pass
    ``read_line`` (from :func:`stdin_reader`) to keep reading the same stdin after the blobs.
    """

    async def write(text: str) -> None:
        print(text, flush=True)

    async def notify(text: str) -> None:
        print(f"peercall: {text}", file=sys.stderr, flush=True)

    return ManualChannel(read_line or stdin_reader(), write, notify=notify)
