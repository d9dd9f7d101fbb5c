"""The ICE server probe against real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioice import stun

from app.iceservers import IceServer
from app.probe import ProbeCandidate, probe_servers, probe_uri
from tests.conftest import free_port


class StunResponder(asyncio.DatagramProtocol):
    """A minimal STUN server: answers Binding requests with XOR-MAPPED-ADDRESS (RFC 8489 §14.2)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        request = stun.parse_message(data)
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        self.transport.sendto(bytes(response), addr)  # type: ignore[attr-defined]


@pytest.fixture
async def stun_server() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(StunResponder, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1]
    transport.close()


async def test_stun_returns_reflexive_address(stun_server: int) -> None:
    result = await probe_uri(f"stun:127.0.0.1:{stun_server}")
    assert result.ok, result.error
    assert len(result.candidates) == 1
    candidate = result.candidates[0]
    assert (candidate.type, candidate.address) == ("srflx", "127.0.0.1")
    assert candidate.port > 0
    assert result.summary.startswith(f"srflx 127.0.0.1:{candidate.port} (")


async def test_closed_port_is_reported() -> None:
    port = free_port(socket.SOCK_DGRAM)
    result = await probe_uri(f"stun:127.0.0.1:{port}", time_limit=3.0)
    assert not result.ok
    assert result.error in ("connection refused (nothing listening there?)", "no answer within 3 s")


async def test_silent_server_times_out() -> None:
    # A bound socket that never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = await probe_uri(f"stun:127.0.0.1:{port}", time_limit=0.3)
    assert not result.ok
    assert result.error == "no answer within 0.3 s"


async def test_bad_uri_is_reported_not_raised() -> None:
    result = await probe_uri("stun://example.com")
    assert not result.ok
    assert result.error is not None
    assert "no '//'" in result.error


async def test_stuns_is_refused_honestly() -> None:
    result = await probe_uri("stuns:127.0.0.1")
    assert result.error == "stuns: (STUN over TLS) cannot be probed here; use turns: or stun:"


async def test_probe_servers_keeps_order(stun_server: int) -> None:
    silent_port = free_port(socket.SOCK_DGRAM)
    servers = [
        IceServer((f"stun:127.0.0.1:{stun_server}",)),
        IceServer((f"stun:127.0.0.1:{silent_port}", f"stun:127.0.0.1:{stun_server}")),
    ]
    results = await probe_servers(servers, time_limit=1.0)
    assert [r.uri for r in results] == [
        f"stun:127.0.0.1:{stun_server}",
        f"stun:127.0.0.1:{silent_port}",
        f"stun:127.0.0.1:{stun_server}",
    ]
    assert [r.ok for r in results] == [True, False, True]


def test_candidate_text_brackets_ipv6() -> None:
    assert str(ProbeCandidate("relay", "::1", 5000)) == "relay [::1]:5000"
