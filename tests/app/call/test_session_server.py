"""Calls between two sessions through a real `peercall signal` process that restarts mid-call."""

from __future__ import annotations

import asyncio

import pytest

from app.call.session import CallOptions, CallSession
from app.events import CallState, StateChanged
from app.media.synthetic import ToneTrack
from signaling.client import WebSocketChannel
from tests.app.call.test_session import Outage, Recorder, state_of
from tests.app.tones import ToneProbe
from tests.signaling.conftest import ServerProcess

LOOPBACK = CallOptions(loopback_candidates=True)
pytestmark = pytest.mark.slow


async def test_server_restart_mid_call_and_a_restart_that_waits_for_it() -> None:
    """The server dies and comes back; meanwhile the media path breaks, so the ICE restart's
    offer waits in the client until it has re-joined, then goes through: media again."""
    server = ServerProcess()
    url = await server.start()
    a_ch = WebSocketChannel(url, "restart", "pw", backoff_max=0.5)
    b_ch = WebSocketChannel(url, "restart", "pw", backoff_max=0.5)
    probe_a, probe_b = ToneProbe(), ToneProbe()
    caller = CallSession(LOOPBACK, audio_source=ToneTrack(700.0), audio_sink=probe_a)
    callee = CallSession(LOOPBACK, audio_source=ToneTrack(1100.0), audio_sink=probe_b)
    rec_a = Recorder(caller)
    replacement = ServerProcess()
    try:
        await a_ch.connect()
        await b_ch.connect()

        async def answer() -> None:
            await callee.answer(b_ch, await callee.wait_for_offer(b_ch))

        await asyncio.wait_for(asyncio.gather(caller.dial(a_ch), answer()), 30)
        assert await probe_b.wait_for(700.0)
        sas = caller.sas
        await server.kill()
        Outage(caller)  # the old path is gone for good: only a restart can bring media back
        for _ in range(500):
            if state_of(caller) is CallState.RECONNECTING:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(2.0)  # the restart offer is made while the server is down
        assert not a_ch.connected
        await replacement.start(port=server.port)
        probe_a.clear()
        probe_b.clear()
        assert await probe_b.wait_for(700.0, attempts=1000)
        assert await probe_a.wait_for(1100.0, attempts=500)
        for _ in range(500):
            if state_of(caller) is CallState.CONNECTED and state_of(callee) is CallState.CONNECTED:
                break
            await asyncio.sleep(0.02)
        assert state_of(caller) is CallState.CONNECTED
        assert state_of(callee) is CallState.CONNECTED
        assert caller.sas == sas
        assert a_ch.reconnects >= 1
        assert not [e for e in rec_a.of(StateChanged) if e.new is CallState.FAILED]
    finally:
        await caller.hangup()
        await callee.hangup()
        await a_ch.close()
        await b_ch.close()
        if replacement.proc is not None:
            await replacement.kill()
