"""app.audio_processing: WebRTC noise suppression / auto gain around a 48 <-> 16 kHz resampler."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from app.audio_processing import CHUNK, AudioProcessing, from_settings
from app.errors import MediaError
from app.media.analysis import tone_power
from app.media.base import AUDIO_FRAME_SAMPLES, AUDIO_RATE
from app.settings import Settings


def noisy_tone(
    seconds: float, tone_from: float, seed: int = 3, noise_rms: float = 1500.0
) -> npt.NDArray[np.int16]:
    """White noise all along; from ``tone_from`` seconds on, 300 ms bursts of a 440 Hz tone
    (amplitude 6000) every 600 ms, like syllables: a suppressor learns the noise in the gaps."""
    rng = np.random.default_rng(seed)
    n = int(seconds * AUDIO_RATE)
    t = np.arange(n) / AUDIO_RATE
    on = (t >= tone_from) & ((t - tone_from) % 0.6 < 0.3)
    tone = np.where(on, 6000 * np.sin(2 * np.pi * 440 * t), 0.0)
    return np.clip(rng.normal(0, noise_rms, n) + tone, -32768, 32767).astype(np.int16)


def process_all(processing: AudioProcessing, x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    return np.concatenate(
        [processing(x[i : i + AUDIO_FRAME_SAMPLES]) for i in range(0, len(x), AUDIO_FRAME_SAMPLES)]
    )


def rms(x: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_off_is_a_bit_exact_passthrough() -> None:
    processing = AudioProcessing(0, 0)
    block = noisy_tone(0.02, 0.0)
    assert not processing.enabled
    assert processing(block) is block
    assert processing.delay_samples == 0


@pytest.mark.parametrize(("ns", "agc"), [(2, 0), (0, 5), (4, 31)])
def test_shape_dtype_and_length_are_kept(ns: int, agc: int) -> None:
    processing = AudioProcessing(ns, agc)
    for n in (AUDIO_FRAME_SAMPLES, CHUNK, 3 * CHUNK):
        out = processing(noisy_tone(n / AUDIO_RATE, 0.0))
        assert out.shape == (n,)
        assert out.dtype == np.int16


def test_suppresses_stationary_noise_and_keeps_the_tone() -> None:
    x = noisy_tone(4.0, tone_from=1.5)
    out = process_all(AudioProcessing(noise_suppression=3), x)
    noise_only = slice(AUDIO_RATE, AUDIO_RATE * 3 // 2)  # after a second of adaptation
    # Level 3 removes most of the white noise (the bench measures about -23 dB): demand -12 dB.
    assert rms(out[noise_only]) < rms(x[noise_only]) / 4
    with_tone = slice(int(2.1 * AUDIO_RATE), int(3.9 * AUDIO_RATE))  # three whole bursts
    # The tone bursts keep most of their power (measured: 93-99 %) while the noise goes.
    assert tone_power(out[with_tone], 440) > 0.7 * tone_power(x[with_tone], 440)


def test_clean_bursts_pass_through_the_resampler_and_suppressor() -> None:
    x = noisy_tone(2.0, tone_from=0.0, noise_rms=0.0)
    processing = AudioProcessing(noise_suppression=1)
    out = process_all(processing, x)
    last = slice(int(0.8 * AUDIO_RATE), int(1.9 * AUDIO_RATE))
    ratio = tone_power(out[last], 440) / tone_power(x[last], 440)
    assert 0.5 < ratio < 1.5
    assert processing.chunks == 200  # 2 s in 10 ms chunks at 16 kHz


def test_auto_gain_raises_a_quiet_tone() -> None:
    t = np.arange(2 * AUDIO_RATE) / AUDIO_RATE
    x = (300 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)  # about -40 dBFS
    out = process_all(AudioProcessing(auto_gain=3), x)
    last = slice(AUDIO_RATE, 2 * AUDIO_RATE)
    assert tone_power(out[last], 500) > 2 * tone_power(x[last], 500)


def test_blocks_must_be_whole_10ms() -> None:
    with pytest.raises(MediaError, match="480 samples"):
        AudioProcessing(2)(np.zeros(500, dtype=np.int16))


@pytest.mark.parametrize(
    ("ns", "agc", "message"),
    [(5, 0, "noise suppression level must be 0-4, got 5"), (0, 32, "0-31 dBFS, got 32")],
)
def test_bad_levels_are_one_line_errors(ns: int, agc: int, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        AudioProcessing(ns, agc)


def test_from_settings(tmp_path) -> None:
    settings = Settings(tmp_path / "s.json")
    assert from_settings(settings) is None
    settings.update({"audio.noise_suppression": 2, "audio.auto_gain": 6})
    processing = from_settings(settings)
    assert processing is not None
    assert (processing.noise_suppression, processing.auto_gain) == (2, 6)
