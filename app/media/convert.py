"""Conversions between av.AudioFrame and the numpy blocks our devices and files use.

Everything PeerCall plays or stores is 48 kHz mono s16 (see :mod:`app.media.base`); remote
Opus frames arrive as stereo and files come at any rate, so sinks pass frames through a
:class:`MonoConverter` first.
"""

from __future__ import annotations

import fractions

import av
import numpy as np
import numpy.typing as npt

from app.media.base import AUDIO_RATE

AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)

Samples = npt.NDArray[np.int16]


def samples_to_frame(samples: Samples, pts: int) -> av.AudioFrame:
    """A 48 kHz mono s16 AudioFrame carrying ``samples`` (1-D int16), with ``pts`` in samples."""
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = AUDIO_RATE
    frame.pts = pts
    frame.time_base = AUDIO_TIME_BASE
    return frame


class MonoConverter:
    """Turns AudioFrames of any format, layout and rate into 1-D int16 arrays at 48 kHz mono.

    Frames already in that format are copied straight out (the common fast path); others go
    through an ``av.AudioResampler``, rebuilt if the input format changes mid-stream.
    """

    def __init__(self, rate: int = AUDIO_RATE) -> None:
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None

    def convert(self, frame: av.AudioFrame) -> Samples:
        key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        if key == ("s16", "mono", self.rate):
            return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
        if key != self._input_key:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            self._input_key = key
        assert self._resampler is not None
        return self._join(self._resampler.resample(frame))

    def flush(self) -> Samples:
        """Whatever the resampler still holds (call once at the end of a stream)."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.int16)
        out = self._join(self._resampler.resample(None))
        self._resampler = None
        self._input_key = None
        return out

    @staticmethod
    def _join(frames: list[av.AudioFrame]) -> Samples:
        if not frames:
            return np.zeros(0, dtype=np.int16)
        parts = [np.asarray(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in frames]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
