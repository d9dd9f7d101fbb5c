"""Synthetic sources and sinks: frame format, pts, pacing, WAV round trips."""

from __future__ import annotations

import asyncio
import fractions
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from app.errors import MediaError
from app.media.analysis import detect_tone_onset, tone_power
from app.media.synthetic import (
    BurstTrack,
    NullSink,
    SilenceTrack,
    ToneTrack,
    WavFileSink,
    WavFileTrack,
)


def samples_of(frame: Any) -> np.ndarray:
    return np.asarray(frame.to_ndarray()).reshape(-1)


def assert_audio_frame(frame, pts: int) -> None:
    assert frame.format.name == "s16"
    assert frame.layout.name == "mono"
    assert frame.sample_rate == 48_000
    assert frame.samples == 960
    assert frame.pts == pts
    assert frame.time_base == fractions.Fraction(1, 48_000)


async def collect(track: Any, n: int) -> list[Any]:
    return [await track.recv() for _ in range(n)]


async def drain(track: Any) -> list[Any]:
    """Every frame until the track ends."""
    frames = []
    while True:
        try:
            frames.append(await track.recv())
        except MediaStreamError:
            return frames


async def test_tone_frames_have_the_call_format_and_continuous_pts() -> None:
    track = ToneTrack(1000, 0.5, realtime=False)
    frames = await collect(track, 10)
    for i, frame in enumerate(frames):
        assert_audio_frame(frame, pts=960 * i)
    x = np.concatenate([samples_of(f) for f in frames])
    assert tone_power(x, 1000) == pytest.approx(0.125, rel=1e-2)
    # Phase-continuous: no discontinuity at frame boundaries (max step of a 1 kHz sine).
    assert np.abs(np.diff(x.astype(np.int32))).max() <= 0.5 * 32767 * 2 * np.pi * 1000 / 48_000 + 2


async def test_silence_is_zeros() -> None:
    frames = await collect(SilenceTrack(realtime=False), 3)
    assert all(not samples_of(f).any() for f in frames)
    assert_audio_frame(frames[2], pts=1920)


async def test_stopped_track_ends() -> None:
    track = ToneTrack(realtime=False)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


@pytest.mark.parametrize(("freq", "amplitude"), [(0, 0.5), (30_000, 0.5), (440, 1.5)])
def test_bad_tone_parameters_are_one_line_errors(freq: float, amplitude: float) -> None:
    with pytest.raises(MediaError) as exc:
        ToneTrack(freq, amplitude)
    assert "\n" not in str(exc.value)


async def test_pacing_follows_the_sample_clock() -> None:
    """Frame k is due k*20 ms after the first: checked on a fake clock, not the wall clock."""
    now = [100.0]
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        now[0] += delay

    track = SilenceTrack()
    track._clock = lambda: now[0]
    track._sleep = fake_sleep
    await track.recv()  # the first frame is released at once
    assert sleeps == []
    await track.recv()
    assert sleeps == [pytest.approx(0.020)]
    now[0] += 0.015  # the consumer was slow: the next frame is due 5 ms later
    await track.recv()
    assert sleeps[-1] == pytest.approx(0.005)
    now[0] += 0.100  # far behind: no sleep, frames catch up back to back
    await track.recv()
    await track.recv()
    assert len(sleeps) == 2


async def test_burst_starts_on_the_next_block_and_lasts_its_length() -> None:
    track = BurstTrack(1000, 0.5, burst_ms=50, realtime=False)
    before = await collect(track, 3)
    track.trigger()
    after = await collect(track, 6)
    x = np.concatenate([samples_of(f) for f in before + after])
    assert not x[: 3 * 960].any()
    onset = detect_tone_onset(x, 1000)
    assert onset is not None
    assert 3 * 960 <= onset <= 3 * 960 + 96
    burst = x[3 * 960 :]
    assert np.count_nonzero(np.abs(burst) > 100) > 0
    assert not burst[2400:].any()  # 50 ms = 2400 samples, then silence again
    assert len(track.burst_times) == 1


async def test_bursts_repeat_at_the_interval() -> None:
    track = BurstTrack(interval=0.1, burst_ms=20, realtime=False)
    frames = await collect(track, 25)  # 0.5 s
    loud = [bool(samples_of(f).any()) for f in frames]
    assert [i for i, v in enumerate(loud) if v] == [0, 5, 10, 15, 20]
    assert len(track.burst_times) == 5


async def test_on_block_sees_every_block() -> None:
    seen: list[tuple[np.ndarray, float]] = []
    track = ToneTrack(realtime=False, on_block=lambda s, t: seen.append((s, t)))
    frames = await collect(track, 4)
    assert len(seen) == 4
    for (s, _), f in zip(seen, frames, strict=True):
        np.testing.assert_array_equal(s, samples_of(f))
    times = [t for _, t in seen]
    assert times == sorted(times)


def write_wav(path: Path, data: np.ndarray, rate: int, channels: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.astype("<i2").tobytes())


def stereo_tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    n = int(rate * seconds)
    mono = (0.5 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.int16)
    return np.stack([mono, mono], axis=1).reshape(-1)


async def test_wav_track_resamples_any_file_to_48k_mono(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    write_wav(path, stereo_tone(1000, 44_100, 0.5), 44_100, 2)
    track = WavFileTrack(path, realtime=False)
    frames = await drain(track)
    for i, frame in enumerate(frames):
        assert_audio_frame(frame, pts=960 * i)
    x = np.concatenate([samples_of(f) for f in frames])
    assert len(frames) == 25  # 0.5 s = 24000 samples, the last block padded
    assert tone_power(x[2000:22_000], 1000) == pytest.approx(0.125, rel=0.05)
    assert track.readyState == "ended"


async def test_wav_track_loops(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    write_wav(path, np.full(480, 1000, dtype=np.int16), 48_000, 1)  # 10 ms
    track = WavFileTrack(path, loop=True, realtime=False)
    frames = await collect(track, 5)  # 100 ms out of a 10 ms file
    assert all(int(samples_of(f).min()) == 1000 for f in frames)
    track.stop()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file"), (b"this is not audio", "cannot read audio file")],
)
def test_unreadable_file_is_a_one_line_error(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError) as exc:
        WavFileTrack(path)
    message = str(exc.value)
    assert reason in message
    assert str(path) in message
    assert "\n" not in message


async def test_wav_round_trip_is_bit_exact(tmp_path: Path) -> None:
    source = tmp_path / "source.wav"
    rng = np.random.default_rng(3)
    original = rng.integers(-20_000, 20_000, 960 * 7 + 100, dtype=np.int16)
    write_wav(source, original, 48_000, 1)
    out = tmp_path / "out.wav"
    sink = WavFileSink(out)
    await sink.start(WavFileTrack(source, realtime=False))
    await asyncio.wait_for(sink.wait_ended(), 10)
    await sink.stop()
    await sink.stop()  # idempotent
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 48_000)
        back = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(back) == 960 * 8  # whole frames: the tail is padded with silence
    np.testing.assert_array_equal(back[: len(original)], original)
    assert not back[len(original) :].any()
    assert sink.samples_written == len(back)


async def test_wav_sink_reports_unwritable_path(tmp_path: Path) -> None:
    sink = WavFileSink(tmp_path / "missing-dir" / "out.wav")
    with pytest.raises(MediaError, match="cannot write WAV file"):
        await sink.start(SilenceTrack(realtime=False))


async def test_null_sink_drains_and_stops() -> None:
    sink = NullSink()
    three = asyncio.Event()
    track = ToneTrack(on_block=lambda s, t: three.set() if sink.frames >= 2 else None)
    await sink.start(track)
    await asyncio.wait_for(three.wait(), 10)
    with pytest.raises(RuntimeError):
        await sink.start(track)
    await sink.stop()
    await sink.stop()
    frames = sink.frames
    await asyncio.sleep(0.05)
    assert sink.frames == frames  # nothing consumed after stop
