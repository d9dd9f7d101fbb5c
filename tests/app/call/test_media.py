"""SourceTee / GatedTrack / RemoteFeed without a peer connection."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from app.call.media import RemoteFeed, SourceTee
from app.media.synthetic import ToneTrack


async def test_two_gates_get_every_frame_of_one_source() -> None:
    tee = SourceTee(ToneTrack(realtime=False))
    first, second = tee.gate(), tee.gate()
    a = [(await first.recv()).pts for _ in range(5)]
    b = [(await second.recv()).pts for _ in range(3)]
    assert a == [0, 960, 1920, 2880, 3840]
    assert b[0] == 3840  # a new gate starts at the newest frame, not the backlog
    assert b == [3840, 4800, 5760]
    await tee.stop()


async def test_a_source_that_never_waits_is_pulled_only_on_demand() -> None:
    source = ToneTrack(realtime=False)
    tee = SourceTee(source)
    gate = tee.gate()
    await gate.recv()
    await asyncio.sleep(0.05)  # nobody asks: the pump must not spin ahead
    assert source._pts <= 2 * 960
    await tee.stop()


async def test_stopping_a_gate_leaves_the_source_running() -> None:
    source = ToneTrack(realtime=False)
    tee = SourceTee(source)
    old = tee.gate()
    await old.recv()
    old.stop()  # what aiortc does when the old connection closes
    assert source.readyState == "live"
    new = tee.gate()
    assert isinstance(await new.recv(), av.AudioFrame)
    await tee.stop()
    assert source.readyState == "ended"


async def test_muted_gate_sends_silence_with_the_same_timing() -> None:
    tee = SourceTee(ToneTrack(realtime=False))
    gate = tee.gate(enabled=False)
    frame = await gate.recv()
    assert isinstance(frame, av.AudioFrame)
    assert not frame.to_ndarray().any()
    assert frame.pts == 0
    await tee.stop()


async def test_remote_feed_switches_sources() -> None:
    first, second = ToneTrack(300, realtime=False), ToneTrack(500, realtime=False)
    feed = RemoteFeed("audio")
    feed.switch(first)
    assert (await feed.recv()).pts == 0
    feed.switch(second)
    first.stop()
    assert (await feed.recv()).pts == 0  # from the second source now
    feed.stop()
    with pytest.raises(MediaStreamError):
        await feed.recv()
