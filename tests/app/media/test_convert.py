"""Frame <-> sample conversions used by every sink."""

from __future__ import annotations

import av
import numpy as np
import pytest

from app.media.analysis import tone_power
from app.media.convert import MonoConverter, samples_to_frame


def test_samples_to_frame_and_back_is_exact() -> None:
    x = np.arange(-480, 480, dtype=np.int16)
    frame = samples_to_frame(x, pts=1920)
    assert (frame.format.name, frame.layout.name, frame.sample_rate) == ("s16", "mono", 48_000)
    assert frame.pts == 1920
    np.testing.assert_array_equal(MonoConverter().convert(frame), x)


def stereo_frames(rate: int, freq: float, count: int, per_frame: int) -> list[av.AudioFrame]:
    frames = []
    for i in range(count):
        n = np.arange(i * per_frame, (i + 1) * per_frame)
        mono = (0.5 * 32767 * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)
        packed = np.stack([mono, mono], axis=1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
        frame.sample_rate = rate
        frame.pts = i * per_frame
        frames.append(frame)
    return frames


@pytest.mark.parametrize("rate", [48_000, 44_100, 16_000])
def test_stereo_at_any_rate_becomes_48k_mono(rate: int) -> None:
    conv = MonoConverter()
    per_frame = rate // 50
    parts = [conv.convert(f) for f in stereo_frames(rate, 1000, 25, per_frame)]
    parts.append(conv.flush())
    x = np.concatenate(parts)
    assert x.dtype == np.int16
    assert abs(len(x) - 24_000) <= 64  # 0.5 s at 48 kHz, give or take the filter delay
    assert tone_power(x[2000:22_000], 1000) == pytest.approx(0.125, rel=0.05)


def test_a_format_change_mid_stream_gets_a_new_resampler() -> None:
    conv = MonoConverter()
    for f in stereo_frames(44_100, 1000, 10, 882):
        conv.convert(f)
    # PyAV's resampler refuses frames whose format differs from its first: we must rebuild it.
    x = np.concatenate([conv.convert(f) for f in stereo_frames(32_000, 2000, 25, 640)])
    assert abs(len(x) - 24_000) <= 64
    assert tone_power(x[2000:20_000], 2000) == pytest.approx(0.125, rel=0.05)
