"""A sink for tests that keeps the last half second of received audio to ask "is the tone
there right now?" (so a test can tell media after a reconnect from media before it)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import av
import numpy as np

from app.media.analysis import tone_power
from app.media.consumer import TrackConsumer

# A tone of amplitude 0.3 has power 0.045; silence, comfort noise and codec artefacts of
# another tone stay orders of magnitude below this.
HEARD = 0.005


class ToneProbe(TrackConsumer):
    """Keeps the most recent ``keep`` received samples (mono int16)."""

    def __init__(self, keep: int = 24_000) -> None:
        super().__init__()
        self._recent: deque[np.ndarray[Any, Any]] = deque()
        self._keep = keep
        self._count = 0

    def handle(self, frame: Any) -> None:
        assert isinstance(frame, av.AudioFrame)
        samples = frame.to_ndarray().reshape(-1)
        if len(frame.layout.channels) > 1:  # aiortc decodes Opus to interleaved stereo
            samples = samples[:: len(frame.layout.channels)]
        self._recent.append(samples)
        self._count += len(samples)
        while self._count - len(self._recent[0]) >= self._keep:
            self._count -= len(self._recent.popleft())

    def clear(self) -> None:
        self._recent.clear()
        self._count = 0

    def hears(self, freq: float) -> bool:
        if self._count < self._keep // 2:
            return False
        return tone_power(np.concatenate(list(self._recent)), freq) > HEARD

    async def wait_for(self, freq: float, attempts: int = 500) -> bool:
        """Poll (every 20 ms, ``attempts`` times) until the tone is heard."""
        for _ in range(attempts):
            if self.hears(freq):
                return True
            await asyncio.sleep(0.02)
        return False
