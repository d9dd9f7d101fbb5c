"""LAN discovery with real mDNS on the loopback interface (multicast stays on this host)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from signaling.client import WebSocketChannel
from signaling.errors import PeerRejected, SignalingError
from signaling.lan import (
    SERVICE_TYPE,
    LanAdvertiser,
    LanBrowser,
    LanEvent,
    LanHost,
    channel_to,
)
from signaling.messages import Answer, Offer
from tests.signaling.conftest import ServerProcess

LO = ["127.0.0.1"]
SDP = "v=0\r\n"

pytestmark = pytest.mark.slow  # mDNS probing and announcing take a second or two


def unique(prefix: str) -> str:
    """Other engineers' tests may browse the same loopback: never reuse a name."""
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture
async def browser() -> AsyncIterator[LanBrowser]:
    async with LanBrowser(interfaces=LO) as b:
        yield b


async def test_advertised_service_is_found_then_removed(browser: LanBrowser) -> None:
    events: list[LanEvent] = []
    browser.on_change = events.append
    name = unique("Alice's PC")
    async with LanAdvertiser(name, 4321, "room-1", secret="open-sesame", interfaces=LO) as adv:
        assert adv.instance == f"{name}.{SERVICE_TYPE}"
        async with asyncio.timeout(20):
            found = await browser.wait_for(name=name)
        assert found.room == "room-1"
        assert found.url == "ws://127.0.0.1:4321"
        assert found.port == 4321
        assert found.version == "1"
        assert found.secret == "open-sesame"
        assert found.open
    async with asyncio.timeout(20):  # the goodbye (TTL 0) removes it without waiting for expiry
        async for event in browser.events():
            if event.kind == "removed" and event.service.name == name:
                break
    assert found.instance not in browser.services
    kinds = [(e.kind, e.service.name) for e in events if e.service.name == name]
    assert kinds == [("found", name), ("removed", name)]


async def test_pin_rooms_publish_no_secret(browser: LanBrowser) -> None:
    name = unique("Bob")
    async with LanAdvertiser(name, 4322, "pin-room", interfaces=LO):
        async with asyncio.timeout(20):
            found = await browser.wait_for(name=name)
    assert found.secret is None
    with pytest.raises(SignalingError, match="asks for a PIN"):
        channel_to(found)


def test_bad_room_is_refused() -> None:
    with pytest.raises(SignalingError, match="room 'a b' must be"):
        LanAdvertiser("x", 1, "a b")


async def test_call_setup_over_the_lan_backend(browser: LanBrowser) -> None:
    """Host = embedded server + advertiser; caller = browser + WebSocketChannel."""
    name = unique("Carol")
    async with LanHost(name, host="127.0.0.1", interfaces=LO) as host:
        callee = host.channel()
        await callee.connect()
        async with asyncio.timeout(20):
            service = await browser.wait_for(name=name)
        caller = channel_to(service, name="dave")
        await caller.connect()
        await caller.send(Offer(SDP))
        async with asyncio.timeout(10):
            assert await callee.receive() == Offer(SDP)
            await callee.send(Answer(SDP))
            assert await caller.receive() == Answer(SDP)
        # The room is full now: a third machine on the LAN is turned away.
        with pytest.raises(PeerRejected, match=r"^room is full$"):
            await channel_to(service).connect()
        await caller.close()
        await callee.close()


async def test_pin_host_needs_the_pin(browser: LanBrowser) -> None:
    name = unique("Erin")
    async with LanHost(name, secret="4711", host="127.0.0.1", interfaces=LO) as host:
        callee = host.channel()
        await callee.connect()
        async with asyncio.timeout(20):
            service = await browser.wait_for(name=name)
        with pytest.raises(PeerRejected, match=r"^wrong room secret$"):
            await channel_to(service, secret="1234").connect()
        caller = channel_to(service, secret="4711")
        await caller.connect()
        await caller.close()
        await callee.close()


async def test_standalone_server_advertises_a_reserved_room(browser: LanBrowser) -> None:
    name = unique("Frank")
    proc = ServerProcess("--advertise", "--name", name, "--room", "hall")
    await proc.start()
    try:
        assert any(line.startswith(f"advertising {name}.") for line in proc.lines)
        async with asyncio.timeout(20):
            service = await browser.wait_for(name=name)
        assert service.url == proc.url
        assert service.room == "hall"
        # The room's secret is fixed by the server: a stranger's secret cannot claim it.
        with pytest.raises(PeerRejected, match=r"^wrong room secret$"):
            await WebSocketChannel(service.url, service.room, "mine").connect()
        a, b = channel_to(service), channel_to(service)
        await a.connect()
        await b.connect()
        await a.send(Offer(SDP))
        async with asyncio.timeout(10):
            assert await b.receive() == Offer(SDP)
        await a.close()
        await b.close()
        code, _ = await proc.terminate()
        assert code == 0
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill()


async def test_a_tls_server_is_advertised_as_wss(browser: LanBrowser) -> None:
    name = unique("Secure")
    async with LanAdvertiser(name, 4323, "tls-room", secret="s", interfaces=LO, tls=True):
        async with asyncio.timeout(20):
            found = await browser.wait_for(name=name)
    assert found.url == "wss://127.0.0.1:4323"
