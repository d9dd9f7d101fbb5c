"""The incoming-call ring: a 425 Hz tone, 1 s on / 3 s off, on the configured speaker.

425 Hz is the European ringing-tone frequency (CEPT/ETSI harmonised tones, 1 s on / 4 s
off); we pause 3 s so a ring is noticed sooner. The pattern is a pure function
(:func:`ring_samples`); :class:`Ringer` plays it through :class:`app.media.audio.SpeakerSink`
from the start of the ring until :meth:`Ringer.stop` (accept, decline, the caller gave up). No
Qt here: the window decides when to ring and shows the tray notification itself.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# app.media.base.AUDIO_RATE (Opus' 48 kHz); importing that module loads aiortc, which the
# window must not pay for at start-up (tests/ui/test_ring.py checks the two agree).
AUDIO_RATE = 48_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RingPattern:
    """A tone switched on and off: ``on`` seconds of ``freq`` Hz, then ``off`` seconds silent."""

    freq: float = 425.0
    on: float = 1.0
    off: float = 3.0
    amplitude: float = 0.3  # about -10 dBFS: audible, not startling
    ramp: float = 0.005  # 5 ms fades so the bursts do not click

    @property
    def period(self) -> float:
        return self.on + self.off


def ring_samples(
    pattern: RingPattern, start: int, n: int, rate: int = AUDIO_RATE
) -> npt.NDArray[np.int16]:
    """Samples ``[start, start + n)`` of the endless ring signal as int16."""
    import numpy as np

    index = np.arange(start, start + n)
    t = index / rate
    phase = np.mod(t, pattern.period)
    tone = np.sin(2 * np.pi * pattern.freq * t)
    ramp = max(pattern.ramp, 1.0 / rate)
    gain = np.clip(np.minimum(phase, pattern.on - phase) / ramp, 0.0, 1.0)
    gain[phase >= pattern.on] = 0.0
    out = np.round(pattern.amplitude * 32767 * gain * tone)
    return out.astype(np.int16)


def _ring_track(pattern: RingPattern) -> Any:
    """An aiortc audio track playing the ring, paced in real time (imports aiortc lazily)."""
    from app.media.synthetic import PacedAudioTrack

    class RingTrack(PacedAudioTrack):
        def __init__(self) -> None:
            super().__init__()
            self.position = 0

        def next_block(self, n: int) -> Any:
            block = ring_samples(pattern, self.position, n)
            self.position += n
            return block

    return RingTrack()


class Ringer:
    """Plays the ring on an output device between :meth:`start` and :meth:`stop`.

    ``enabled=False`` (no sound card wanted, e.g. ``--synthetic-media``) keeps it silent. A
    device that cannot be opened is logged, not raised: the visible ring (the accept/decline
    bar and the tray message) still works, and a missing speaker must not lose the call.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        pattern: RingPattern | None = None,
        enabled: bool = True,
    ) -> None:
        self.device = device
        self.pattern = pattern or RingPattern()
        self.enabled = enabled
        self.last_error: str | None = None
        self._sink: Any = None
        self._track: Any = None
        self._lock = asyncio.Lock()
        self._wanted = False

    def is_ringing(self) -> bool:
        """True while the ring tone is being played."""
        return self._sink is not None

    async def start(self) -> None:
        """Start ringing (idempotent). Returns once the speaker plays, or failed to open."""
        self._wanted = True
        if not self.enabled:
            return
        async with self._lock:
            if self._sink is not None or not self._wanted:
                return
            try:
                from app.media.audio import SpeakerSink

                sink = SpeakerSink(self.device)
                track = _ring_track(self.pattern)
                await sink.start(track)
            except Exception as exc:  # no sound card, a bad device: ring silently
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                logger.info("cannot play the ring tone: %s", self.last_error)
                return
            self._sink, self._track = sink, track
            logger.info("ringing on %s", sink.device_name)
        if not self.wanted():  # stop() came while the device was opening
            await self.stop()

    def wanted(self) -> bool:
        """Whether a ring is asked for (start() called, stop() not since)."""
        return self._wanted

    async def stop(self) -> None:
        """Stop ringing (idempotent)."""
        self._wanted = False
        async with self._lock:
            sink, track, self._sink, self._track = self._sink, self._track, None, None
            if track is not None:
                track.stop()
            if sink is not None:
                await sink.stop()
