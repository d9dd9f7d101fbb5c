"""Noise suppression and automatic gain for the microphone, via WebRTC's audio processing.

``webrtc-noise-gain`` wraps the noise suppressor, high-pass filter and AGC of WebRTC's audio
processing module; it takes 10 ms chunks of 16 kHz mono int16. Our microphone delivers 48 kHz
mono int16 blocks (20 ms), so :class:`AudioProcessing` decimates by 3 through a low-pass FIR,
processes the 16 kHz chunks, and interpolates back by 3 through the same filter. Speech sits
well below the 8 kHz band edge, and Opus in WebRTC spends its bits where the energy is, so the
band limit costs nothing audible; removing stationary noise lowers what Opus has to code.

Both off is a bit-exact passthrough (the block is returned untouched) so the setting costs
nothing when unused. No Qt here: the UI builds one from the settings and hands it to
:class:`app.media.audio.MicrophoneTrack` as its ``process`` step.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from app.errors import MediaError

logger = logging.getLogger(__name__)

RATE = 48_000
INNER_RATE = 16_000
FACTOR = RATE // INNER_RATE  # 3
CHUNK = RATE // 100  # 480 samples: 10 ms at 48 kHz
INNER_CHUNK = INNER_RATE // 100  # 160 samples: what webrtc-noise-gain takes
TAPS = 63  # odd: a linear-phase filter with an integer group delay of 31 samples


def _lowpass(
    taps: int = TAPS, cutoff: float = 7_200.0, rate: int = RATE
) -> npt.NDArray[np.float64]:
    """A Kaiser-windowed sinc low-pass at ``cutoff`` Hz (unity DC gain): the anti-alias and
    anti-image filter for the 3:1 rate change (the 16 kHz band ends at 8 kHz)."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff / rate * n) * np.kaiser(taps, 8.0)
    result: npt.NDArray[np.float64] = h / h.sum()
    return result


class _Fir:
    """A streaming FIR filter: keeps the last ``len(h) - 1`` inputs between calls."""

    def __init__(self, h: npt.NDArray[np.float64]) -> None:
        self.h = h
        self.history = np.zeros(len(h) - 1)

    def __call__(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        joined = np.concatenate((self.history, x))
        self.history = joined[len(joined) - (len(self.h) - 1) :]
        out: npt.NDArray[np.float64] = np.convolve(joined, self.h, mode="valid")
        return out


def check_levels(noise_suppression: int, auto_gain: int) -> None:
    """Raise MediaError (one line) unless the levels are what webrtc-noise-gain accepts."""
    if not 0 <= noise_suppression <= 4:
        raise MediaError(f"noise suppression level must be 0-4, got {noise_suppression}")
    if not 0 <= auto_gain <= 31:
        raise MediaError(f"auto gain target must be 0-31 dBFS, got {auto_gain}")


class AudioProcessing:
    """Per-stream noise suppression (0 off..4) and auto gain (0 off, else target dBFS 1..31).

    Call it with 48 kHz mono int16 blocks whose length is a multiple of 480 (10 ms); it returns
    a block of the same length and dtype, delayed by :attr:`delay_samples` (the two filters'
    group delay) when processing is on.
    """

    def __init__(self, noise_suppression: int = 0, auto_gain: int = 0) -> None:
        check_levels(noise_suppression, auto_gain)
        self.noise_suppression = noise_suppression
        self.auto_gain = auto_gain
        self.speech_chunks = 0  # 10 ms chunks WebRTC's voice detector called speech
        self.chunks = 0
        self._processor: Any = None
        if self.enabled:
            try:
                from webrtc_noise_gain import AudioProcessor  # type: ignore[import-untyped]
            except ImportError as exc:
                raise MediaError(
                    f"noise suppression / auto gain need webrtc-noise-gain: {exc}"
                ) from None
            self._processor = AudioProcessor(auto_gain, noise_suppression)
            h = _lowpass()
            self._down = _Fir(h)
            self._up = _Fir(h * FACTOR)  # zero-stuffing divides the level by 3

    @property
    def enabled(self) -> bool:
        return bool(self.noise_suppression or self.auto_gain)

    @property
    def delay_samples(self) -> int:
        """Added latency at 48 kHz: two linear-phase filters of (TAPS-1)/2 samples each."""
        return (TAPS - 1) if self.enabled else 0

    def __call__(self, block: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        if self._processor is None:
            return block
        n = len(block)
        if n % CHUNK:
            raise MediaError(f"audio processing needs blocks of 10 ms (480 samples), got {n}")
        low = self._down(block.astype(np.float64))[::FACTOR]
        low16 = np.clip(np.rint(low), -32768, 32767).astype(np.int16)
        processed = np.empty_like(low16)
        for start in range(0, len(low16), INNER_CHUNK):
            chunk = self._processor.Process10ms(low16[start : start + INNER_CHUNK].tobytes())
            processed[start : start + INNER_CHUNK] = np.frombuffer(chunk.audio, dtype=np.int16)
            self.chunks += 1
            self.speech_chunks += bool(chunk.is_speech)
        stuffed = np.zeros(n)
        stuffed[::FACTOR] = processed
        high = self._up(stuffed)
        out: npt.NDArray[np.int16] = np.clip(np.rint(high), -32768, 32767).astype(np.int16)
        return out


def from_settings(settings: Any) -> AudioProcessing | None:
    """The processing step the settings ask for, or None when both switches are off."""
    processing = AudioProcessing(
        int(settings["audio.noise_suppression"]), int(settings["audio.auto_gain"])
    )
    return processing if processing.enabled else None
