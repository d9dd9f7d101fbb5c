"""Microphone and speaker: the playout buffer alone, then real PortAudio streams on the
virtual sound card (a private PulseAudio server, see tests/audio.py)."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from app.errors import DeviceConfigError, DeviceNotFound
from app.media import devices
from app.media.analysis import tone_power
from app.media.audio import MicrophoneTrack, PlayoutBuffer, SpeakerSink
from app.media.synthetic import SilenceTrack, ToneTrack
from tests.audio import VirtualAudio

# --- PlayoutBuffer (pure) -------------------------------------------------------------------


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)


def read(buf: PlayoutBuffer, n: int) -> tuple[np.ndarray, int]:
    out = np.full(n, -1, dtype=np.int16)
    served = buf.read_into(out)
    return out, served


def test_buffer_is_fifo_across_the_wrap() -> None:
    buf = PlayoutBuffer(capacity=10, target=10, window=1000)
    buf.write(ramp(0, 7))
    out, served = read(buf, 5)
    np.testing.assert_array_equal(out, ramp(0, 5))
    buf.write(ramp(7, 6))  # wraps past the end of the storage
    out, served = read(buf, 8)
    assert served == 8
    np.testing.assert_array_equal(out, ramp(5, 8))
    assert len(buf) == 0
    assert buf.dropped == buf.underruns == 0


def test_overflow_drops_the_oldest_samples() -> None:
    buf = PlayoutBuffer(capacity=10, target=10, window=1000)
    buf.write(ramp(0, 8))
    buf.write(ramp(8, 5))
    assert buf.dropped == 3
    out, _ = read(buf, 10)
    np.testing.assert_array_equal(out, ramp(3, 10))
    buf.write(ramp(100, 25))  # one write larger than the whole buffer keeps its newest part
    out, _ = read(buf, 10)
    np.testing.assert_array_equal(out, ramp(115, 10))
    assert buf.dropped == 3 + 15


def test_underrun_pads_with_silence_and_is_counted() -> None:
    buf = PlayoutBuffer(capacity=10, target=10, window=1000)
    _, served = read(buf, 4)
    assert served == 0
    assert buf.underruns == 0  # nothing was ever written: start-up, not an underrun
    buf.write(ramp(1, 3))
    out, served = read(buf, 5)
    assert served == 3
    np.testing.assert_array_equal(out, [1, 2, 3, 0, 0])
    assert buf.underruns == 1


def test_standing_latency_is_trimmed_back_to_the_target() -> None:
    """A writer that got ahead by 3 blocks must not keep latency 3 blocks high for ever."""
    block = 960
    target = block + block // 2
    buf = PlayoutBuffer(capacity=6 * block, target=target, window=10)
    buf.write(np.zeros(4 * block, dtype=np.int16))  # a burst after a network stall
    levels = []
    for _ in range(30):  # steady state: one block in, one block out
        buf.write(np.ones(block, dtype=np.int16))
        read(buf, block)
        levels.append(len(buf))
    assert levels[0] == 4 * block
    # Trimmed once, after the first window: just before each read there are now 1.5 blocks.
    assert levels[-1] == target - block
    assert buf.trimmed == 5 * block - target
    assert buf.underruns == 0


def test_trim_comes_in_small_steps_and_every_read_is_full() -> None:
    block = 960
    buf = PlayoutBuffer(capacity=8 * block, window=5, max_step=240)
    buf.write(np.ones(6 * block, dtype=np.int16))
    steps = []
    for _ in range(40):
        buf.write(np.ones(block, dtype=np.int16))
        before = buf.trimmed
        _, served = read(buf, block)
        assert served == block
        steps.append(buf.trimmed - before)
    assert max(steps) == 240
    assert sum(steps) == buf.trimmed == 7 * block - buf.target
    assert buf.underruns == 0


def test_trim_cuts_where_the_audio_is_quietest() -> None:
    """The samples cut are from a pause; the loud audio around it is played untouched."""
    block, step, ramp = 960, 240, 48
    buf = PlayoutBuffer(capacity=8 * block, target=block, window=1, spare=0, max_step=step)
    loud = np.full(3 * block, 20_000, dtype=np.int16)
    loud[600:1000] = 0  # a pause of 400 samples inside the first block
    buf.write(loud)
    out, served = read(buf, block)  # the first read finds 2 blocks over the target: trims
    assert served == block
    assert buf.trimmed == step
    kept = np.concatenate((loud[:600], loud[600 + step :]))[:block]
    # Everything outside the crossfade is the input minus ``step`` samples of the pause.
    np.testing.assert_array_equal(out, kept)
    assert np.all(out[600 : 600 + ramp] == 0)


def schedule(
    seconds: float, late_every: int, pair_every: int, burst_at: float
) -> list[tuple[float, str]]:
    """A fake clock's events: a write every 20 ms (every ``late_every``-th 25 ms late, as from a
    busy event loop) and a read every 20 ms (every ``pair_every``-th 19.4 ms late, so it comes
    back-to-back with the next, as PortAudio's callbacks do after an ALSA xrun), plus a burst
    of extra blocks at ``burst_at`` (frames released together after loss)."""
    events = []
    for k in range(int(seconds * 50)):
        late = 25.0 if late_every and k % late_every == 3 else 0.0
        events.append((20.0 * k + late, "write"))
        paired = 19.4 if pair_every and k % pair_every == 4 else 0.0
        events.append((20.0 * k + 10.0 + paired, "read"))
    events.append((burst_at * 1000 - 0.1, "burst"))
    return sorted(events)


def replay(
    buf: PlayoutBuffer, events: list[tuple[float, str]], burst_blocks: int = 3
) -> list[tuple[float, int]]:
    """Run ``events`` against ``buf``; (ms, fill just before the read) for every read."""
    block = 960
    out = np.zeros(block, dtype=np.int16)
    levels = []
    for at, kind in events:
        if kind == "write":
            buf.write(np.ones(block, dtype=np.int16))
        elif kind == "burst":
            buf.write(np.ones(burst_blocks * block, dtype=np.int16))
        else:
            levels.append((at, len(buf)))
            buf.read_into(out)
    return levels


def mean_fill_ms(levels: list[tuple[float, int]], start: float, end: float) -> float:
    return float(np.mean([n for at, n in levels if start * 1000 <= at < end * 1000])) / 48


@pytest.mark.parametrize(
    ("late_every", "pair_every"),
    [(0, 0), (7, 0), (0, 9), (7, 9), (0, 1)],
    ids=["steady", "late-writes", "some-pairs", "late-writes-and-pairs", "all-pairs"],
)
def test_latency_is_back_within_2_s_of_a_burst_despite_dips(
    late_every: int, pair_every: int
) -> None:
    """After a burst the fill before reads is back where it was before it, within 2 s, with no
    underrun caused by trimming, whatever dips late writes and paired callbacks make."""
    events = schedule(8.0, late_every, pair_every, burst_at=4.0)
    buf = PlayoutBuffer()
    # Start over-full and settle for 3 s: the steady state is then the trimmed one.
    buf.write(np.ones(3 * 960, dtype=np.int16))
    replay(buf, [e for e in events if e[0] < 3000])
    underruns = buf.underruns
    levels = replay(buf, [e for e in events if e[0] >= 3000])
    steady = mean_fill_ms(levels, 3.0, 4.0)
    assert mean_fill_ms(levels, 4.0, 4.5) > steady + 30  # the burst did add latency
    assert mean_fill_ms(levels, 6.0, 8.0) <= steady + 1.0
    assert buf.underruns == underruns


def test_a_plain_minimum_keeps_latency_up_where_spare_readings_do_not() -> None:
    """Why ``spare`` exists: on the same dipping schedule the old rule (the lowest reading of a
    1 s window decides) never sees the buffer as over-full and holds more latency for good."""
    events = schedule(8.0, 7, 9, burst_at=4.0)
    after = {}
    for name, buf in (
        ("plain minimum", PlayoutBuffer(window=50, spare=0, max_step=10**6)),
        ("spare readings", PlayoutBuffer()),
    ):
        buf.write(np.ones(3 * 960, dtype=np.int16))
        after[name] = mean_fill_ms(replay(buf, events), 6.0, 8.0)
    assert after["plain minimum"] > after["spare readings"] + 5.0


# --- real streams on the virtual sound card -------------------------------------------------


class StereoToneTrack(AudioStreamTrack):
    """What a remote Opus track looks like (stereo), at 44.1 kHz to exercise resampling."""

    def __init__(self, freq: float, rate: int = 44_100) -> None:
        super().__init__()
        self.freq, self.rate, self.n = freq, rate, 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(0.02)
        per = self.rate // 50
        t = np.arange(self.n, self.n + per)
        mono = (0.5 * 32767 * np.sin(2 * np.pi * self.freq * t / self.rate)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.stack([mono, mono], axis=1).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = self.rate
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, self.rate)
        self.n += per
        return frame


async def record(mic: MicrophoneTrack, blocks: int) -> np.ndarray:
    """``blocks`` frames from the microphone, checking format and pts continuity on the way."""
    out: list[tuple[int, np.ndarray]] = []
    for _ in range(blocks):
        frame = await asyncio.wait_for(mic.recv(), 5)
        assert isinstance(frame, av.AudioFrame)
        assert frame.pts is not None
        assert (frame.format.name, frame.layout.name, frame.sample_rate) == ("s16", "mono", 48_000)
        assert frame.samples == 960
        if out:
            assert frame.pts == out[-1][0] + 960
        out.append((frame.pts, frame.to_ndarray().reshape(-1)))
    return np.concatenate([s for _, s in out])


@pytest.mark.audio
async def test_tone_played_on_the_speaker_is_heard_by_the_microphone(
    virtual_audio: VirtualAudio,
) -> None:
    mic = MicrophoneTrack("pulse")  # records the default source: vspeaker's monitor
    speaker = SpeakerSink("pulse")
    try:
        before = await record(mic, 10)
        await speaker.start(ToneTrack(1000, 0.5))
        assert "protocol-native" in virtual_audio.pactl("list", "short", "sink-inputs")
        await record(mic, 10)  # let the playout path fill
        during = await record(mic, 25)
    finally:
        await speaker.stop()
        mic.stop()
    assert tone_power(before, 1000) < 1e-6  # the control: silence before playback
    assert tone_power(during, 1000) > 0.1  # 0.5 amplitude -> 0.125, the null sink is unity gain
    assert tone_power(during, 1500) < 1e-3
    stats = speaker.stats
    assert stats.blocks > 0
    assert stats.last_callback is not None


@pytest.mark.audio
async def test_speaker_remixes_stereo_44k_frames(virtual_audio: VirtualAudio) -> None:
    mic = MicrophoneTrack("pulse")
    speaker = SpeakerSink("pulse")
    try:
        await speaker.start(StereoToneTrack(700))
        await record(mic, 15)
        during = await record(mic, 25)
    finally:
        await speaker.stop()
        mic.stop()
    assert tone_power(during, 700) > 0.05  # jitter of the test's own pacing may cost a glitch


@pytest.mark.audio
async def test_block_hooks_report_what_went_through_the_callbacks(
    virtual_audio: VirtualAudio,
) -> None:
    played: list[tuple[np.ndarray, float]] = []
    captured: list[tuple[np.ndarray, float]] = []
    mic = MicrophoneTrack("pulse", on_block=lambda s, t: captured.append((s, t)))
    speaker = SpeakerSink("pulse", on_block=lambda s, t: played.append((s, t)))
    try:
        await speaker.start(ToneTrack(1000, 0.5))
        await record(mic, 30)
    finally:
        await speaker.stop()
        mic.stop()
    for blocks in (played, captured):
        assert len(blocks) >= 20
        assert all(s.shape == (960,) and s.dtype == np.int16 for s, _ in blocks)
        times = [t for _, t in blocks]
        assert times == sorted(times)
    # The speaker hook sees the samples it handed to PortAudio: the tone, once it flows.
    assert tone_power(np.concatenate([s for s, _ in played[-10:]]), 1000) > 0.1
    assert tone_power(np.concatenate([s for s, _ in captured[-10:]]), 1000) > 0.1


@pytest.mark.audio
async def test_a_microphone_nobody_reads_drops_its_oldest_blocks(
    virtual_audio: VirtualAudio,
) -> None:
    enough = asyncio.Event()

    def hook(samples: np.ndarray, at: float) -> None:
        if mic.stats.blocks >= 8:
            enough.set()

    mic = MicrophoneTrack("pulse", queue_frames=3, on_block=hook)
    try:
        await mic.start()
        await asyncio.wait_for(enough.wait(), 10)
        assert mic.stats.dropped == mic.stats.blocks - 3  # the queue never grows past 3
        first = await mic.recv()
        second = await mic.recv()
        assert first.pts is not None
        assert second.pts == first.pts + 960  # pts stay continuous across the drops
    finally:
        mic.stop()
    with pytest.raises(MediaStreamError):
        await mic.recv()
    mic.stop()  # idempotent


@pytest.mark.audio
async def test_stop_wakes_a_pending_recv(virtual_audio: VirtualAudio) -> None:
    mic = MicrophoneTrack("pulse")
    await mic.start()
    for _ in range(50):  # until a recv() is parked on an empty queue (blocks keep arriving)
        waiter = asyncio.ensure_future(mic.recv())
        await asyncio.sleep(0)
        if not waiter.done():
            break
        await waiter
    else:
        pytest.fail("the microphone queue never ran empty")
    mic.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiter, 5)


@pytest.mark.audio
async def test_speaker_stop_is_idempotent_and_releases_the_device(
    virtual_audio: VirtualAudio,
) -> None:
    speaker = SpeakerSink("pulse")
    await speaker.start(SilenceTrack())
    assert virtual_audio.pactl("list", "short", "sink-inputs").strip()
    await speaker.stop()
    await speaker.stop()
    assert not virtual_audio.pactl("list", "short", "sink-inputs").strip()


@pytest.mark.audio
def test_unknown_microphone_fails_before_any_stream_opens(virtual_audio: VirtualAudio) -> None:
    with pytest.raises(DeviceNotFound) as exc:
        MicrophoneTrack("no-such-mic")
    assert str(exc.value) == "no input device matches 'no-such-mic' (have: pulse, default)"


class OpusLoopTrack(AudioStreamTrack):
    """``source`` through aiortc's own Opus encoder and decoder: what the far side receives."""

    def __init__(self, source: Any) -> None:
        super().__init__()
        self.source = source
        self.encoder, self.decoder = OpusEncoder(), OpusDecoder()
        self.pending: list[Any] = []

    async def recv(self) -> Any:
        while not self.pending:
            payloads, timestamp = self.encoder.encode(await self.source.recv())
            for payload in payloads:
                self.pending += self.decoder.decode(JitterFrame(payload, timestamp))
        return self.pending.pop(0)


@pytest.mark.audio
async def test_frames_interoperate_with_aiortc_opus_both_ways(
    virtual_audio: VirtualAudio,
) -> None:
    """Mic frames are what aiortc's encoder takes; decoded (stereo) frames are what we play."""
    mic = MicrophoneTrack("pulse")
    heard = OpusLoopTrack(mic)
    speaker = SpeakerSink("pulse")
    try:
        await speaker.start(OpusLoopTrack(ToneTrack(1000, 0.5)))
        for _ in range(15):
            await asyncio.wait_for(heard.recv(), 5)
        frames = [await asyncio.wait_for(heard.recv(), 5) for _ in range(25)]
    finally:
        await speaker.stop()
        mic.stop()
    assert {(f.format.name, f.layout.name, f.sample_rate) for f in frames} == {
        ("s16", "stereo", 48_000)
    }
    left = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames])
    # aiortc's encoder upmixes mono to stereo at -3 dB, so each pass halves the power:
    # 0.125 (amplitude 0.5) -> 0.0625 -> 0.031, give or take Opus' own loss.
    assert 0.02 < tone_power(left, 1000) < 0.045


@pytest.mark.audio
async def test_a_device_that_refuses_mono_is_driven_in_stereo(
    virtual_audio: VirtualAudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw ALSA hw: devices often take only 2 channels; pretend pulse is one of them."""
    real_check = devices.check_format

    def stereo_only(index: int, kind: devices.Kind, rate: int = 48_000, channels: int = 1) -> None:
        if channels == 1:
            raise DeviceConfigError(f"{kind} device 'pulse' refused {rate} Hz mono: test")
        real_check(index, kind, rate, channels)

    monkeypatch.setattr(devices, "check_format", stereo_only)
    mic = MicrophoneTrack("pulse")
    speaker = SpeakerSink("pulse")
    assert (mic.channels, speaker.channels) == (2, 2)
    try:
        await speaker.start(ToneTrack(1000, 0.5))
        await record(mic, 15)
        assert (mic._stream.channels, speaker._stream.channels) == (2, 2)
        during = await record(mic, 25)  # still 960-sample mono frames
    finally:
        await speaker.stop()
        mic.stop()
    assert tone_power(during, 1000) > 0.1


@pytest.mark.audio
def test_a_refused_rate_is_not_retried_in_stereo(virtual_audio: VirtualAudio) -> None:
    with pytest.raises(DeviceConfigError, match="refused 1234567 Hz mono: Invalid sample rate"):
        devices.open_device("pulse", "output", rate=1_234_567)
