"""WebSocketChannel against a real SignalingServer: in-process and as a child process."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nat.auth import rest_password
from signaling.base import SignalingChannel
from signaling.client import Presence, WebSocketChannel
from signaling.errors import ChannelClosed, GaveUp, MessageError, PeerRejected, SignalingError
from signaling.messages import Answer, Bye, Candidate, EndOfCandidates, Message, Offer
from signaling.server import SignalingServer
from tests.conftest import free_port
from tests.signaling.conftest import ServerProcess

SDP = "v=0\r\n"


def cand(n: int) -> Candidate:
    return Candidate(f"candidate:{n} 1 udp 2130706431 192.0.2.1 {5000 + n} typ host")


def channel(url: str, name: str, **options: Any) -> WebSocketChannel:
    return WebSocketChannel(
        url, "room", "pw", name=name, backoff_initial=0.05, backoff_max=0.5, **options
    )


async def receive(ch: WebSocketChannel) -> Message:
    async with asyncio.timeout(10):
        return await ch.receive()


@pytest.fixture
async def duo(server: SignalingServer) -> AsyncIterator[tuple[WebSocketChannel, WebSocketChannel]]:
    a, b = channel(server.url, "alice"), channel(server.url, "bob")
    await a.connect()
    await b.connect()
    yield a, b
    await a.close()
    await b.close()


async def test_offer_answer_and_trickle(duo: tuple[WebSocketChannel, WebSocketChannel]) -> None:
    a, b = duo
    assert isinstance(a, SignalingChannel)
    assert a.supports_trickle is True
    await a.send(Offer(SDP))
    assert await receive(b) == Offer(SDP)
    await b.send(Answer(SDP))
    for n in range(5):
        await a.send(cand(n))
    await a.send(EndOfCandidates())
    assert await receive(a) == Answer(SDP)
    assert [await receive(b) for _ in range(6)] == [*map(cand, range(5)), EndOfCandidates()]


async def test_presence_events_and_wait_for_peer(server: SignalingServer) -> None:
    seen: list[Presence] = []
    a = channel(server.url, "alice", on_presence=seen.append)
    await a.connect()
    assert a.peer_present is False
    b = channel(server.url, "bob")
    waiter = asyncio.create_task(a.wait_for_peer())
    await b.connect()
    async with asyncio.timeout(10):
        await waiter
    assert (a.peer_present, a.peer_name) == (True, "bob")
    assert b.peer_present is True  # told in its joined frame
    await b.close()
    async with asyncio.timeout(10):
        await a.wait_for_peer(present=False)
    assert [(p.name, p.present, p.reason) for p in seen] == [
        ("bob", True, ""),
        ("bob", False, "left"),
    ]
    await a.close()


async def test_clear_errors_for_refused_wrong_secret_full_room_and_bad_url(
    server: SignalingServer,
) -> None:
    port = free_port(socket.SOCK_STREAM)
    with pytest.raises(
        SignalingError,
        match=rf"^cannot reach signaling server ws://127.0.0.1:{port}: connection refused$",
    ):
        await WebSocketChannel(f"ws://127.0.0.1:{port}", "room", "pw").connect()
    with pytest.raises(SignalingError, match=r"^invalid signaling server URL 'http://x'"):
        await WebSocketChannel("http://x", "room", "pw").connect()
    a, b = channel(server.url, "a"), channel(server.url, "b")
    await a.connect()
    with pytest.raises(PeerRejected, match=r"^wrong room secret$"):
        await WebSocketChannel(server.url, "room", "not-pw").connect()
    await b.connect()
    with pytest.raises(PeerRejected, match=r"^room is full$"):
        await channel(server.url, "c").connect()
    await a.close()
    await b.close()


async def test_ice_servers_are_short_lived_rest_credentials() -> None:
    async with SignalingServer(
        turn_secret="shared", turn_uris=["turn:127.0.0.1:3478"], ping_interval=None
    ) as srv:
        a = channel(srv.url, "a")
        await a.connect()
        (entry,) = a.ice_servers
        assert entry["urls"] == ["turn:127.0.0.1:3478"]
        assert entry["username"].endswith(":" + a.peer_id)
        assert entry["credential"] == rest_password("shared", entry["username"])
        await a.close()


async def test_too_large_for_the_server_is_refused_locally(
    duo: tuple[WebSocketChannel, WebSocketChannel],
) -> None:
    a, _ = duo
    with pytest.raises(MessageError, match="too large for this signaling server"):
        await a.send(Offer("v=0\r\n" + "a=x\r\n" * 2000))


async def test_close_ends_receive_and_tells_the_peer(
    duo: tuple[WebSocketChannel, WebSocketChannel],
) -> None:
    a, b = duo
    pending = asyncio.create_task(a.receive())
    await asyncio.sleep(0)
    await a.close()
    await a.close()
    with pytest.raises(ChannelClosed):
        await pending
    with pytest.raises(ChannelClosed):
        await a.send(Bye())
    async with asyncio.timeout(10):
        await b.wait_for_peer(present=False)


async def test_link_drop_resumes_and_delivers_what_was_sent_meanwhile(
    duo: tuple[WebSocketChannel, WebSocketChannel],
) -> None:
    a, b = duo
    await a.send(Offer(SDP))
    assert await receive(b) == Offer(SDP)
    session = b.session
    assert b._ws is not None
    b._ws.transport.abort()  # the network drops under b
    for n in range(3):
        await a.send(cand(n))  # while b is away
    await b.send(Answer(SDP))  # b sends while it is reconnecting
    assert [await receive(b) for _ in range(3)] == [cand(0), cand(1), cand(2)]
    assert await receive(a) == Answer(SDP)
    assert b.session == session  # resumed, not re-joined
    assert b.reconnects == 1
    await a.send(Bye())
    assert await receive(b) == Bye()  # nothing duplicated before it


async def test_reconnect_disabled_fails_the_channel(server: SignalingServer) -> None:
    a = channel(server.url, "a", reconnect=False)
    await a.connect()
    assert a._ws is not None
    a._ws.transport.abort()
    with pytest.raises(ChannelClosed, match=r"^lost the signaling server"):
        await receive(a)
    with pytest.raises(ChannelClosed):
        await a.send(Bye())
    await a.close()


async def test_gives_up_after_reconnect_timeout() -> None:
    srv = SignalingServer(ping_interval=None)
    await srv.start()
    a = channel(srv.url, "a", reconnect_timeout=0.3)
    await a.connect()
    await srv.stop()
    with pytest.raises(GaveUp, match=r"^gave up reconnecting to the signaling server: "):
        await receive(a)
    with pytest.raises(GaveUp):  # terminal: at once, every time (no loop spinning on it)
        await receive(a)
    with pytest.raises(GaveUp):
        await a.send(Bye())
    await a.close()


async def test_embedded_server_restart_on_the_same_port() -> None:
    srv = SignalingServer(ping_interval=None)
    await srv.start()
    port = srv.port
    a, b = channel(srv.url, "alice"), channel(srv.url, "bob")
    await a.connect()
    await b.connect()
    await a.send(Offer(SDP))
    assert await receive(b) == Offer(SDP)
    await srv.stop()  # every room and queue is gone
    await a.send(cand(1))
    await b.send(Answer(SDP))
    srv = SignalingServer("127.0.0.1", port, ping_interval=None)
    await srv.start()
    assert await receive(b) == cand(1)
    assert await receive(a) == Answer(SDP)
    await a.send(Bye())
    assert await receive(b) == Bye()
    await a.close()
    await b.close()
    await srv.stop()


@pytest.mark.slow
async def test_server_process_killed_and_restarted_candidates_still_arrive(
    server_process: ServerProcess,
) -> None:
    a, b = channel(server_process.url, "alice"), channel(server_process.url, "bob")
    await a.connect()
    await b.connect()
    await a.send(Offer(SDP))
    assert await receive(b) == Offer(SDP)
    await b.send(Answer(SDP))
    assert await receive(a) == Answer(SDP)

    await server_process.kill()  # a crash: no close frames, all state lost
    for n in range(4):
        await a.send(cand(n))  # trickled while there is no server at all
    await b.send(cand(100))
    restarted = ServerProcess()
    await restarted.start(server_process.port)
    try:
        assert [await receive(b) for _ in range(4)] == [cand(n) for n in range(4)]
        assert await receive(a) == cand(100)
        await a.send(Bye("hangup"))
        assert await receive(b) == Bye("hangup")  # no duplicate offer or candidate in between
        assert a.reconnects >= 1
        assert b.reconnects >= 1
        await a.close()
        await b.close()
        code, rest = await restarted.terminate()
        assert code == 0
        assert rest.strip().endswith("stopped")
    finally:
        if restarted.proc is not None and restarted.proc.returncode is None:
            await restarted.kill()


@pytest.mark.slow
async def test_nothing_lost_or_duplicated_under_repeated_link_drops(
    duo: tuple[WebSocketChannel, WebSocketChannel],
) -> None:
    a, b = duo
    rng = random.Random(4)
    count = 150

    async def pump(src: WebSocketChannel) -> None:
        for n in range(count):
            await src.send(cand(n))
            if rng.random() < 0.08:
                ws = rng.choice([a, b])._ws
                if ws is not None:
                    ws.transport.abort()
            await asyncio.sleep(0)

    async def drain(dst: WebSocketChannel) -> list[Message]:
        return [await receive(dst) for _ in range(count)]

    _, _, got_b, got_a = await asyncio.gather(pump(a), pump(b), drain(b), drain(a))
    assert got_b == [cand(n) for n in range(count)]
    assert got_a == [cand(n) for n in range(count)]
    assert a.reconnects + b.reconnects > 0


async def test_acks_are_cumulative_and_coalesced(server: SignalingServer) -> None:
    """One ack frame covers a run of relays: ACK_EVERY of them at once, the rest after a delay."""
    from signaling.client import ACK_EVERY
    from signaling.ws_protocol import Delivered, Join, Joined, PeerJoined, Relay
    from tests.signaling.conftest import RawClient

    sender = await RawClient.open(server.url)
    await sender.send(Join("room", "pw", "sender-000", "raw"))
    assert isinstance(await sender.recv(), Joined)
    # A delay far beyond the test: only the ACK_EVERY rule can trigger the first ack.
    receiver = channel(server.url, "bob", ack_delay=60.0)
    await receiver.connect()
    assert isinstance(await sender.recv(), PeerJoined)
    for seq in range(1, ACK_EVERY + 1):
        await sender.send(Relay(seq, cand(seq)))
    assert [await receive(receiver) for _ in range(ACK_EVERY)] == [
        cand(n) for n in range(1, ACK_EVERY + 1)
    ]
    assert await sender.recv() == Delivered(ACK_EVERY)  # one ack for all of them
    await receiver.close()
    await sender.close()
    # With a short delay a lone relay is still acknowledged, by the timer.
    sender = await RawClient.open(server.url)
    await sender.send(Join("room2", "pw", "sender-000", "raw"))
    assert isinstance(await sender.recv(), Joined)
    receiver = WebSocketChannel(server.url, "room2", "pw", ack_delay=0.05)
    await receiver.connect()
    assert isinstance(await sender.recv(), PeerJoined)
    await sender.send(Relay(1, cand(1)))
    assert await receive(receiver) == cand(1)
    assert await sender.recv() == Delivered(1)
    await receiver.close()
    await sender.close()


async def test_an_ack_timer_armed_before_a_reconnect_acks_on_the_new_link(
    server: SignalingServer,
) -> None:
    """A relay arrives, the link drops before the coalescing delay: the server re-sends the
    relay on the new link and the pending timer acks it there (not on the dead link)."""
    from signaling.ws_protocol import Delivered, Join, Joined, PeerJoined, Relay
    from tests.signaling.conftest import RawClient

    sender = await RawClient.open(server.url)
    await sender.send(Join("room", "pw", "sender-000", "raw"))
    assert isinstance(await sender.recv(), Joined)
    receiver = channel(server.url, "bob", ack_delay=1.0)
    await receiver.connect()
    assert isinstance(await sender.recv(), PeerJoined)
    await sender.send(Relay(1, cand(1)))
    assert await receive(receiver) == cand(1)  # the ack timer is armed now
    assert receiver._ws is not None
    receiver._ws.transport.abort()  # the network drops under the receiver
    async with asyncio.timeout(30):
        while not isinstance(frame := await sender.recv(), Delivered):
            pass  # presence frames while the receiver resumes
    assert frame == Delivered(1)
    assert receiver.reconnects == 1
    await receiver.close()
    await sender.close()
