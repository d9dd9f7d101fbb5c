"""Two real CallSessions (aiortc, loopback candidates) call each other through each backend."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from app.events import CallState, ChatReceived
from app.session import CallOptions, CallSession
from signaling.base import SignalingChannel
from signaling.client import WebSocketChannel
from signaling.lan import LanBrowser, LanHost, channel_to
from signaling.server import SignalingServer
from tests.signaling.conftest import wired_manual_pair

pytestmark = pytest.mark.slow


async def call(caller_ch: SignalingChannel, callee_ch: SignalingChannel) -> None:
    opts = CallOptions(loopback_candidates=True)
    caller, callee = CallSession(opts), CallSession(opts)
    got: asyncio.Queue[str] = asyncio.Queue()
    callee.subscribe(lambda e: got.put_nowait(e.text) if isinstance(e, ChatReceived) else None)

    async def callee_side() -> None:
        offer = await callee.wait_for_offer(callee_ch)
        await callee.answer(callee_ch, offer)

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(caller.dial(caller_ch), callee_side())
            assert caller.state is CallState.CONNECTED
            assert callee.state is CallState.CONNECTED
            await caller.send_chat("hello over signaling")
            assert await got.get() == "hello over signaling"
    finally:
        await caller.hangup()
        await callee.hangup()


async def test_call_over_manual_copy_paste() -> None:
    await call(*wired_manual_pair())


async def test_call_over_websocket_server() -> None:
    async with SignalingServer(ping_interval=None) as srv:
        a = WebSocketChannel(srv.url, "call", "pw", name="alice")
        b = WebSocketChannel(srv.url, "call", "pw", name="bob")
        await a.connect()
        await b.connect()
        try:
            await call(a, b)
        finally:
            await a.close()
            await b.close()


async def test_call_over_lan_discovery() -> None:
    name = f"calls-{secrets.token_hex(3)}"
    async with (
        LanHost(name, host="127.0.0.1", interfaces=["127.0.0.1"]) as host,
        LanBrowser(interfaces=["127.0.0.1"]) as browser,
    ):
        callee_ch = host.channel()
        await callee_ch.connect()
        async with asyncio.timeout(20):
            service = await browser.wait_for(name=name)
        caller_ch = channel_to(service, name="caller")
        await caller_ch.connect()
        try:
            await call(caller_ch, callee_ch)
        finally:
            await caller_ch.close()
            await callee_ch.close()
