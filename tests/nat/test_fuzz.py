"""Hypothesis fuzzing: the codec raises only its typed errors; the core never raises at all."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nat import stun
from nat.auth import long_term_key
from nat.config import RelayConfig
from nat.errors import ChannelDataError, StunError
from nat.policy import PeerPolicy
from nat.server import TurnServer
from tests.nat.test_policy import embeddings
from tests.nat.turn_helpers import UDP, Client

_KNOWN = sorted(stun.ATTRIBUTES)


@st.composite
def stun_like(draw: st.DrawFn) -> bytes:
    """Bytes with a valid STUN header and attributes of (mostly) known types, random values."""
    method = draw(st.sampled_from([1, 3, 4, 6, 8, 9, draw(st.integers(0, 0xFFF))]))
    cls = draw(st.sampled_from(list(stun.MsgClass)))
    body = b""
    for _ in range(draw(st.integers(0, 6))):
        attr_type = draw(st.sampled_from([*_KNOWN, draw(st.integers(0, 0xFFFF))]))
        value = draw(st.binary(max_size=40))
        body += struct.pack(">HH", attr_type, len(value)) + value + bytes(-len(value) & 3)
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    head = struct.pack(
        ">HHI12s", stun.message_type(method, cls), len(body), stun.MAGIC_COOKIE, bytes(12)
    )
    return head + body


inputs = st.one_of(
    stun_like(), st.binary(max_size=120), st.binary(max_size=8).map(lambda b: b"\x40\x00" + b)
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs)
def test_parsers_raise_only_typed_errors(data: bytes) -> None:
    try:
        msg = stun.parse_message(data)
    except StunError:
        pass
    else:
        if msg.integrity_offset is None:  # (attributes after MESSAGE-INTEGRITY are dropped)
            assert bytes(msg) == data  # whatever parses round-trips exactly
    with contextlib.suppress(ChannelDataError):
        stun.parse_channel_data(data)
    with contextlib.suppress(StunError):
        stun.stream_frame_length(data)


def _server() -> TurnServer:
    config = RelayConfig(users=(("alice", long_term_key("alice", "peercall", "secret")),))
    return TurnServer(config, random_bytes=random.Random(1).randbytes)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(inputs, min_size=1, max_size=5))
def test_core_never_raises_even_with_an_allocation(datagrams: list[bytes]) -> None:
    server = _server()
    client = Client(server)
    client.allocate(1000.0)
    client.permit(("203.0.113.9", 1), 1000.0)
    client.bind(0x4000, ("203.0.113.9", 1), 1000.0)
    for data in datagrams:
        server.handle(data, client.source, UDP, 1000.0)
        server.relay_received(client.relay, data, ("203.0.113.9", 1), 1000.0)
    server.tick(5000.0)
    assert server.counters.internal_errors == 0


_DENIED_NETS = [
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
]


@st.composite
def denied_ipv4(draw: st.DrawFn) -> str:
    net = draw(st.sampled_from(_DENIED_NETS))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return str(net.network_address + offset)


@settings(max_examples=2000, deadline=None)
@given(denied_ipv4(), st.sampled_from(list(embeddings("1.2.3.4"))))
def test_no_ipv6_embedding_of_a_denied_ipv4_is_permitted(v4: str, form: str) -> None:
    assert not PeerPolicy().permits(embeddings(v4)[form])
