from __future__ import annotations

import json

import pytest

from signaling.messages import Answer, Bye, Candidate, Offer
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
    parse_server_frame,
)

PEER = "peer-AAAAbbbb"
CAND = Candidate("candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host")


@pytest.mark.parametrize(
    "frame",
    [
        Join("room-1", "s3cret", PEER),
        Join("r", "x", PEER, name="Alice ☎", session="tok"),
        Relay(1, Offer("v=0\r\n")),
        Relay(7, CAND),
        Relay(2**53 - 1, Bye("declined")),
        Ack(PEER, 0),
        Ack(PEER, 12),
        Ping(),
        Leave(),
        IceServersRequest(),
    ],
)
def test_client_frames_round_trip(frame: ClientFrame) -> None:
    text = encode_frame(frame)
    assert json.loads(text)["v"] == 1
    assert parse_client_frame(text) == frame
    assert parse_client_frame(text.encode()) == frame


@pytest.mark.parametrize(
    "frame",
    [
        Joined(
            room="r",
            session="tok",
            resumed=False,
            peers=(PeerInfo(PEER, "Bob", True),),
            acked=3,
            ice_servers=(
                IceServer(("turn:127.0.0.1:3478",), "123:x", "pw"),
                IceServer(("stun:h",)),
            ),
            max_message_bytes=131072,
            heartbeat=20.0,
        ),
        PeerJoined(PEER, "Bob", resumed=True),
        PeerLeft(PEER, "", "disconnected"),
        Deliver(PEER, 4, Answer("v=0\r\n")),
        Delivered(9),
        ErrorFrame(ErrorCode.ROOM_FULL, "room is full"),
        ErrorFrame(ErrorCode.BAD_MESSAGE, "relay: ...", fatal=False, seq=3),
        Pong(),
        IceServers((IceServer(("turn:h",), "u", "p"),)),
    ],
)
def test_server_frames_round_trip(frame: ServerFrame) -> None:
    assert parse_server_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("{", ErrorCode.BAD_JSON, "malformed JSON"),
        (b"\xff\xfe", ErrorCode.BAD_JSON, "malformed JSON"),
        ("[1]", ErrorCode.BAD_FRAME, "frame must be a JSON object"),
        ('{"type":"ping"}', ErrorCode.UNSUPPORTED_VERSION, "unsupported protocol version None"),
        ('{"v":2,"type":"ping"}', ErrorCode.UNSUPPORTED_VERSION, "unsupported protocol version 2"),
        ('{"v":1}', ErrorCode.BAD_FRAME, "frame has no 'type'"),
        ('{"v":1,"type":"hello"}', ErrorCode.UNKNOWN_TYPE, "unknown frame type 'hello'"),
        ('{"v":1,"type":"join"}', ErrorCode.BAD_FRAME, "join: missing field 'room'"),
        (
            '{"v":1,"type":"join","room":"a b","secret":"s","peer":"pppppppp"}',
            ErrorCode.BAD_FRAME,
            "join: 'room' must be 1-64 characters",
        ),
        (
            '{"v":1,"type":"join","room":"a","secret":"","peer":"pppppppp"}',
            ErrorCode.BAD_FRAME,
            "join: 'secret' must be 1-256 characters",
        ),
        (
            '{"v":1,"type":"join","room":"a","secret":"s","peer":"short"}',
            ErrorCode.BAD_FRAME,
            "join: 'peer' must be 8-64 characters",
        ),
        (
            '{"v":1,"type":"join","room":"a","secret":"s","peer":"pppppppp","name":"a\\nb"}',
            ErrorCode.BAD_FRAME,
            "join: 'name' must be printable",
        ),
        ('{"v":1,"type":"relay","data":{}}', ErrorCode.BAD_FRAME, "relay: missing field 'seq'"),
        ('{"v":1,"type":"relay","seq":0,"data":{}}', ErrorCode.BAD_FRAME, "relay: 'seq' out of"),
        (
            '{"v":1,"type":"relay","seq":true}',
            ErrorCode.BAD_FRAME,
            "relay: field 'seq' must be int",
        ),
        ('{"v":1,"type":"relay","seq":1}', ErrorCode.BAD_FRAME, "relay: field 'data' must be"),
        (
            '{"v":1,"type":"relay","seq":1,"data":{"v":1,"type":"offer","sdp":"x"}}',
            ErrorCode.BAD_MESSAGE,
            "relay: offer: sdp does not start with 'v=0'",
        ),
        (
            '{"v":1,"type":"relay","seq":1,"data":{"v":1,"type":"smoke"}}',
            ErrorCode.BAD_MESSAGE,
            "relay: unknown message type 'smoke'",
        ),
        ('{"v":1,"type":"ack","from":"pppppppp","seq":-1}', ErrorCode.BAD_FRAME, "ack: 'seq'"),
    ],
)
def test_bad_client_frames_name_the_problem(text: str | bytes, code: str, message: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_client_frame(text)
    assert info.value.code == code
    assert str(info.value).startswith(message)


def test_bad_relay_data_carries_its_seq() -> None:
    with pytest.raises(FrameError) as info:
        parse_client_frame('{"v":1,"type":"relay","seq":5,"data":{"v":1,"type":"bye","reason":1}}')
    assert info.value.seq == 5


def test_server_only_frames_are_unknown_from_clients() -> None:
    with pytest.raises(FrameError, match="unknown frame type 'joined'"):
        parse_client_frame(encode_frame(Pong()).replace("pong", "joined"))
    with pytest.raises(FrameError, match="unknown frame type 'join'"):
        parse_server_frame(encode_frame(Join("r", "s", PEER)))
