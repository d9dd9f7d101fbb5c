"""nat._mmsg_ext (recvmmsg/sendmmsg) on real loopback sockets, and the relay's UDP paths with and
without it: the batched drains must decide and deliver exactly as the per-datagram ones."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import os
import select
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from nat import _mmsg, stun
from nat.auth import long_term_key
from nat.config import RelayConfig
from nat.service import RelayServer
from tests.nat.conftest import has_ipv6_loopback, relay_port_range
from tests.nat.turn_helpers import key_for, new_tid, request_bytes


def _extension() -> Any:
    try:
        return importlib.import_module("nat._mmsg_ext")
    except ImportError:  # optional: the relay then runs its pure-Python path (tested below)
        return None


ext = _extension()
NEEDS_EXT = pytest.mark.skipif(ext is None, reason="the optional C extension was not built")

REALM = "peercall"
USER, PASSWORD = "alice", "wonderland"
V6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")


@contextlib.contextmanager
def udp_pair(host: str = "127.0.0.1") -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two bound non-blocking UDP sockets on ``host``: (sender, receiver)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with (
        socket.socket(family, socket.SOCK_DGRAM) as a,
        socket.socket(family, socket.SOCK_DGRAM) as b,
    ):
        for sock in (a, b):
            sock.bind((host, 0))
            sock.setblocking(False)
        yield a, b


def wait_readable(sock: socket.socket) -> None:
    """Loopback delivery is immediate, but let the kernel finish it before reading."""
    select.select([sock], [], [], 2.0)


@NEEDS_EXT
@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=V6)])
def test_a_batch_goes_out_and_comes_back_with_its_sources(host: str) -> None:
    with udp_pair(host) as (sender, receiver), udp_pair(host) as (other, _):
        to = receiver.getsockname()[:2]
        items: list[tuple[bytes | bytearray, Any]] = [(b"%03d" % i, to) for i in range(100)]
        items.append((bytearray(b"from a bytearray"), to))  # the TCP path's frames
        assert ext.send_batch(sender.fileno(), items) == 101
        other.sendto(b"other", to)
        wait_readable(receiver)
        got: list[tuple[bytes, tuple[str, int]]] = []
        while batch := ext.recv_batch(receiver.fileno(), 64, 65535):
            assert len(batch) <= 64
            got += batch
        # In order, each with its source as (host, port), as socket.recvfrom gives it.
        assert [data for data, _ in got] == [
            *(b"%03d" % i for i in range(100)),
            b"from a bytearray",
            b"other",
        ]
        assert {source for _, source in got[:101]} == {sender.getsockname()[:2]}
        assert got[-1][1] == other.getsockname()[:2]
        assert all(type(s[0]) is str and type(s[1]) is int and len(s) == 2 for _, s in got)


@NEEDS_EXT
def test_routed_datagrams_leave_by_their_own_sockets_in_order() -> None:
    with udp_pair() as (one, receiver), udp_pair() as (two, _):
        fds = {one.getsockname(): one.fileno(), two.getsockname(): two.fileno()}
        to = receiver.getsockname()
        gone = ("127.0.0.1", 9)  # a key no longer in fds (its socket closed): dropped
        keys = [one.getsockname(), one.getsockname(), two.getsockname(), gone, one.getsockname()]
        items = [(k, to, b"%d" % i) for i, k in enumerate(keys)]
        assert ext.send_routed(fds, items) == 4
        wait_readable(receiver)
        got = ext.recv_batch(receiver.fileno(), 8, 100)
        assert got == [
            (b"0", one.getsockname()),
            (b"1", one.getsockname()),
            (b"2", two.getsockname()),
            (b"4", one.getsockname()),
        ]
        with pytest.raises(TypeError):
            ext.send_routed(fds, [(to, b"data")])


@NEEDS_EXT
def test_nothing_waiting_is_an_empty_list_not_an_error() -> None:
    # (EAGAIN on the send side cannot be made on loopback, which frees a datagram's buffer
    # as it hands it over; send_batch stops there and returns the count, see _mmsg_ext.c.)
    with udp_pair() as (_, receiver):
        assert ext.recv_batch(receiver.fileno(), 64, 65535) == []


@NEEDS_EXT
def test_an_oversized_datagram_is_truncated_as_recvfrom_truncates_it() -> None:
    with udp_pair() as (sender, receiver):
        to = receiver.getsockname()
        sender.sendto(b"x" * 3000, to)
        sender.sendto(b"short", to)
        wait_readable(receiver)
        assert ext.recv_batch(receiver.fileno(), 8, 1000) == [
            (b"x" * 1000, sender.getsockname()),
            (b"short", sender.getsockname()),
        ]


@NEEDS_EXT
def test_one_refused_datagram_does_not_stop_the_others() -> None:
    with udp_pair() as (sender, receiver):
        to = receiver.getsockname()
        items = [
            (b"a", to),
            (b"b", ("not-an-address", 1)),  # numeric addresses only: dropped
            (b"c", ("::1", to[1])),  # an IPv6 address on an IPv4 socket: refused alone
            (b"d", (to[0], 70000)),  # no such port
            (b"e", to),
        ]
        assert ext.send_batch(sender.fileno(), items) == 2
        wait_readable(receiver)
        assert [data for data, _ in ext.recv_batch(receiver.fileno(), 8, 100)] == [b"a", b"e"]


@NEEDS_EXT
def test_single_datagrams_are_sent_or_refused_alone() -> None:
    # A run of one datagram (a batch of one, or the last left of a batch) takes sendto(2)
    # instead of sendmmsg(2): the same outcome, delivered or dropped alone.
    with udp_pair() as (sender, receiver):
        to = receiver.getsockname()
        refused = ("::1", to[1])  # an IPv6 address on an IPv4 socket
        assert ext.send_batch(sender.fileno(), [(b"a", to)]) == 1
        assert ext.send_batch(sender.fileno(), [(b"x", refused)]) == 0
        assert ext.send_batch(sender.fileno(), [(b"b", to), (b"y", refused)]) == 1
        assert ext.send_batch(sender.fileno(), [(b"z", refused), (b"c", to)]) == 1
        fds = {sender.getsockname(): sender.fileno()}
        key = sender.getsockname()
        assert ext.send_routed(fds, [(key, to, b"d"), (key, refused, b"w")]) == 1
        wait_readable(receiver)
        got = ext.recv_batch(receiver.fileno(), 8, 100)
        assert [data for data, _ in got] == [b"a", b"b", b"c", b"d"]


@NEEDS_EXT
def test_each_datagram_goes_to_its_own_address() -> None:
    # The last address converted is remembered (by identity): addresses taking turns, the same
    # tuple again, an equal but distinct tuple, and IPv4 then IPv6 all still go where they say.
    with udp_pair() as (sender, one), udp_pair() as (_, two), udp_pair("::1") as (sender6, three):
        a, b = one.getsockname(), two.getsockname()
        items = [(b"1", a), (b"2", a), (b"3", b), (b"4", a), (b"5", (a[0], a[1])), (b"6", b)]
        assert ext.send_batch(sender.fileno(), items) == 6
        six = three.getsockname()[:2]
        assert ext.send_batch(sender6.fileno(), [(b"7", six), (b"8", b), (b"9", six)]) == 2
        for receiver, expected in ((one, [b"1", b"2", b"4", b"5"]), (two, [b"3", b"6"])):
            wait_readable(receiver)
            assert [data for data, _ in ext.recv_batch(receiver.fileno(), 8, 100)] == expected
        wait_readable(three)
        assert [data for data, _ in ext.recv_batch(three.fileno(), 8, 100)] == [b"7", b"9"]


@NEEDS_EXT
def test_a_bad_descriptor_raises_oserror() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = sock.fileno()
    sock.close()
    with pytest.raises(OSError, match="Bad file descriptor") as caught:
        ext.recv_batch(fd, 8, 100)
    assert caught.value.errno == errno.EBADF
    with pytest.raises(OSError, match="Bad file descriptor"):
        ext.send_batch(fd, [(b"x", ("127.0.0.1", 9))])
    with open(os.devnull, "rb") as not_a_socket, pytest.raises(OSError, match="non-socket"):
        ext.recv_batch(not_a_socket.fileno(), 8, 100)


@NEEDS_EXT
def test_wrong_types_raise_typeerror_and_bad_sizes_valueerror() -> None:
    with udp_pair() as (sender, receiver):
        to = receiver.getsockname()
        for bad in ([("text", to)], [(b"x", ["127.0.0.1", 9])], [b"x"], [(b"x", ("h", "9"))]):
            with pytest.raises(TypeError):
                ext.send_batch(sender.fileno(), bad)
        with pytest.raises(ValueError, match="positive"):
            ext.recv_batch(receiver.fileno(), 0, 100)
        assert ext.send_batch(sender.fileno(), []) == 0


# --- the relay's UDP paths, batched and per datagram ------------------------------------------


@pytest.fixture(params=[pytest.param("batched", marks=NEEDS_EXT), "per datagram"])
def batching(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a relay test once with nat._mmsg and once with its pure-Python fallback."""
    if request.param == "per datagram":
        monkeypatch.setattr(_mmsg, "recv_batch", None)
        monkeypatch.setattr(_mmsg, "send_batch", None)
        monkeypatch.setattr(_mmsg, "send_routed", None)
    else:
        monkeypatch.setattr(_mmsg, "recv_batch", ext.recv_batch)
        monkeypatch.setattr(_mmsg, "send_batch", ext.send_batch)
        monkeypatch.setattr(_mmsg, "send_routed", ext.send_routed)
    return str(request.param)


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[Any, ...]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((data, addr))

    async def get(self) -> bytes:
        return (await asyncio.wait_for(self.queue.get(), 5))[0]


def build(method: int, attrs: list[tuple[stun.Attr[Any], Any]], nonce: bytes) -> bytes:
    """A request, signed when ``nonce`` is known."""
    key = key_for(USER, REALM, PASSWORD)
    return request_bytes(method, attrs, username=USER, realm=REALM, key=key, nonce=nonce)


async def request(
    send: Callable[[bytes], object],
    receive: Callable[[], Awaitable[bytes]],
    method: int,
    attrs: list[tuple[stun.Attr[Any], Any]],
    nonce: bytes,
) -> tuple[stun.Message, bytes]:
    """A signed request (after a 401 for the nonce, when ``nonce`` is empty)."""
    for _ in range(2):
        send(build(method, attrs, nonce))
        answer = stun.parse_message(await receive())
        error = answer.get(stun.ERROR_CODE)
        fresh = answer.get(stun.NONCE)
        if error is not None and error.code == 401 and fresh:
            nonce = fresh
            continue
        assert error is None, error
        return answer, nonce
    raise AssertionError("not authenticated")


def relay_config(host: str) -> RelayConfig:
    low, high = relay_port_range(50)
    return RelayConfig(
        listening_ips=(host,),
        listening_port=0,
        min_port=low,
        max_port=high,
        realm=REALM,
        users=((USER, long_term_key(USER, REALM, PASSWORD)),),
        allow_loopback_peers=True,
    )


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=V6)])
async def test_the_relay_forwards_the_same_with_and_without_batching(
    host: str, batching: str
) -> None:
    config = relay_config(host)
    loop = asyncio.get_running_loop()
    async with RelayServer(config) as relay:
        [listener] = relay.udp_listeners.values()
        wanted = "drain_batched" if batching == "batched" else "drain"
        assert listener.reader.__name__ == wanted
        server = (host, relay.addresses[0][2])
        client_t, client = await loop.create_datagram_endpoint(Endpoint, local_addr=(host, 0))
        peer_t, peer = await loop.create_datagram_endpoint(Endpoint, local_addr=(host, 0))
        try:
            peer_address = peer_t.get_extra_info("sockname")[:2]
            allocate: list[tuple[stun.Attr[Any], Any]] = [(stun.REQUESTED_TRANSPORT, 17)]
            if ":" in host:
                allocate.append((stun.REQUESTED_ADDRESS_FAMILY, 2))  # IPv6 (RFC 8656 §18.1)

            def send(data: bytes) -> None:
                client_t.sendto(data, server)

            answer, nonce = await request(
                send, client.get, stun.Method.ALLOCATE, allocate, nonce=b""
            )
            relayed = answer.get(stun.XOR_RELAYED_ADDRESS)
            assert relayed is not None
            [relay_endpoint] = relay.relays.values()
            assert relay_endpoint.reader.__name__ == wanted
            bind: list[tuple[stun.Attr[Any], Any]] = [
                (stun.CHANNEL_NUMBER, 0x4000),
                (stun.XOR_PEER_ADDRESS, peer_address),
            ]
            await request(send, client.get, stun.Method.CHANNEL_BIND, bind, nonce)
            # client -> peer: a burst of ChannelData (more than one drain), then Send
            # indications, interleaved with bare Binding requests answered in between.
            for i in range(150):
                client_t.sendto(stun.encode_channel_data(0x4000, b"c%03d" % i), server)
            binding = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid())
            client_t.sendto(binding.encode(), server)
            for i in range(20):
                indication = stun.Message(stun.Method.SEND, stun.MsgClass.INDICATION, new_tid())
                indication.add(stun.XOR_PEER_ADDRESS, peer_address)
                indication.add(stun.DATA, b"s%03d" % i)
                client_t.sendto(indication.encode(), server)
            got = [await peer.get() for _ in range(170)]
            assert got == [b"c%03d" % i for i in range(150)] + [b"s%03d" % i for i in range(20)]
            answer_to_binding = stun.parse_message(await client.get())
            assert answer_to_binding.transaction_id == binding.transaction_id
            # peer -> client: ChannelData on the bound channel, in order.
            for i in range(150):
                peer_t.sendto(b"p%03d" % i, relayed)
            back = [await client.get() for _ in range(150)]
            assert back == [stun.encode_channel_data(0x4000, b"p%03d" % i) for i in range(150)]
            assert relay.stats().relayed_packets == 320
            assert relay.core.counters.internal_errors == 0
        finally:
            client_t.close()
            peer_t.close()


async def test_tcp_frames_relay_the_same_with_and_without_batching(batching: str) -> None:
    # One write of many frames: the relayed ones are collected and sent at the end of the
    # read (batched), except that a request in the middle (the slow path) sends what is due
    # first; the peer gets everything in order either way.
    loop = asyncio.get_running_loop()
    async with RelayServer(relay_config("127.0.0.1")) as relay:
        port = next(port for kind, _, port in relay.addresses if kind == "tcp")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer_t, peer = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
        try:

            async def receive() -> bytes:
                head = await asyncio.wait_for(reader.readexactly(20), 5)
                return head + await reader.readexactly(int.from_bytes(head[2:4], "big"))

            peer_address = peer_t.get_extra_info("sockname")[:2]
            allocate: list[tuple[stun.Attr[Any], Any]] = [(stun.REQUESTED_TRANSPORT, 17)]
            _, nonce = await request(writer.write, receive, stun.Method.ALLOCATE, allocate, b"")
            bind: list[tuple[stun.Attr[Any], Any]] = [
                (stun.CHANNEL_NUMBER, 0x4000),
                (stun.XOR_PEER_ADDRESS, peer_address),
            ]
            await request(writer.write, receive, stun.Method.CHANNEL_BIND, bind, nonce)
            frames = [stun.encode_channel_data(0x4000, b"t%03d" % i, pad=True) for i in range(60)]
            indication = stun.Message(stun.Method.SEND, stun.MsgClass.INDICATION, new_tid())
            indication.add(stun.XOR_PEER_ADDRESS, peer_address)
            indication.add(stun.DATA, b"send")
            rebind = build(stun.Method.CHANNEL_BIND, bind, nonce)  # refreshes the binding
            writer.write(b"".join([*frames[:30], indication.encode(), rebind, *frames[30:]]))
            answer = stun.parse_message(await receive())
            assert answer.get(stun.ERROR_CODE) is None
            got = [await peer.get() for _ in range(61)]
            expected = [b"t%03d" % i for i in range(60)]
            assert got == [*expected[:30], b"send", *expected[30:]]
            assert relay.core.counters.internal_errors == 0
        finally:
            peer_t.close()
            writer.close()
            await writer.wait_closed()
