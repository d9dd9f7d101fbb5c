"""SignalingServer over real sockets on 127.0.0.1, driven by a raw protocol client."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import sys
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed

from nat.auth import rest_password, rest_username_expiry
from signaling.client import WebSocketChannel
from signaling.errors import SignalingError
from signaling.messages import Answer, Candidate, Offer
from signaling.server import SignalingServer
from signaling.ws_protocol import (
    Ack,
    Deliver,
    Delivered,
    ErrorCode,
    ErrorFrame,
    IceServers,
    IceServersRequest,
    Join,
    Joined,
    Leave,
    PeerJoined,
    PeerLeft,
    Ping,
    Relay,
)
from tests.signaling.conftest import ROOT, RawClient

A, B, C = "alice-0000", "bob-11111", "carol-2222"
SDP = "v=0\r\n"
CAND = Candidate("candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host")


async def joined(url: str, peer: str, room: str = "room", secret: str = "pw") -> RawClient:
    client = await RawClient.open(url)
    await client.send(Join(room, secret, peer, name=peer.split("-")[0]))
    frame = await client.recv()
    assert isinstance(frame, Joined), frame
    client.joined = frame  # type: ignore[attr-defined]
    return client


async def pair(url: str) -> tuple[RawClient, RawClient]:
    a = await joined(url, A)
    b = await joined(url, B)
    assert await a.recv() == PeerJoined(B, "bob", resumed=False)
    return a, b


async def expect_error(client: RawClient, code: str, message: str) -> ErrorFrame:
    frame = await client.recv()
    assert isinstance(frame, ErrorFrame), frame
    assert frame.code == code
    assert frame.message.startswith(message), frame.message
    assert frame.fatal is False
    return frame


async def test_two_peers_relay_offer_answer_and_trickled_candidates(
    server: SignalingServer,
) -> None:
    a, b = await pair(server.url)
    assert b.joined.peers[0].peer == A  # type: ignore[attr-defined]
    await a.send(Relay(1, Offer(SDP)))
    assert await b.recv() == Deliver(A, 1, Offer(SDP))
    await b.send(Relay(1, Answer(SDP)))
    assert await a.recv() == Deliver(B, 1, Answer(SDP))
    for seq in range(2, 5):
        await a.send(Relay(seq, CAND))
    assert [await b.recv() for _ in range(3)] == [Deliver(A, s, CAND) for s in range(2, 5)]
    # End-to-end acks: b acks a's relays, a hears how far b got.
    await b.send(Ack(A, 4))
    assert await a.recv() == Delivered(4)
    assert server.stats.relayed == 5


async def test_messages_wait_for_a_peer_who_has_not_joined_yet(server: SignalingServer) -> None:
    a = await joined(server.url, A)
    await a.send(Relay(1, Offer(SDP)))
    await a.send(Relay(2, CAND))
    b = await joined(server.url, B)
    assert [await b.recv(), await b.recv()] == [Deliver(A, 1, Offer(SDP)), Deliver(A, 2, CAND)]


# --- every bad input gets an error frame and the connection survives ---------------------


async def test_malformed_json_unknown_type_and_bad_fields(server: SignalingServer) -> None:
    client = await RawClient.open(server.url)
    await client.send("{not json")
    await expect_error(client, ErrorCode.BAD_JSON, "malformed JSON")
    await client.send(b"\xff\xfe\x00")
    await expect_error(client, ErrorCode.BAD_JSON, "malformed JSON")
    await client.send({"v": 1, "type": "teleport"})
    await expect_error(client, ErrorCode.UNKNOWN_TYPE, "unknown frame type 'teleport'")
    await client.send({"v": 9, "type": "join"})
    await expect_error(client, ErrorCode.UNSUPPORTED_VERSION, "unsupported protocol version 9")
    await client.send({"v": 1, "type": "join", "room": "r"})
    await expect_error(client, ErrorCode.BAD_FRAME, "join: missing field 'secret'")
    # Still the same connection, still usable.
    await client.send(Join("room", "pw", A))
    assert isinstance(await client.recv(), Joined)
    await client.send({"v": 1, "type": "relay", "seq": 1, "data": {"v": 1, "type": "offer"}})
    frame = await expect_error(client, ErrorCode.BAD_MESSAGE, "relay: offer: missing field 'sdp'")
    assert frame.seq == 1
    await client.send(Relay(1, Offer(SDP)))
    assert await client.until_pong() == []


async def test_oversize_frame_is_refused_and_the_link_survives(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    huge = Offer("v=0\r\n" + "a=x\r\n" * 1000)  # ~6 KB of SDP; the fixture's cap is 4096
    await a.send(Relay(1, huge))
    await expect_error(a, ErrorCode.TOO_BIG, "frame of ")
    await a.send(Relay(1, Offer(SDP)))
    assert await b.recv() == Deliver(A, 1, Offer(SDP))


async def test_frame_above_the_hard_limit_closes_only_that_link(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    await a.send("x" * (server.max_message_bytes * 4 + 1))
    with pytest.raises(ConnectionClosed) as info:
        await a.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009  # RFC 6455 §7.4.1: message too big
    assert await b.recv() == PeerLeft(A, "alice", "disconnected")
    other = await joined(server.url, C, room="elsewhere")
    assert await other.until_pong() == []


async def test_wrong_secret_then_right_secret(server: SignalingServer) -> None:
    await joined(server.url, A)
    intruder = await RawClient.open(server.url)
    await intruder.send(Join("room", "guess", B))
    await expect_error(intruder, ErrorCode.WRONG_SECRET, "wrong room secret")
    await intruder.send(Join("room", "pw", B))
    assert isinstance(await intruder.recv(), Joined)


async def test_third_peer_gets_room_is_full(server: SignalingServer) -> None:
    a, _b = await pair(server.url)
    third = await RawClient.open(server.url)
    await third.send(Join("room", "pw", C))
    await expect_error(third, ErrorCode.ROOM_FULL, "room is full")
    assert await a.until_pong() == []  # the two inside noticed nothing
    await third.send(Join("another", "pw", C))
    assert isinstance(await third.recv(), Joined)


async def test_frames_out_of_order(server: SignalingServer) -> None:
    client = await RawClient.open(server.url)
    await client.send(Relay(1, Offer(SDP)))
    await expect_error(client, ErrorCode.NOT_JOINED, "relay before join: join a room first")
    await client.send(Ack(B, 1))
    await expect_error(client, ErrorCode.NOT_JOINED, "ack before join")
    await client.send(IceServersRequest())
    await expect_error(client, ErrorCode.NOT_JOINED, "iceserversrequest before join")
    await client.send(Join("room", "pw", A))
    assert isinstance(await client.recv(), Joined)
    await client.send(Join("room", "pw", A))
    await expect_error(client, ErrorCode.ALREADY_JOINED, "already joined")
    await client.send(Relay(1, Offer(SDP)))
    await client.send(Relay(3, CAND))  # 2 is missing
    frame = await expect_error(client, ErrorCode.OUT_OF_ORDER, "relay seq 3 out of order")
    assert frame.seq == 3
    await client.send(Relay(1, Offer(SDP)))  # a duplicate is dropped silently
    assert await client.until_pong() == []


async def test_queue_cap() -> None:
    async with SignalingServer(max_queue=3, ping_interval=None) as server:
        a = await joined(server.url, A)
        for seq in (1, 2, 3):
            await a.send(Relay(seq, CAND))
        await a.send(Relay(4, CAND))
        await expect_error(a, ErrorCode.QUEUE_FULL, "peer has 3 unacknowledged messages")


async def test_idle_and_join_timeouts_close_with_an_error_frame() -> None:
    async with SignalingServer(idle_timeout=0.3, join_timeout=0.3, ping_interval=None) as srv:
        lurker = await RawClient.open(srv.url)
        frame = await lurker.recv()
        assert frame == ErrorFrame(
            ErrorCode.IDLE_TIMEOUT, "no join for 0.3 seconds; closing", fatal=True
        )
        with pytest.raises(ConnectionClosed):
            await lurker.recv()
        member = await joined(srv.url, A)
        assert member.joined.heartbeat == pytest.approx(0.1)  # type: ignore[attr-defined]
        frame = await member.recv()
        assert isinstance(frame, ErrorFrame)
        assert frame.code == ErrorCode.IDLE_TIMEOUT


# --- presence, resume, nothing lost -------------------------------------------------------


async def test_candidate_sent_while_peer_reconnects_is_delivered_when_it_returns(
    server: SignalingServer,
) -> None:
    a, b = await pair(server.url)
    session = b.joined.session  # type: ignore[attr-defined]
    await a.send(Relay(1, Offer(SDP)))
    assert await b.recv() == Deliver(A, 1, Offer(SDP))  # received but not acked
    b.ws.transport.abort()  # the network drops, no closing handshake
    assert await a.recv() == PeerLeft(B, "bob", "disconnected")
    await a.send(Relay(2, CAND))
    assert await a.until_pong() == []
    b2 = await RawClient.open(server.url)
    await b2.send(Join("room", "pw", B, name="bob", session=session))
    back = await b2.recv()
    assert isinstance(back, Joined)
    assert back.resumed is True
    assert await a.recv() == PeerJoined(B, "bob", resumed=True)
    # Everything b has not acked comes again, in order (WebSocketChannel drops the seq it had).
    assert [await b2.recv(), await b2.recv()] == [Deliver(A, 1, Offer(SDP)), Deliver(A, 2, CAND)]
    await b2.send(Ack(A, 2))
    assert await a.recv() == Delivered(2)
    # And what b sent before the drop, re-sent after resume, is not duplicated.
    await b2.send(Relay(1, Answer(SDP)))
    assert await a.recv() == Deliver(B, 1, Answer(SDP))
    await b2.send(Relay(1, Answer(SDP)))
    assert await a.until_pong() == []


async def test_resume_needs_the_right_session_token(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    b.ws.transport.abort()
    assert await a.recv() == PeerLeft(B, "bob", "disconnected")
    imposter = await RawClient.open(server.url)
    await imposter.send(Join("room", "pw", B, session="not-the-token"))
    await expect_error(imposter, ErrorCode.ROOM_FULL, "room is full")


async def test_a_new_link_replaces_a_half_dead_one(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    b2 = await RawClient.open(server.url)
    await b2.send(Join("room", "pw", B, session=b.joined.session))  # type: ignore[attr-defined]
    assert isinstance(await b2.recv(), Joined)
    frame = await b.recv()
    assert isinstance(frame, ErrorFrame)
    assert (frame.code, frame.fatal) == (ErrorCode.REPLACED, True)
    await a.send(Relay(1, CAND))
    assert await b2.recv() == Deliver(A, 1, CAND)


async def test_grace_expiry_and_leave_announce_presence() -> None:
    async with SignalingServer(resume_grace=0.2, ping_interval=None) as srv:
        a, b = await pair(srv.url)
        await b.close()
        assert await a.recv() == PeerLeft(B, "bob", "disconnected")
        assert await a.recv() == PeerLeft(B, "bob", "expired")
        c = await joined(srv.url, C)  # the slot is free again
        assert await a.recv() == PeerJoined(C, "carol", resumed=False)
        await c.send(Leave())
        assert await a.recv() == PeerLeft(C, "carol", "left")
        await a.send(Leave())
        with pytest.raises(ConnectionClosed):
            await a.recv()
        await asyncio.sleep(0)
        assert srv.room_count() == 0


async def test_turn_rest_credentials_on_join_and_on_request() -> None:
    async with SignalingServer(
        turn_secret="relay-secret",
        turn_uris=["turn:127.0.0.1:3478?transport=udp", "stun:127.0.0.1:3478"],
        turn_ttl=600,
        clock=lambda: 1_700_000_000.0,
        ping_interval=None,
    ) as srv:
        a = await joined(srv.url, A)
        (ice,) = a.joined.ice_servers  # type: ignore[attr-defined]
        assert ice.urls == ("turn:127.0.0.1:3478?transport=udp", "stun:127.0.0.1:3478")
        assert ice.username == f"1700000600:{A}"
        assert rest_username_expiry(ice.username) == 1_700_000_600
        assert ice.credential == rest_password("relay-secret", ice.username)
        await a.send(IceServersRequest())
        assert await a.recv() == IceServers((ice,))


def test_turn_uris_without_a_secret_are_refused() -> None:
    with pytest.raises(SignalingError, match="needs a TURN shared secret"):
        SignalingServer(turn_uris=["turn:127.0.0.1:3478"])
    assert SignalingServer(turn_uris=["stun:127.0.0.1:3478"]).turn_uris


async def test_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            SignalingError, match=f"^cannot listen on 127.0.0.1:{port}: address already in use$"
        ):
            await SignalingServer("127.0.0.1", port).start()


async def test_health_check_and_plain_http(server: SignalingServer) -> None:
    url = server.url.replace("ws://", "http://") + "/healthz"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    assert body == b"ok\n"


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = SignalingServer("::1", 0, ping_interval=None)
        await srv.start()
    except SignalingError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    async with srv:
        assert srv.url.startswith("ws://[::1]:")
        a, b = await pair(srv.url)
        await a.send(Relay(1, CAND))
        assert await b.recv() == Deliver(A, 1, CAND)


async def test_many_bad_clients_do_not_disturb_a_call(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    garbage: list[str | bytes] = ["", "null", "{}", '{"v":1,"type":5}', b"\x00" * 100, "[]" * 900]
    vandals = [await RawClient.open(server.url) for _ in range(10)]
    for vandal in vandals:
        for junk in garbage:
            await vandal.send(junk)
    for seq in range(1, 21):
        await a.send(Relay(seq, CAND))
    assert [await b.recv() for _ in range(20)] == [Deliver(A, s, CAND) for s in range(1, 21)]
    for vandal in vandals:
        vandal.ws.transport.abort()
    assert await a.until_pong() == []
    assert server.stats.errors >= 10 * len(garbage)


async def test_a_flooding_client_is_cut_off_while_other_rooms_carry_on() -> None:
    """Over the rate limit: a fatal ``rate-limited`` error, close 1008; others unaffected."""
    async with SignalingServer(
        "127.0.0.1", 0, rate_limit=20.0, rate_burst=40, ping_interval=None
    ) as server:
        flooder = await joined(server.url, A, room="noisy")
        good_a = WebSocketChannel(server.url, "quiet", "pw", reconnect=False)
        good_b = WebSocketChannel(server.url, "quiet", "pw", reconnect=False)
        await good_a.connect()
        await good_b.connect()

        async def flood() -> None:
            # 1,000 frames back to back: far beyond 40 + 20/s however slow the machine is.
            # Once the server closes, websockets raises ConnectionClosed on a later send.
            with contextlib.suppress(ConnectionClosed):
                for _ in range(1000):
                    await flooder.send(Ping())

        async def exchange() -> None:
            await good_a.send(Offer(SDP))
            async with asyncio.timeout(10):
                assert await good_b.receive() == Offer(SDP)
            for n in range(5):
                await good_b.send(Candidate(f"candidate:{n} 1 udp 1 192.0.2.1 5000 typ host"))
            async with asyncio.timeout(10):
                for n in range(5):
                    received = await good_a.receive()
                    assert isinstance(received, Candidate)
                    assert received.candidate.startswith(f"candidate:{n} ")

        await asyncio.gather(flood(), exchange())
        frames = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                frames.append(await flooder.recv())
        errors = [f for f in frames if isinstance(f, ErrorFrame)]
        assert len(errors) == 1, frames
        assert errors[0].code == ErrorCode.RATE_LIMITED
        assert errors[0].fatal is True
        assert errors[0].message == "more than 20 frames/s (bursts of 40); closing"
        assert flooder.ws.close_code == 1008
        # The quiet room is still in business after the flooder is gone.
        await good_b.send(Answer(SDP))
        async with asyncio.timeout(10):
            assert await good_a.receive() == Answer(SDP)
        async with asyncio.timeout(5):  # the server's handler may finish after the client saw EOF
            while server.stats.connections > 2:  # noqa: ASYNC110 (the server notices the close)
                await asyncio.sleep(0.01)
        assert server.stats.connections == 2
        await good_a.close()
        await good_b.close()


async def test_a_burst_within_the_limit_is_served() -> None:
    async with SignalingServer(
        "127.0.0.1", 0, rate_limit=1.0, rate_burst=30, ping_interval=None
    ) as server:
        client = await joined(server.url, A)  # the join is frame 1 of 30

        for _ in range(28):
            await client.send(Ping())
        frames = [await client.recv() for _ in range(28)]
        assert all(not isinstance(f, ErrorFrame) for f in frames)
        await client.close()


async def test_connections_per_address_are_capped_with_http_429() -> None:
    async with SignalingServer(
        "127.0.0.1", 0, max_connections_per_ip=3, ping_interval=None
    ) as server:
        clients = [await RawClient.open(server.url) for _ in range(3)]
        channel = WebSocketChannel(server.url, "r", "pw", reconnect=False)
        with pytest.raises(SignalingError) as info:
            await channel.connect()
        assert str(info.value) == (
            f"signaling server {server.url} refused the WebSocket upgrade (HTTP 429) "
            "(too many connections from this address)"
        )
        await clients.pop().close()
        async with asyncio.timeout(5):
            while server.tcp_connections("127.0.0.1") > 2:  # noqa: ASYNC110 (server sees close)
                await asyncio.sleep(0.01)
        clients.append(await RawClient.open(server.url))  # a freed place can be taken again
        for client in clients:
            await client.close()


# --- probes from outside (issue 16) -------------------------------------------------------


async def test_deeply_nested_json_gets_an_error_frame_and_the_link_stays() -> None:
    async with SignalingServer(ping_interval=None) as server:  # default 128 KiB frames
        client = await joined(server.url, A)
        await client.send("[" * 100_000)
        frame = await client.recv()
        assert frame == ErrorFrame(ErrorCode.BAD_JSON, "malformed JSON: nested too deeply")
        await client.send('{"v":1,"type":"ping","x":' + "{" * 50_000)
        assert (await client.recv()).code == ErrorCode.BAD_JSON  # type: ignore[union-attr]
        assert await client.until_pong() == []
        await client.close()


async def test_half_open_connections_count_toward_the_cap_and_time_out() -> None:
    async with SignalingServer(
        max_connections_per_ip=3, handshake_timeout=0.5, ping_interval=None
    ) as server:
        silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        channel = WebSocketChannel(server.url, "r", "pw", reconnect=False)
        with pytest.raises(SignalingError, match=r"HTTP 429"):
            await channel.connect()
        for reader, _ in silent:  # the server drops each of them: no request in time
            async with asyncio.timeout(10):
                assert await reader.read() == b""
        async with asyncio.timeout(5):
            while server.tcp_connections("127.0.0.1"):  # noqa: ASYNC110 (server sees close)
                await asyncio.sleep(0.01)
        await channel.connect()  # the places are free again
        await channel.close()
        for _, writer in silent:
            writer.close()


async def test_a_flood_of_tcp_connections_is_aborted_past_the_cap() -> None:
    async with SignalingServer(max_connections_per_ip=2, ping_interval=None) as server:
        socks = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(40)]
        async with asyncio.timeout(10):  # 2 + 16 may wait for their answer, the rest go
            while server.tcp_connections("127.0.0.1") > 18:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        for _, writer in socks:
            writer.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_running_out_of_file_descriptors_is_logged(loop: str) -> None:
    """With a 64-descriptor hard limit the server says so at start, and logs (once per 10 s)
    when the accept loop is refused or about to be, instead of refusing clients silently."""

    def small_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "signal", "--port", "0", "--event-loop", loop,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        preexec_fn=small_limit,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    socks = []
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not (line := (await proc.stdout.readline()).decode()).startswith("ready"):
                assert line, lines
                lines.append(line.strip())
        assert "open files limit 64 (about 0 clients)" in lines
        port = int(lines[0].rsplit(":", 1)[1])
        for _ in range(80):
            socks.append(await asyncio.open_connection("127.0.0.1", port))
        async with asyncio.timeout(30):
            err = ""
            while "cannot accept connections" not in err:
                err += (await proc.stderr.readline()).decode()
        assert "the open files limit 64" in err
        assert "Traceback" not in err
    finally:
        for _, writer in socks:
            writer.close()
        proc.kill()
        await proc.wait()


def test_bad_limits_are_refused() -> None:
    with pytest.raises(SignalingError, match="rate limit must be positive"):
        SignalingServer(rate_limit=0)
    with pytest.raises(SignalingError, match="rate burst must be at least 1"):
        SignalingServer(rate_burst=0)
    with pytest.raises(SignalingError, match="connections per address must be at least 1"):
        SignalingServer(max_connections_per_ip=0)
