"""nat.service: the asyncio relay with real sockets on 127.0.0.1 / ::1 and real clients.

Ports are ephemeral (listening_port=0) and relay ports come from a random window that skips
ports in use, so these tests run alongside others on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import random
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aioice.turn import create_turn_endpoint

from nat import stun
from nat.auth import long_term_key
from nat.config import RelayConfig
from nat.errors import ServiceError
from nat.service import RelayServer, RelayStats
from tests.certs import make_cert
from tests.nat.conftest import has_ipv6_loopback
from tests.nat.turn_helpers import key_for, new_tid, request_bytes

REALM = "peercall"
USER, PASSWORD = "alice", "wonderland"


def relay_range(size: int = 100) -> tuple[int, int]:
    start = random.randrange(20000, 32768 - size)
    return start, start + size - 1


def make_config(**overrides: Any) -> RelayConfig:
    low, high = relay_range()
    base: dict[str, Any] = {
        "listening_port": 0,
        "min_port": low,
        "max_port": high,
        "realm": REALM,
        "users": ((USER, long_term_key(USER, REALM, PASSWORD)),),
        "allow_loopback_peers": True,
    }
    base.update(overrides)
    return RelayConfig(**base)


@contextlib.asynccontextmanager
async def running(
    clock: Callable[[], float] = time.time, **overrides: Any
) -> AsyncIterator[RelayServer]:
    server = RelayServer(make_config(**overrides), clock=clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def port_of(server: RelayServer, kind: str = "udp") -> int:
    return next(port for k, _, port in server.addresses if k == kind)


class Inbox(asyncio.DatagramProtocol):
    """A UDP endpoint that queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[Any, ...]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((data, addr))

    async def get(self, wait: float = 5.0) -> tuple[bytes, tuple[Any, ...]]:
        return await asyncio.wait_for(self.queue.get(), wait)


@contextlib.asynccontextmanager
async def udp_endpoint(
    host: str = "127.0.0.1",
) -> AsyncIterator[tuple[asyncio.DatagramTransport, Inbox]]:
    loop = asyncio.get_running_loop()
    transport, inbox = await loop.create_datagram_endpoint(Inbox, local_addr=(host, 0))
    try:
        yield transport, inbox
    finally:
        transport.close()
        await asyncio.sleep(0)


class RawClient:
    """A hand-rolled TURN client over a real UDP socket (requests signed by turn_helpers.sign)."""

    def __init__(self, transport: asyncio.DatagramTransport, inbox: Inbox, server: tuple[str, int]):
        self.transport = transport
        self.inbox = inbox
        self.server = server
        self.key = key_for(USER, REALM, PASSWORD)
        self.nonce = b""

    async def receive(self) -> stun.Message:
        data, _ = await self.inbox.get()
        return stun.parse_message(data)

    async def request(self, method: int, attrs: list[tuple[stun.Attr[Any], Any]]) -> stun.Message:
        for _ in range(2):
            data = request_bytes(
                method, attrs, username=USER, realm=REALM, key=self.key, nonce=self.nonce
            )
            self.transport.sendto(data, self.server)
            response = await self.receive()
            err = response.get(stun.ERROR_CODE)
            nonce = response.get(stun.NONCE)
            if err is not None and err.code in (401, 438) and nonce is not None:
                self.nonce = nonce
                continue
            return response
        return response

    def indicate(self, peer: tuple[str, int], data: bytes) -> None:
        msg = stun.Message(stun.Method.SEND, stun.MsgClass.INDICATION, new_tid())
        msg.add(stun.XOR_PEER_ADDRESS, peer)
        msg.add(stun.DATA, data)
        self.transport.sendto(msg.encode(), self.server)


def error(msg: stun.Message) -> int | None:
    err = msg.get(stun.ERROR_CODE)
    return None if err is None else err.code


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
        return True


async def eventually(check: Callable[[], bool], wait: float = 5.0) -> None:
    for _ in range(int(wait / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


# --- lifecycle ----------------------------------------------------------------------------------


async def test_start_reports_addresses_and_uris_and_stop_is_idempotent() -> None:
    server = RelayServer(make_config())
    assert server.addresses == []
    await server.start()
    port = port_of(server)
    assert server.addresses == [("udp", "127.0.0.1", port), ("tcp", "127.0.0.1", port)]
    assert server.turn_uris() == [
        f"turn:127.0.0.1:{port}?transport=udp",
        f"turn:127.0.0.1:{port}?transport=tcp",
    ]
    assert server.stats() == RelayStats(0, 0, 0, 0, 0, 0)
    await server.stop()
    await server.stop()
    assert server.addresses == []
    assert port_is_free("127.0.0.1", port)


async def test_port_in_use_is_a_one_line_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        server = RelayServer(make_config(listening_port=port))
        with pytest.raises(ServiceError) as exc:
            await server.start()
    assert str(exc.value) == f"cannot listen on udp 127.0.0.1:{port}: address already in use"
    assert server.addresses == []


async def test_bad_certificate_is_a_one_line_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    server = RelayServer(make_config(cert=missing, pkey=missing, tls_listening_port=0))
    with pytest.raises(ServiceError) as exc:
        await server.start()
    assert str(exc.value) == f"cannot load TLS certificate {missing}: no such file or directory"


# --- STUN Binding -------------------------------------------------------------------------------


async def test_binding_over_udp() -> None:
    async with running() as server, udp_endpoint() as (transport, inbox):
        request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid())
        transport.sendto(request.encode(), ("127.0.0.1", port_of(server)))
        data, _ = await inbox.get()
        response = stun.parse_message(data)
        assert response.transaction_id == request.transaction_id
        assert response.get(stun.XOR_MAPPED_ADDRESS) == transport.get_extra_info("sockname")
        assert server.stats().stun_requests == 1


async def test_binding_over_tcp_with_split_and_coalesced_frames() -> None:
    async with running() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server, "tcp"))
        one = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid()).encode()
        two = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid()).encode()
        writer.write(one[:7])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(one[7:] + two)  # the rest of one, and all of two, in one segment
        await writer.drain()
        local = writer.get_extra_info("sockname")
        for sent in (one, two):
            head = await reader.readexactly(20)
            body = await reader.readexactly(struct.unpack(">H", head[2:4])[0])
            response = stun.parse_message(head + body)
            assert response.transaction_id == sent[8:20]
            assert response.get(stun.XOR_MAPPED_ADDRESS) == local
        writer.close()
        await writer.wait_closed()


async def _stream_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: int,
    attrs: list[tuple[stun.Attr[Any], Any]],
    nonce: bytes = b"",
) -> stun.Message:
    """One TURN request over TCP (signed when ``nonce`` is given) and its response."""
    key = key_for(USER, REALM, PASSWORD)
    writer.write(request_bytes(method, attrs, username=USER, realm=REALM, key=key, nonce=nonce))
    head = await reader.readexactly(20)
    body = await reader.readexactly(struct.unpack(">H", head[2:4])[0])
    return stun.parse_message(head + body)


async def test_tcp_frames_cut_anywhere_are_relayed_once_and_in_order() -> None:
    # RFC 8656 §12.5: over TCP, ChannelData is padded to 4 bytes and frames follow each other
    # with no regard for reads. A read may end anywhere (the rest waits in the connection's
    # buffer) or hold several frames; every frame is relayed exactly once, in order.
    async with running() as server, udp_endpoint() as (peer, peer_inbox):
        peer_addr = peer.get_extra_info("sockname")
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server, "tcp"))
        first = await _stream_request(
            reader, writer, stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)]
        )
        nonce = first.get(stun.NONCE)
        assert nonce is not None
        allocate = [(stun.REQUESTED_TRANSPORT, 17)]
        assert (
            error(await _stream_request(reader, writer, stun.Method.ALLOCATE, allocate, nonce))
            is None
        )
        bind: list[tuple[stun.Attr[Any], Any]] = [
            (stun.CHANNEL_NUMBER, 0x4000),
            (stun.XOR_PEER_ADDRESS, peer_addr),
        ]
        assert (
            error(await _stream_request(reader, writer, stun.Method.CHANNEL_BIND, bind, nonce))
            is None
        )
        [stream] = server.streams.values()
        payloads = [b"a", b"bb", b"ccc", b"dddd", b"eeeee", b"indicated", b"f"]
        frames = []
        for payload in payloads:
            if payload == b"indicated":
                msg = stun.Message(stun.Method.SEND, stun.MsgClass.INDICATION, new_tid())
                msg.add(stun.XOR_PEER_ADDRESS, peer_addr)
                msg.add(stun.DATA, payload)
                frames.append(msg.encode())
            else:
                frames.append(stun.encode_channel_data(0x4000, payload, pad=True))
        wire = b"".join(frames)
        cuts = [(cut,) for cut in range(1, len(wire))] + [(3, 30, 31), (1, 2, 3, len(wire) - 1)]
        for points in cuts:
            bounds = [0, *points, len(wire)]
            for start, end in itertools.pairwise(bounds):
                stream.data_received(wire[start:end])  # as the transport hands reads over
                assert (stream.partial_since is None) == (end in (0, *_ends(frames)))
            received = [(await peer_inbox.get())[0] for _ in payloads]
            assert received == payloads, points
            assert not stream.buffer
        assert peer_inbox.queue.empty()
        writer.close()
        await writer.wait_closed()


def _ends(frames: list[bytes]) -> list[int]:
    """Offsets at which each of ``frames`` ends in their concatenation."""
    ends, total = [], 0
    for frame in frames:
        total += len(frame)
        ends.append(total)
    return ends


# --- TURN with aioice (a client nobody here wrote) ----------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_aioice_turn_client_relays_both_ways(transport: str) -> None:
    async with running() as server, udp_endpoint() as (peer, peer_inbox):
        peer_addr = peer.get_extra_info("sockname")
        turn, client = await create_turn_endpoint(
            Inbox,
            ("127.0.0.1", port_of(server, transport)),
            USER,
            PASSWORD,
            transport=transport,
        )
        try:
            relayed = turn.get_extra_info("sockname")
            assert relayed[0] == "127.0.0.1"
            assert server.config.min_port <= relayed[1] <= server.config.max_port
            for i in range(5):  # the first goes as a Send indication, the rest over a channel
                turn.sendto(b"ping %d" % i, peer_addr)
                data, source = await peer_inbox.get()
                assert (data, source) == (b"ping %d" % i, relayed)
                peer.sendto(b"pong %d" % i, source)
                assert await client.get() == (b"pong %d" % i, peer_addr)
            stats = server.stats()
            assert stats.allocations == 1
            assert stats.users == 1
            assert stats.relayed_packets == 10
            assert stats.relayed_bytes == 60
        finally:
            turn.close()
        await eventually(lambda: server.stats().allocations == 0)  # aioice sent Refresh 0
        assert port_is_free("127.0.0.1", relayed[1])
        assert server.stats().errors == 0


async def test_aioice_wrong_password_is_refused() -> None:
    async with running() as server:
        with pytest.raises(Exception, match="401"):
            await create_turn_endpoint(
                Inbox, ("127.0.0.1", port_of(server)), USER, "wrong", transport="udp"
            )
        assert server.stats().allocations == 0


async def test_turn_over_tls(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    async with (
        running(cert=str(cert), pkey=str(key), tls_listening_port=0) as server,
        udp_endpoint() as (peer, peer_inbox),
    ):
        tls_port = port_of(server, "tls")
        assert f"turns:127.0.0.1:{tls_port}?transport=tcp" in server.turn_uris()
        context = ssl.create_default_context(cafile=str(cert))
        turn, client = await create_turn_endpoint(
            Inbox, ("127.0.0.1", tls_port), USER, PASSWORD, transport="tcp", ssl=context
        )
        try:
            peer_addr = peer.get_extra_info("sockname")
            turn.sendto(b"over tls", peer_addr)
            data, source = await peer_inbox.get()
            assert data == b"over tls"
            peer.sendto(b"back", source)
            assert await client.get() == (b"back", peer_addr)
        finally:
            turn.close()
        await eventually(lambda: server.stats().allocations == 0)


# --- hand-rolled clients: IPv6, reservations, expiry, capacity ----------------------------------


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this host")
async def test_ipv6_allocation_on_ipv6_loopback() -> None:
    async with (
        running(listening_ips=("::1",)) as server,
        udp_endpoint("::1") as (transport, inbox),
        udp_endpoint("::1") as (peer, peer_inbox),
    ):
        assert server.turn_uris()[0] == f"turn:[::1]:{port_of(server)}?transport=udp"
        client = RawClient(transport, inbox, ("::1", port_of(server)))
        response = await client.request(
            stun.Method.ALLOCATE,
            [(stun.REQUESTED_TRANSPORT, 17), (stun.REQUESTED_ADDRESS_FAMILY, 2)],
        )
        assert error(response) is None
        relayed = response.get(stun.XOR_RELAYED_ADDRESS)
        assert relayed is not None
        assert relayed[0] == "::1"
        assert response.get(stun.XOR_MAPPED_ADDRESS) == transport.get_extra_info("sockname")[:2]
        peer_addr = peer.get_extra_info("sockname")[:2]
        assert (
            error(
                await client.request(
                    stun.Method.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, peer_addr)]
                )
            )
            is None
        )
        client.indicate(peer_addr, b"six")
        data, source = await peer_inbox.get()
        assert (data, source[:2]) == (b"six", relayed)
        peer.sendto(b"back", source)
        indication = await client.receive()
        assert indication.method == stun.Method.DATA
        assert indication.get(stun.DATA) == b"back"
        assert indication.get(stun.XOR_PEER_ADDRESS) == peer_addr


async def test_even_port_reserves_the_next_port_for_its_token() -> None:
    async with running() as server, udp_endpoint() as (t1, in1), udp_endpoint() as (t2, in2):
        address = ("127.0.0.1", port_of(server))
        rtp = RawClient(t1, in1, address)
        response = await rtp.request(
            stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17), (stun.EVEN_PORT, True)]
        )
        relayed = response.get(stun.XOR_RELAYED_ADDRESS)
        token = response.get(stun.RESERVATION_TOKEN)
        assert relayed is not None
        assert token is not None
        assert relayed[1] % 2 == 0
        assert not port_is_free("127.0.0.1", relayed[1] + 1)  # held for the token
        rtcp = RawClient(t2, in2, address)
        response = await rtcp.request(
            stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17), (stun.RESERVATION_TOKEN, token)]
        )
        assert response.get(stun.XOR_RELAYED_ADDRESS) == ("127.0.0.1", relayed[1] + 1)


async def test_allocation_expiry_closes_the_relay_socket() -> None:
    clock = [1_700_000_000.0]
    async with running(clock=lambda: clock[0]) as server, udp_endpoint() as (t, inbox):
        client = RawClient(t, inbox, ("127.0.0.1", port_of(server)))
        response = await client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
        relayed = response.get(stun.XOR_RELAYED_ADDRESS)
        assert relayed is not None
        assert response.get(stun.LIFETIME) == 600
        assert not port_is_free(*relayed)
        clock[0] += 599
        await asyncio.sleep(1.2)  # at least one timer round
        assert server.stats().allocations == 1
        clock[0] += 1
        await eventually(lambda: server.stats().allocations == 0)
        assert port_is_free(*relayed)


async def test_no_free_relay_port_is_508() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        async with running(min_port=port, max_port=port) as server, udp_endpoint() as (t, inbox):
            client = RawClient(t, inbox, ("127.0.0.1", port_of(server)))
            response = await client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
            assert response.get(stun.ERROR_CODE) == (508, "Insufficient Capacity")
            assert server.stats().allocations == 0


async def test_tcp_disconnect_frees_the_allocation() -> None:
    async with running() as server:
        turn, _client = await create_turn_endpoint(
            Inbox, ("127.0.0.1", port_of(server, "tcp")), USER, PASSWORD, transport="tcp"
        )
        relayed = turn.get_extra_info("sockname")
        assert server.stats().allocations == 1
        # Drop the TCP connection without a Refresh 0: the allocation must go with it.
        inner = turn._TurnTransport__inner_protocol  # type: ignore[attr-defined]
        inner.transport.abort()
        await eventually(lambda: server.stats().allocations == 0)
        assert port_is_free(*relayed)
        turn.close()


async def test_stop_closes_relays_and_connections() -> None:
    server = RelayServer(make_config())
    await server.start()
    turn, _client = await create_turn_endpoint(
        Inbox, ("127.0.0.1", port_of(server, "tcp")), USER, PASSWORD, transport="tcp"
    )
    relayed = turn.get_extra_info("sockname")
    await server.stop()
    assert port_is_free(*relayed)
    assert server.stats().allocations == 0
    turn.close()
    await asyncio.sleep(0)


async def test_bad_clients_do_not_stop_the_others() -> None:
    async with running() as server, udp_endpoint() as (transport, inbox):
        address = ("127.0.0.1", port_of(server))
        for junk in (
            b"",
            b"\xff" * 40,
            b"\x00\x01\x00\x04" + bytes(16),
            b"\x40\x00\xff\xff",
            b"GET / HTTP/1.1\r\n",
        ):
            transport.sendto(junk, address)
        # A TCP client speaking HTTP ("GE" looks like a ChannelData header) is disconnected...
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await writer.wait_closed()
        # ...one that sends half a frame and hangs stays connected without blocking anyone...
        slow_reader, slow_writer = await asyncio.open_connection(*address)
        slow_writer.write(b"\x00\x01\x00\x50" + bytes(10))
        await slow_writer.drain()
        # ...and a well-behaved client is served all along.
        request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid())
        transport.sendto(request.encode(), address)
        data, _ = await inbox.get()
        assert stun.parse_message(data).transaction_id == request.transaction_id
        assert server.stats().errors >= 3
        assert server.core.counters.internal_errors == 0
        slow_writer.close()
        await slow_writer.wait_closed()
        del slow_reader


# --- the UDP hot path (ChannelData both ways, bare Binding) -------------------------------------


@pytest.mark.parametrize("reader", ["add_reader", "transport fallback"])
async def test_udp_fast_path_relays_and_drops_like_the_core(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if reader != "add_reader":

        def no_reader(*args: object) -> None:
            raise NotImplementedError

        monkeypatch.setattr(asyncio.get_running_loop(), "add_reader", no_reader)
    clock = [1_700_000_000.0]
    async with (
        running(clock=lambda: clock[0]) as server,
        udp_endpoint() as (t, inbox),
        udp_endpoint() as (peer_t, peer_inbox),
    ):
        client = RawClient(t, inbox, ("127.0.0.1", port_of(server)))
        response = await client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
        relayed = response.get(stun.XOR_RELAYED_ADDRESS)
        assert relayed is not None
        peer = peer_t.get_extra_info("sockname")
        bound = await client.request(
            stun.Method.CHANNEL_BIND,
            [(stun.CHANNEL_NUMBER, 0x4000), (stun.XOR_PEER_ADDRESS, peer)],
        )
        assert error(bound) is None
        # A burst client -> peer arrives whole and in order (drains of DRAIN_MAX = 64 per
        # readiness event). 100 stays well inside a default 208 KiB socket buffer (~256 fit).
        for i in range(100):
            t.sendto(stun.encode_channel_data(0x4000, b"%03d" % i), client.server)
        got = [(await peer_inbox.get())[0] for _ in range(100)]
        assert got == [b"%03d" % i for i in range(100)]
        # peer -> client: ChannelData.
        peer_t.sendto(b"pong", relayed)
        data, _ = await inbox.get()
        assert data == b"\x40\x00\x00\x04pong"
        assert server.stats().relayed_packets == 101  # the burst and the one reply
        # An unbound channel is dropped and counted.
        dropped = server.core.counters.dropped
        t.sendto(stun.encode_channel_data(0x4001, b"lost"), client.server)
        await eventually(lambda: server.core.counters.dropped == dropped + 1)
        # After 300 s the permission has expired (the channel lives 600 s): peer data is
        # dropped, while client -> peer still flows on the bound channel (RFC 8656 §12.5).
        clock[0] += 300
        peer_t.sendto(b"late", relayed)
        await eventually(lambda: server.core.counters.dropped == dropped + 2)
        t.sendto(stun.encode_channel_data(0x4000, b"still"), client.server)
        assert (await peer_inbox.get())[0] == b"still"
        assert inbox.queue.empty()
        # A bare Binding request takes the lean encoder and is counted.
        requests = server.stats().stun_requests
        request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid())
        t.sendto(request.encode(), client.server)
        answer = stun.parse_message((await inbox.get())[0])
        assert answer.get(stun.XOR_MAPPED_ADDRESS) == t.get_extra_info("sockname")
        assert server.stats().stun_requests == requests + 1


# --- max-allocate-timeout: idle TCP/TLS clients -------------------------------------------------


async def test_idle_and_stalled_tcp_clients_are_closed_but_allocated_ones_stay() -> None:
    clock = [1_700_000_000.0]
    async with running(clock=lambda: clock[0], max_allocate_timeout=60) as server:
        address = ("127.0.0.1", port_of(server, "tcp"))
        turn, _client = await create_turn_endpoint(Inbox, address, USER, PASSWORD, transport="tcp")
        silent_r, silent_w = await asyncio.open_connection(*address)
        stalled_r, stalled_w = await asyncio.open_connection(*address)
        request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid()).encode()
        stalled_w.write(request[:10])  # half a header, then nothing
        await stalled_w.drain()
        await eventually(lambda: len(server.streams) == 3)
        clock[0] += 59
        await asyncio.sleep(1.2)  # a timer round: nobody is due yet
        assert len(server.streams) == 3
        clock[0] += 1
        assert await asyncio.wait_for(silent_r.read(), 5) == b""  # closed by the server
        assert await asyncio.wait_for(stalled_r.read(), 5) == b""
        await eventually(lambda: len(server.streams) == 1)
        assert server.stats().allocations == 1  # the allocated client was left alone
        silent_w.close()
        stalled_w.close()
        turn.close()
        await asyncio.sleep(0)


async def test_wildcard_listener_advertises_the_address_the_client_reached() -> None:
    # listening-ip 0.0.0.0 without relay-ip/external-ip: never advertise 0.0.0.0.
    async with running(listening_ips=("0.0.0.0",)) as server, udp_endpoint() as (t, inbox):
        client = RawClient(t, inbox, ("127.0.0.1", port_of(server)))
        response = await client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
        relayed = response.get(stun.XOR_RELAYED_ADDRESS)
        assert relayed is not None
        assert relayed[0] == "127.0.0.1"
        assert ("0.0.0.0", relayed[1]) in server.relays
        # TCP: the connection's own local address.
        turn, _client = await create_turn_endpoint(
            Inbox, ("127.0.0.1", port_of(server, "tcp")), USER, PASSWORD, transport="tcp"
        )
        assert turn.get_extra_info("sockname")[0] == "127.0.0.1"
        turn.close()
        await asyncio.sleep(0)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_dual_allocation_relays_both_families_and_closes_both() -> None:
    async with (
        running(listening_ips=("127.0.0.1", "::1")) as server,
        udp_endpoint() as (t, inbox),
        udp_endpoint("::1") as (peer6, peer6_inbox),
    ):
        client = RawClient(t, inbox, ("127.0.0.1", port_of(server)))
        response = await client.request(
            stun.Method.ALLOCATE,
            [(stun.REQUESTED_TRANSPORT, 17), (stun.ADDITIONAL_ADDRESS_FAMILY, 2)],
        )
        v4, v6 = response.get_all(stun.XOR_RELAYED_ADDRESS)
        assert (v4[0], v6[0]) == ("127.0.0.1", "::1")
        peer = peer6.get_extra_info("sockname")[:2]
        permitted = await client.request(
            stun.Method.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, peer)]
        )
        assert error(permitted) is None
        client.indicate(peer, b"over six")  # an IPv4 client reaching an IPv6 peer
        data, source = await peer6_inbox.get()
        assert (data, source[:2]) == (b"over six", v6)
        deleted = await client.request(stun.Method.REFRESH, [(stun.LIFETIME, 0)])
        assert error(deleted) is None
        await eventually(lambda: port_is_free(*v4) and port_is_free(*v6))
