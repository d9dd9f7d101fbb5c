from __future__ import annotations

import asyncio
import re
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.base import SignalingChannel
from signaling.errors import (
    BlobCorrupted,
    BlobError,
    BlobNotFound,
    BlobTruncated,
    ChannelClosed,
    MessageError,
)
from signaling.manual import PREFIX, ManualChannel, decode_blob, encode_blob
from signaling.messages import Answer, Bye, Candidate, EndOfCandidates, Offer
from tests.signaling.conftest import wired_manual_pair

# An offer as aiortc writes it (audio + data channel, host and srflx candidates).
SDP = "\r\n".join(
    [
        "v=0",
        "o=- 3911447254 3911447254 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic:WMS *",
        "m=audio 50123 UDP/TLS/RTP/SAVPF 96 0 8",
        "c=IN IP4 192.0.2.10",
        "a=sendrecv",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=mid:0",
        "a=msid:4d2c5a3e-1f0e-4e0b-9a55-1f3c2b1a0d9e 7c0a6b8e-2d3f-4a5b-8c9d-0e1f2a3b4c5d",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=rtcp-mux",
        "a=ssrc:1804289383 cname:0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=candidate:3a8b2e0c 1 udp 2130706431 192.0.2.10 50123 typ host",
        "a=candidate:7f1c9d2a 1 udp 1694498815 198.51.100.7 61000 typ srflx raddr "
        "192.0.2.10 rport 50123",
        "a=end-of-candidates",
        "a=ice-ufrag:Xk3q",
        "a=ice-pwd:Qm1t9vB3cJ0aZ8rYw2LpE5",
        "a=fingerprint:sha-256 4F:2A:91:0C:7D:E3:55:B8:16:A0:C2:9E:3B:71:D4:08:6F:E1:"
        "2C:95:0B:7A:33:D8:C6:41:9F:E0:57:2B:8D:16",
        "a=setup:actpass",
        "m=application 50123 DTLS/SCTP 5000",
        "c=IN IP4 192.0.2.10",
        "a=mid:1",
        "a=sctpmap:5000 webrtc-datachannel 65535",
        "a=max-message-size:65536",
        "",
    ]
)
OFFER = Offer(SDP)
BLOB = encode_blob(OFFER)


def test_blob_is_one_line_of_safe_characters() -> None:
    assert BLOB.startswith("peercall1:offer:")
    assert re.fullmatch(r"peercall1:(offer|answer):[0-9]+:[A-Z2-7]+:[0-9A-F]{8}", BLOB)
    # zlib wins back most of base32's 60 % overhead on a real SDP (random ids, fingerprint).
    assert len(BLOB) < 1.25 * len(SDP)


@pytest.mark.parametrize("message", [OFFER, Answer(SDP), Offer("v=0\r\n")])
def test_round_trip(message: Offer | Answer) -> None:
    assert decode_blob(encode_blob(message)) == message


def test_only_offers_and_answers_are_blobs() -> None:
    with pytest.raises(MessageError, match="only offers and answers travel as blobs"):
        encode_blob(Bye())  # type: ignore[arg-type]


def wrap(text: str, width: int, quote: str = "") -> str:
    return "\n".join(quote + text[i : i + width] for i in range(0, len(text), width))


@pytest.mark.parametrize(
    "pasted",
    [
        f"Hi Bob, here is my offer:\n\n{BLOB}\n\nCall me!",
        f"offer below\n{wrap(BLOB, 72)}\nbye",
        wrap(BLOB, 76, "> "),
        wrap(BLOB, 70, ">> "),
        "Peercall1:" + BLOB[len(PREFIX) :],  # phone keyboards capitalise the first letter
        "\u200b".join(BLOB[i : i + 40] for i in range(0, len(BLOB), 40)),
        "\r\n".join(BLOB[i : i + 64] for i in range(0, len(BLOB), 64)) + "\r\n",
        f"«{BLOB}»",
        f"({BLOB}).",
    ],
)
def test_pastes_that_mail_and_chat_produce_are_accepted(pasted: str) -> None:
    assert decode_blob(pasted) == OFFER


def test_truncation_message_says_how_much_arrived() -> None:
    with pytest.raises(
        BlobTruncated, match=rf"^offer blob is truncated \(got 812 of {len(BLOB)} characters\)$"
    ):
        decode_blob(BLOB[:812])


def test_truncation_followed_by_text_is_still_truncation() -> None:
    with pytest.raises(BlobTruncated, match=r"^offer blob is truncated"):
        decode_blob(BLOB[:300] + "\n\nthanks, talk soon")


def test_checksum_mismatch() -> None:
    index = len(BLOB) - 20
    swapped = "A" if BLOB[index] != "A" else "B"
    with pytest.raises(BlobCorrupted, match=r"^offer blob is corrupted \(checksum mismatch\)$"):
        decode_blob(BLOB[:index] + swapped + BLOB[index + 1 :])


def test_not_a_blob() -> None:
    with pytest.raises(
        BlobNotFound, match=r"^not a PeerCall blob \(expected it to start with 'peercall1:'\)$"
    ):
        decode_blob("v=0\r\no=- 1 1 IN IP4 0.0.0.0")


def test_future_version_is_named() -> None:
    with pytest.raises(BlobError, match="unsupported blob version 'peercall2:'"):
        decode_blob("peercall2:offer:4:ABCD:00000000")


def test_missing_middle_chunk_is_corruption() -> None:
    head, _, crc = BLOB.rpartition(":")
    with pytest.raises(BlobCorrupted, match=r"payload has \d+ of \d+ characters"):
        decode_blob(head[:200] + head[400:] + ":" + crc)


def test_forged_blob_with_valid_checksum_but_bad_message() -> None:
    """A handcrafted blob passes the checksum; its payload is still validated."""
    import base64

    payload = base64.b32encode(zlib.compress(b'{"v":1,"type":"offer","sdp":"hello"}'))
    body = payload.decode().rstrip("=")
    head = f"peercall1:offer:{len(body)}:{body}"
    forged = f"{head}:{zlib.crc32(head.encode()):08X}"
    with pytest.raises(BlobCorrupted, match="offer blob holds an invalid message"):
        decode_blob(forged)
    answer = encode_blob(Answer(SDP)).replace("answer", "offer", 1)
    head = answer.rpartition(":")[0]
    relabelled = f"{head}:{zlib.crc32(head.encode()):08X}"
    with pytest.raises(BlobCorrupted, match="offer blob holds a answer"):
        decode_blob(relabelled)


@given(cut=st.integers(min_value=0, max_value=len(BLOB) - 1))
def test_every_truncation_is_detected(cut: int) -> None:
    with pytest.raises(BlobError):
        decode_blob(BLOB[:cut])


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(
    index=st.integers(min_value=0, max_value=len(BLOB) - 1),
    char=st.characters(codec="utf-8"),
)
def test_every_single_character_corruption_is_detected(index: int, char: str) -> None:
    corrupted = BLOB[:index] + char + BLOB[index + 1 :]
    if corrupted == BLOB or (
        index < len("peercall") and corrupted.lower() == BLOB.lower()
    ):  # an identical or re-capitalised prefix is the same blob by design
        assert decode_blob(corrupted) == OFFER
        return
    with pytest.raises(BlobError):
        decode_blob(corrupted)


@given(sdp_tail=st.text(min_size=0, max_size=3000))
def test_round_trip_any_sdp(sdp_tail: str) -> None:
    message = Answer("v=0\r\n" + sdp_tail)
    blob = encode_blob(message)
    assert "\n" not in blob
    assert blob.isascii()
    assert decode_blob(blob) == message


class Terminal:
    """Two text streams standing in for a user's screen and keyboard."""

    def __init__(self) -> None:
        self.typed: asyncio.Queue[str | None] = asyncio.Queue()
        self.shown: list[str] = []
        self.notices: list[str] = []

    async def read_line(self) -> str | None:
        return await self.typed.get()

    async def write(self, text: str) -> None:
        self.shown.append(text)

    async def notify(self, text: str) -> None:
        self.notices.append(text)

    def channel(self) -> ManualChannel:
        return ManualChannel(self.read_line, self.write, notify=self.notify)


async def test_channel_sends_blobs_and_drops_trickle() -> None:
    term = Terminal()
    channel = term.channel()
    assert isinstance(channel, SignalingChannel)
    assert channel.supports_trickle is False
    await channel.connect()
    await channel.send(OFFER)
    await channel.send(Candidate("candidate:1 1 udp 1 192.0.2.1 1 typ host"))
    await channel.send(EndOfCandidates())
    await channel.send(Bye())
    assert term.shown == [BLOB]


async def test_channel_reprompts_on_bad_pastes_then_accepts_a_good_one() -> None:
    term = Terminal()
    channel = term.channel()
    for line in [
        "hello?",  # no blob at all
        BLOB[:500],  # truncated, then the user presses enter
        "",
        BLOB[:-3] + "ZZZ",  # corrupted checksum
        BLOB[:300],  # truncated, then a fresh paste starts
        *wrap(BLOB, 72, "> ").split("\n"),  # a good blob over many quoted lines
    ]:
        term.typed.put_nowait(line)
    assert await channel.receive() == OFFER
    assert term.notices == [
        "not a PeerCall blob (expected it to start with 'peercall1:'); paste it again",
        f"offer blob is truncated (got 500 of {len(BLOB)} characters); paste it again",
        "offer blob is corrupted (bad checksum characters); paste it again",
        f"offer blob is truncated (got 300 of {len(BLOB)} characters); paste it again",
    ]


async def test_two_manual_channels_wired_together_carry_offer_and_answer() -> None:
    a, b = wired_manual_pair()
    await a.send(OFFER)
    assert await b.receive() == OFFER
    await b.send(Answer(SDP))
    assert await a.receive() == Answer(SDP)


async def test_end_of_input_and_close_end_receive() -> None:
    term = Terminal()
    channel = term.channel()
    term.typed.put_nowait(None)
    with pytest.raises(ChannelClosed, match="input ended"):
        await channel.receive()

    term = Terminal()
    channel = term.channel()
    pending = asyncio.ensure_future(channel.receive())
    await asyncio.sleep(0)
    await channel.close()
    with pytest.raises(ChannelClosed):
        await pending
    with pytest.raises(ChannelClosed):
        await channel.send(OFFER)
