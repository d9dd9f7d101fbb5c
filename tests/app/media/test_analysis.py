"""Tone measurement: the ears of the audio tests and the latency benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from app.media.analysis import (
    BlockRecorder,
    as_float,
    detect_tone_onset,
    tone_envelope,
    tone_power,
)

RATE = 48_000


def sine(freq: float, amplitude: float, n: int, rate: int = RATE) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)


@pytest.mark.parametrize("amplitude", [1.0, 0.5, 0.01])
def test_tone_power_of_a_sine_is_half_its_squared_amplitude(amplitude: float) -> None:
    x = sine(1000, amplitude, RATE // 10)
    assert tone_power(x, 1000) == pytest.approx(amplitude**2 / 2, rel=1e-3)


def test_tone_power_rejects_other_frequencies() -> None:
    x = sine(1000, 0.5, RATE // 10)
    assert tone_power(x, 1500) < 1e-9
    assert tone_power(np.zeros(960), 1000) == 0.0
    assert tone_power(np.zeros(0), 1000) == 0.0


def test_int16_samples_are_scaled_to_full_scale() -> None:
    x = (sine(440, 0.5, 4800) * 32767).astype(np.int16)
    assert tone_power(x, 440) == pytest.approx(0.125, rel=1e-3)


def test_two_dimensional_blocks_are_mixed_to_mono() -> None:
    mono = (sine(1000, 0.5, 960) * 32767).astype(np.int16)
    frames_by_channels = np.stack([mono, mono], axis=1)  # sounddevice's (frames, channels)
    channels_by_frames = frames_by_channels.T  # PyAV planar (channels, frames)
    np.testing.assert_allclose(as_float(frames_by_channels), as_float(mono))
    np.testing.assert_allclose(as_float(channels_by_frames), as_float(mono))


@pytest.mark.parametrize("onset", [0, 1, 12_345, 47_000])
def test_onset_is_found_within_one_window(onset: int) -> None:
    x = np.zeros(RATE)
    x[onset:] = sine(1000, 0.5, RATE - onset)
    found = detect_tone_onset(x, 1000)
    window = 96  # default: two periods of 1 kHz
    assert found is not None
    assert onset <= found <= onset + window


def test_no_onset_in_silence_or_in_another_tone() -> None:
    assert detect_tone_onset(np.zeros(RATE), 1000) is None
    assert detect_tone_onset(sine(3000, 0.5, RATE), 1000) is None
    assert detect_tone_onset(np.zeros(10), 1000) is None  # shorter than a window


def test_threshold_separates_tone_from_noise() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.01, RATE)  # -40 dBFS white noise
    x = noise.copy()
    x[30_000:] += sine(1000, 0.3, RATE - 30_000)
    assert detect_tone_onset(noise, 1000, threshold=0.005) is None
    found = detect_tone_onset(x, 1000, threshold=0.005)
    assert found is not None
    assert 30_000 <= found <= 30_000 + 96


def test_envelope_has_one_value_per_window_position() -> None:
    env = tone_envelope(np.zeros(1000), 1000, window=100)
    assert env.shape == (901,)


def test_block_recorder_times_each_burst_by_block_time_plus_offset() -> None:
    rec = BlockRecorder()
    bursts = {3: 100, 20: 0}  # block index -> offset of a burst starting in it
    for b in range(40):
        block = np.zeros(960)
        for start_block, offset in bursts.items():
            first = start_block * 960 + offset
            lo, hi = max(first, b * 960), min(first + 2400, (b + 1) * 960)  # 50 ms bursts
            if lo < hi:
                block[lo - b * 960 : hi - b * 960] = sine(1000, 0.5, hi - lo)
        rec((block * 32767).astype(np.int16), 10.0 + b * 0.02)
    onsets = rec.onset_times(1000)
    assert len(onsets) == 2
    assert onsets[0] == pytest.approx(10.0 + 3 * 0.02 + 100 / RATE, abs=96 / RATE)
    assert onsets[1] == pytest.approx(10.0 + 20 * 0.02, abs=96 / RATE)
    rec.clear()
    assert rec.onset_times(1000) == []
