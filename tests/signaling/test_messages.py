from __future__ import annotations

import json

import pytest

from signaling.errors import MessageError
from signaling.messages import (
    Answer,
    Bye,
    Candidate,
    EndOfCandidates,
    Message,
    Offer,
    decode,
    encode,
)

SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
CAND = "candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host"


@pytest.mark.parametrize(
    "message",
    [
        Offer(SDP),
        Answer(SDP),
        Candidate(CAND, "0", 0),
        Candidate(CAND, None, 1),
        Candidate(CAND, "audio", None),
        EndOfCandidates(),
        Bye(),
        Bye("declined"),
    ],
)
def test_round_trip(message: Message) -> None:
    text = encode(message)
    assert json.loads(text)["v"] == 1
    assert decode(text) == message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{", "malformed JSON"),
        ("[]", "message must be a JSON object"),
        ('{"type":"offer","sdp":"v=0"}', "unsupported protocol version None (expected 1)"),
        ('{"v":2,"type":"offer","sdp":"v=0"}', "unsupported protocol version 2 (expected 1)"),
        ('{"v":1}', "message has no 'type'"),
        ('{"v":1,"type":"hello"}', "unknown message type 'hello'"),
        ('{"v":1,"type":"offer"}', "offer: missing field 'sdp'"),
        ('{"v":1,"type":"offer","sdp":5}', "offer: field 'sdp' must be str"),
        ('{"v":1,"type":"answer","sdp":"hello"}', "answer: sdp does not start with 'v=0'"),
        ('{"v":1,"type":"candidate","candidate":"x"}', "candidate: value must start with"),
        (
            '{"v":1,"type":"candidate","candidate":"candidate:1","sdpMLineIndex":true}',
            "candidate: field 'sdpMLineIndex' must be int",
        ),
        (
            '{"v":1,"type":"candidate","candidate":"candidate:1","sdpMid":null}',
            "candidate: needs sdpMid or sdpMLineIndex",
        ),
        ('{"v":1,"type":"bye","reason":7}', "bye: field 'reason' must be str"),
    ],
)
def test_invalid_messages_name_the_problem(text: str, error: str) -> None:
    with pytest.raises(MessageError, match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        decode(text)


def test_oversize_fields_are_refused() -> None:
    with pytest.raises(MessageError, match="longer than"):
        Offer("v=0" + "x" * 70000)
    with pytest.raises(MessageError, match="longer than"):
        Candidate("candidate:" + "1" * 2000)


def test_invalid_utf8_is_a_message_error() -> None:
    with pytest.raises(MessageError, match="malformed JSON"):
        decode(b"\xff\xfe")
