"""The interfaces between media devices and the call engine."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aiortc.mediastreams import MediaStreamTrack

AUDIO_RATE = 48_000
AUDIO_CHANNELS = 1
AUDIO_FRAME_SAMPLES = 960  # 20 ms at 48 kHz: Opus' natural frame size in WebRTC


@runtime_checkable
class MediaSink(Protocol):
    """Something that plays or stores a remote track (speaker, WAV file, video widget, null).

    ``start`` begins consuming ``track`` in the background and returns at once; ``stop`` ends
    consumption, releases the device and is idempotent.
    """

    async def start(self, track: MediaStreamTrack) -> None: ...

    async def stop(self) -> None: ...
