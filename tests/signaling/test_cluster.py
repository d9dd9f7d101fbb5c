"""Several `peercall signal --redis` processes sharing rooms through a real redis-server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from signaling.client import WebSocketChannel
from signaling.cluster import RedisRooms, room_from_text, room_text
from signaling.errors import SignalingError
from signaling.messages import Candidate, Message, Offer
from signaling.rooms import Close, Queued, Room, Slot, room_to_dict
from signaling.ws_protocol import (
    Ack,
    Deliver,
    Delivered,
    ErrorCode,
    ErrorFrame,
    Join,
    Joined,
    Leave,
    PeerJoined,
    PeerLeft,
    Ping,
    Relay,
    encode_frame,
)
from tests.calls import call_two_processes
from tests.signaling.conftest import ROOT, FailoverProxy, RawClient, RedisProcess, ServerProcess

A, B, C = "alice-0000", "bob-11111", "carol-2222"
SDP = "v=0\r\n"


@pytest.fixture
async def nodes(redis_server: RedisProcess) -> AsyncIterator[list[ServerProcess]]:
    procs = [
        ServerProcess(
            "--redis", redis_server.url, "--resume-grace", "30", "--max-connections-per-ip", "3"
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            await proc.start()
        yield procs
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.returncode is None:
                await proc.kill()


async def joined(url: str, peer: str, room: str = "room") -> RawClient:
    client = await RawClient.open(url)
    await client.send(Join(room, "pw", peer, name=peer.split("-")[0]))
    frame = await client.recv()
    assert isinstance(frame, Joined), frame
    return client


async def test_the_two_callers_of_a_room_on_different_nodes(nodes: list[ServerProcess]) -> None:
    one, two = nodes
    assert any(line.startswith("rooms shared through Redis at redis://") for line in one.lines)
    a = await joined(one.url, A)
    b = await joined(two.url, B)
    assert await a.recv() == PeerJoined(B, "bob")
    await a.send(Relay(1, Offer(SDP)))
    assert await b.recv() == Deliver(A, 1, Offer(SDP))
    await b.send(Ack(A, 1))
    assert await a.recv() == Delivered(1)
    third = await RawClient.open(one.url)  # the room is full on every node
    await third.send(Join("room", "pw", C))
    frame = await third.recv()
    assert isinstance(frame, ErrorFrame)
    assert frame.code == ErrorCode.ROOM_FULL
    await b.send(Leave())
    assert await a.recv() == PeerLeft(B, "bob", "left")
    for client in (a, b, third):
        await client.close()
    code, rest = await asyncio.wait_for(one.terminate(), 30)  # SIGTERM: a clean stop
    assert (code, rest.strip()) == (0, "stopped")


async def test_connections_per_address_are_capped_across_nodes(
    nodes: list[ServerProcess],
) -> None:
    one, two = nodes
    held = []
    for url in (one.url, two.url, two.url):  # the cap is 3 for the whole cluster
        client = await RawClient.open(url)
        await client.send(Ping())  # answered (not-joined) once the node has counted it
        assert isinstance(await client.recv(), ErrorFrame)
        held.append(client)
    channel = WebSocketChannel(one.url, "r", "pw", reconnect=False)
    with pytest.raises(SignalingError, match=r"HTTP 429"):
        await channel.connect()
    for client in held:
        await client.close()


async def test_a_node_killed_mid_exchange_loses_nothing_and_duplicates_nothing(
    nodes: list[ServerProcess],
) -> None:
    """Bob reaches node two through a load balancer; node two is SIGKILLed in the middle of
    the exchange; Bob reconnects through the balancer to node one and resumes his seat. Each
    side receives every message of the other exactly once, in order."""
    one, two = nodes
    proxy = FailoverProxy([two.port, one.port])
    await proxy.start()
    alice = WebSocketChannel(one.url, "kill", "pw", name="alice")
    bob = WebSocketChannel(proxy.url, "kill", "pw", name="bob", backoff_initial=0.05)
    await alice.connect()
    await bob.connect()

    def cand(who: str, n: int) -> Candidate:
        return Candidate(f"candidate:{n} 1 udp {n} 192.0.2.{1 if who == 'a' else 2} 5000 typ host")

    got_bob: list[Message] = []
    got_alice: list[Message] = []

    async def read(channel: WebSocketChannel, into: list[Message], count: int) -> None:
        while len(into) < count:
            into.append(await channel.receive())

    try:
        async with asyncio.timeout(60):
            for n in range(1, 21):
                await alice.send(cand("a", n))
                await bob.send(cand("b", n))
            await read(bob, got_bob, 10)
            await two.kill()  # mid-exchange: some of the 20 are in flight or unacked
            for n in range(21, 41):
                await alice.send(cand("a", n))
                await bob.send(cand("b", n))
            await asyncio.gather(read(bob, got_bob, 40), read(alice, got_alice, 40))
            assert bob.reconnects >= 1
            await alice.send(Offer(SDP))  # a barrier: nothing else was on its way
            assert await bob.receive() == Offer(SDP)
    finally:
        await alice.close()
        await bob.close()
        await proxy.stop()
    assert got_bob == [cand("a", n) for n in range(1, 41)]
    assert got_alice == [cand("b", n) for n in range(1, 41)]


@pytest.mark.slow
async def test_a_full_call_between_two_processes_on_different_nodes(
    nodes: list[ServerProcess],
) -> None:
    await call_two_processes(nodes[0].url, nodes[1].url, room="cluster")


async def test_an_unreachable_redis_is_one_line() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "signal", "--port", "0",
        "--redis", "redis://127.0.0.1:1/0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    text = err.decode()
    assert text.startswith("peercall: error: cannot use Redis at redis://127.0.0.1:1/0: "), text
    assert text.count("\n") == 1, text


def _publishes(redis_server: RedisProcess) -> int:
    import redis

    client = redis.Redis(port=redis_server.port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def test_a_frame_for_a_connection_that_just_closed_does_not_go_round_through_redis(
    nodes: list[ServerProcess], redis_server: RedisProcess
) -> None:
    """Both callers on node one hang up at once: the 'peer left' for the one already gone
    was published to node one's own channel, came back, found no link, and was published
    again, forever (the bench's storm of ~300 PUBLISH per message at 2,500 rooms)."""
    one, two = nodes
    for round_ in range(5):
        a = await joined(one.url, A, f"gone-{round_}")
        b = await joined(one.url, B, f"gone-{round_}")
        assert await a.recv() == PeerJoined(B, "bob")
        await asyncio.gather(a.close(), b.close())
    # barrier: a room whose two callers sit on different nodes forwards one relay, so every
    # earlier event on node one has been handled
    c = await joined(one.url, A, "after")
    d = await joined(two.url, B, "after")
    assert await c.recv() == PeerJoined(B, "bob")
    await c.send(Relay(1, Offer(SDP)))
    assert await d.recv() == Deliver(A, 1, Offer(SDP))
    before = _publishes(redis_server)
    await d.send(Ack(A, 1))
    assert await c.recv() == Delivered(1)
    await c.until_pong()
    await d.until_pong()
    # the ack and its 'delivered' cost a handful of publishes; a loop costs thousands
    assert _publishes(redis_server) - before < 20
    await c.close()
    await d.close()


# --- how rooms and frames travel through Redis (pure) ---------------------------------------


def _room_with_queues() -> Room:
    # SDP with what JSON must escape (quotes, backslashes, control characters such as the two
    # separators) and non-ASCII text: encode_frame keeps the latter as it is
    sdp = 'v=0\r\ns=caf\u00e9 "x" \\ \x1e\x1f\u2603\r\n'
    texts = [encode_frame(Deliver(A, seq, Offer(sdp, name="\u00e9l\u00e8ve"))) for seq in (1, 2)]
    queued = [Queued(A, i + 1, t, len(t.encode()), "198.19.1.10") for i, t in enumerate(texts)]
    return Room(
        "room",
        b"pw",
        slots=[
            Slot(A, "alice", "s-a", "198.19.1.10", conn="n1/1", inbox=[]),
            Slot(B, "bob", "s-b", "198.19.1.11", conn="n2/7", inbox=queued[:1], last_in=3),
        ],
        orphans=queued[1:],
    )


def test_a_room_text_round_trips_and_keeps_queued_frames_as_they_are() -> None:
    room = _room_with_queues()
    text = room_text(room)
    assert room_to_dict(room_from_text(text)) == room_to_dict(room)
    for queued in room.queued():
        # verbatim, not escaped into a JSON string: nothing to escape or unescape per event
        assert queued.text in text
    assert room_to_dict(room_from_text(room_text(Room("empty", b"")))) == room_to_dict(
        Room("empty", b"")
    )


def test_no_frame_or_room_text_can_hold_the_record_separators() -> None:
    room = _room_with_queues()
    for queued in room.queued():
        assert "\x1e" not in queued.text
        assert "\x1f" not in queued.text
    head = room_text(room).split("\x1f")[0]
    assert "\x1e" not in head
    assert "\x1f" not in head
    node, record = RedisRooms._record(Close("n2/7", 4000, "replaced\x1eby\nanother"))
    assert node == "n2"
    assert "\x1e" not in record
    assert record.split("\n", 2) == ["Cn2/7", "4000", "replaced by another"]
