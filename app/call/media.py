"""Media plumbing of a call that may run on more than one peer connection at a time.

During an ICE restart the old connection keeps carrying media while a new one is set up (as
browsers keep the old ICE session), so one microphone feeds two senders and the speaker must
switch between two receivers without noticing:

- :class:`SourceTee` reads a source once and hands every frame to each of its gates;
- :class:`GatedTrack` is one connection's view of a tee, with mute (silence/black frames);
  aiortc stops a sender's track when its connection closes, which ends only that gate;
- :class:`RemoteFeed` is the remote track as the sinks see it, switched to whichever
  connection carries the call.
"""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

#: Frames a gate may fall behind the source before it skips ahead (latency over backlog).
BACKLOG = 8


class SourceTee:
    """Reads ``source`` in one task and offers each frame to every gate."""

    def __init__(self, source: MediaStreamTrack) -> None:
        self.source = source
        self.kind = source.kind
        self._frames: list[Any] = []  # the last BACKLOG frames
        self._seq = 0  # sequence number of the newest frame
        self._new = asyncio.Condition()
        # Frames are pulled from the source only on demand (a gate waiting for a newer one),
        # so a source that never suspends (a file, realtime=False) cannot run away.
        self._wanted = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._ended = False

    def gate(self, *, enabled: bool = True) -> GatedTrack:
        return GatedTrack(self, enabled=enabled)

    async def next(self, after: int) -> tuple[int, Any]:
        """The first frame newer than ``after`` (or the oldest kept), with its number."""
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._run())
        async with self._new:
            if self._seq <= after:
                self._wanted.set()
            await self._new.wait_for(lambda: self._seq > after or self._ended)
            if self._seq <= after:
                raise MediaStreamError
            oldest = self._seq - len(self._frames) + 1
            seq = max(after + 1, oldest)
            return seq, self._frames[seq - oldest]

    async def _run(self) -> None:
        try:
            while True:
                await self._wanted.wait()
                self._wanted.clear()
                frame = await self.source.recv()
                async with self._new:
                    self._frames.append(frame)
                    del self._frames[:-BACKLOG]
                    self._seq += 1
                    self._new.notify_all()
        except MediaStreamError:
            pass
        finally:
            self._ended = True
            async with self._new:
                self._new.notify_all()

    async def stop(self) -> None:
        """Stop the source (the end of the call) and the reader."""
        self.source.stop()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        self._ended = True


class GatedTrack(MediaStreamTrack):
    """One connection's copy of a source, replacing frames by silence/black while gated."""

    def __init__(self, tee: SourceTee, *, enabled: bool = True) -> None:
        super().__init__()
        self.kind = tee.kind
        self.tee = tee
        self.enabled = enabled
        self._seq = -1

    async def recv(self) -> av.AudioFrame | av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._seq < 0:  # start with the newest frame, not the backlog
            self._seq = max(self.tee._seq - 1, 0)
        self._seq, frame = await self.tee.next(self._seq)
        assert isinstance(frame, av.AudioFrame | av.VideoFrame)
        if self.enabled:
            return frame
        return blank_like(frame)


def blank_like(frame: av.AudioFrame | av.VideoFrame) -> av.AudioFrame | av.VideoFrame:
    """Silence or a black picture with ``frame``'s shape and timing."""
    if isinstance(frame, av.AudioFrame):
        import numpy as np  # only once someone mutes: numpy costs ~70 ms at start-up

        silent = av.AudioFrame.from_ndarray(
            np.zeros((1, frame.samples * len(frame.layout.channels)), dtype=np.int16),
            format="s16",
            layout=frame.layout.name,
        )
        silent.sample_rate = frame.sample_rate
        out: av.AudioFrame | av.VideoFrame = silent
    else:
        out = av.VideoFrame(width=frame.width, height=frame.height, format="yuv420p")
        for plane, value in zip(out.planes, (16, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
    out.pts = frame.pts
    out.time_base = frame.time_base or fractions.Fraction(1, 48000)
    return out


class RemoteFeed(MediaStreamTrack):
    """The remote track as the sinks see it, for the whole call across renegotiations.

    A sink starts once on this track; when the call moves to another peer connection, the
    feed switches to that connection's remote track and the sink never notices.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.source: MediaStreamTrack | None = None
        self._changed = asyncio.Event()

    def switch(self, source: MediaStreamTrack) -> None:
        self.source = source
        self._changed.set()

    async def recv(self) -> Any:
        while self.readyState == "live":
            source = self.source
            if source is not None:
                try:
                    return await source.recv()
                except MediaStreamError:
                    if self.source is not source:
                        continue  # switched meanwhile: read the new track
            self._changed.clear()
            if self.source is not source:
                continue
            await self._changed.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._changed.set()
