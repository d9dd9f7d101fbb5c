"""Tone detection on sample blocks, in numpy: how tests and benchmarks hear a tone or a burst.

Both functions evaluate the DFT at one frequency (what the Goertzel filter computes) as a
vectorised dot product, so a second of 48 kHz audio costs microseconds, not a Python loop.
Powers are in full-scale units: int16 samples are scaled by 1/32768, so a sine of amplitude
``A`` (0..1) has power ``A**2 / 2`` (a full-scale sine: 0.5, i.e. -3 dBFS).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.media.base import AUDIO_RATE

# A -40 dBFS tone (amplitude 0.01) gives 5e-5; silence and aiortc's comfort noise are far below.
DEFAULT_THRESHOLD = 5e-5


def as_float(samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Mono samples as float64 in [-1, 1]; int16 input is scaled by 1/32768.

    A 2-D array is (frames, channels) as sounddevice gives it, or (channels, frames) as PyAV's
    planar ``to_ndarray`` gives it (whichever axis is shorter is the channels); channels are
    averaged. Packed multi-channel PyAV arrays must be remixed to mono first.
    """
    arr = np.asarray(samples)
    if arr.ndim == 2:
        axis = 1 if arr.shape[0] > arr.shape[1] else 0
        arr = (
            arr.mean(axis=axis)
            if np.issubdtype(arr.dtype, np.floating)
            else (arr.astype(np.float64).mean(axis=axis) / 32768.0)
        )
        return np.asarray(arr, dtype=np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / 32768.0
    return arr.astype(np.float64)


def tone_power(samples: npt.ArrayLike, freq: float, rate: int = AUDIO_RATE) -> float:
    """Power of the ``freq`` Hz component of ``samples`` (a sine of amplitude A gives A²/2)."""
    x = as_float(samples)
    n = len(x)
    if n == 0:
        return 0.0
    phase = np.exp(-2j * np.pi * freq / rate * np.arange(n))
    coeff = np.dot(x, phase)
    return float(2.0 * abs(coeff) ** 2 / n**2)


def tone_envelope(
    samples: npt.ArrayLike,
    freq: float,
    rate: int = AUDIO_RATE,
    window: int | None = None,
) -> npt.NDArray[np.float64]:
    """Tone power in every ``window``-sample window: element ``i`` covers ``[i, i + window)``.

    The default window is two periods of ``freq`` (2 ms at 1 kHz): short enough to time an
    onset to a millisecond, long enough to reject broadband noise.
    """
    x = as_float(samples)
    w = window or max(1, round(2 * rate / freq))
    if len(x) < w:
        return np.zeros(0)
    rotated = x * np.exp(-2j * np.pi * freq / rate * np.arange(len(x)))
    cumulative = np.concatenate(([0j], np.cumsum(rotated)))
    sums = cumulative[w:] - cumulative[:-w]
    envelope: npt.NDArray[np.float64] = 2.0 * np.abs(sums) ** 2 / w**2
    return envelope


def detect_tone_onset(
    samples: npt.ArrayLike,
    freq: float,
    rate: int = AUDIO_RATE,
    threshold: float = DEFAULT_THRESHOLD,
    window: int | None = None,
) -> int | None:
    """Index of the first sample where a ``freq`` Hz tone is present, or ``None``.

    Reports the end of the first window whose tone power reaches ``threshold``: for a threshold
    well below the tone's power that is within a fraction of a window after the true onset.
    """
    x = as_float(samples)
    w = window or max(1, round(2 * rate / freq))
    envelope = tone_envelope(x, freq, rate, w)
    hits = np.flatnonzero(envelope >= threshold)
    if hits.size == 0:
        return None
    return int(hits[0]) + w


class BlockRecorder:
    """Collects ``(samples, t)`` blocks from an ``on_block`` hook and times tone bursts in them.

    Pass an instance as ``on_block`` to a microphone, speaker or synthetic source; afterwards
    :meth:`onset_times` gives, for each burst, ``t`` of the block it starts in plus its offset
    inside the block. Using the same convention at capture and at playout, the difference of two
    recorders' onsets is the latency between the two callbacks, measured on the audio itself.
    """

    def __init__(self, rate: int = AUDIO_RATE) -> None:
        self.rate = rate
        self.blocks: list[npt.NDArray[np.int16]] = []
        self.times: list[float] = []

    def __call__(self, samples: npt.NDArray[np.int16], at: float) -> None:
        self.blocks.append(samples)
        self.times.append(at)

    def clear(self) -> None:
        self.blocks.clear()
        self.times.clear()

    def onset_times(
        self,
        freq: float,
        threshold: float = DEFAULT_THRESHOLD,
        min_gap: float = 0.1,
        window: int | None = None,
    ) -> list[float]:
        """The time of every burst onset; tone gaps shorter than ``min_gap`` s join bursts."""
        if not self.blocks:
            return []
        x = np.concatenate(self.blocks)
        w = window or max(1, round(2 * self.rate / freq))
        hits = np.flatnonzero(tone_envelope(x, freq, self.rate, w) >= threshold)
        if hits.size == 0:
            return []
        gap = max(1, round(min_gap * self.rate))
        starts = hits[np.concatenate(([True], np.diff(hits) > gap))] + w
        block_starts = np.cumsum([0] + [len(b) for b in self.blocks])
        result = []
        for index in starts:
            b = int(np.searchsorted(block_starts, index, side="right")) - 1
            b = min(b, len(self.blocks) - 1)
            result.append(self.times[b] + (int(index) - int(block_starts[b])) / self.rate)
        return result
