"""The shared half of every sink: a background task that pulls frames from a remote track.

A subclass implements :meth:`TrackConsumer.handle` (and optionally ``_open``/``_close`` for a
device or file); this class gives it the :class:`~app.media.base.MediaSink` behaviour: ``start``
returns at once, ``stop`` is idempotent, and the end of the track ends consumption quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet

logger = logging.getLogger(__name__)


class TrackConsumer:
    """Base of the sinks: consumes one track at a time in a task and counts frames."""

    def __init__(self) -> None:
        self.frames = 0
        self.track: MediaStreamTrack | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self._stopped = False
        self._opened = False

    async def start(self, track: MediaStreamTrack) -> None:
        """Begin consuming ``track`` in the background (opening the device/file first)."""
        if self._task is not None:
            raise RuntimeError(f"{type(self).__name__} is already consuming a track")
        self.track = track
        self._stopped = False
        self._ended.clear()
        await self._open()
        self._opened = True
        self._task = asyncio.create_task(self._run(track), name=f"{type(self).__name__}.consume")

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    logger.debug("%s: track ended", type(self).__name__)
                    break
                self.frames += 1
                self.handle(frame)
                # A source that never suspends (realtime=False, a file) must not starve the loop.
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: consuming the track failed", type(self).__name__)
        finally:
            self._ended.set()

    def handle(self, frame: Frame | Packet[Any]) -> None:
        """Use one frame (runs on the event loop: keep it quick)."""
        raise NotImplementedError

    async def wait_ended(self) -> None:
        """Return once the track has ended (or consumption failed or was stopped)."""
        await self._ended.wait()

    async def stop(self) -> None:
        """Stop consuming and release the device or file; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ended.set()
        if self._opened:
            self._opened = False
            await self._close()

    async def _open(self) -> None:
        """Acquire the device or file before consumption begins (default: nothing)."""

    async def _close(self) -> None:
        """Release what ``_open`` acquired (default: nothing)."""
