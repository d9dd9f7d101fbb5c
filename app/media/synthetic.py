"""Sources and sinks that need no sound card: tone, silence, tone bursts, WAV files, null.

They are what tests, benchmarks and machines without audio hardware use. Sources produce the
same frames as :class:`~app.media.audio.MicrophoneTrack` (48 kHz mono s16, 960 samples, pts in
samples) and, by default, at the same pace: frame ``k`` is released ``k * 20 ms`` after the
first, like aiortc's ``AudioStreamTrack``, so a call never runs faster than real time.
``realtime=False`` releases frames as fast as they are asked for (file conversion, unit tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import AudioFrame
from av.frame import Frame
from av.packet import Packet

from app.errors import MediaError
from app.media.audio import BlockHook
from app.media.base import AUDIO_FRAME_SAMPLES, AUDIO_RATE
from app.media.consumer import TrackConsumer
from app.media.convert import MonoConverter, Samples, samples_to_frame

logger = logging.getLogger(__name__)


class PacedAudioTrack(AudioStreamTrack):
    """Base of the synthetic sources: subclasses only say which samples come next.

    ``on_block(samples, t)`` is called with each block and the ``time.monotonic()`` at which it
    was released, like the microphone's hook.
    """

    def __init__(self, *, realtime: bool = True, on_block: BlockHook | None = None) -> None:
        super().__init__()
        self.realtime = realtime
        self.on_block = on_block
        self._t0: float | None = None
        self._pts = 0
        # The pacing clock and sleep, replaceable so tests can check pacing on a fake clock.
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def next_block(self, n: int) -> Samples:
        """The next ``n`` samples (int16); raise :class:`MediaStreamError` when there are none."""
        raise NotImplementedError

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.realtime:
            if self._t0 is None:
                self._t0 = self._clock()
            else:
                wait = self._t0 + self._pts / AUDIO_RATE - self._clock()
                if wait > 0:
                    await self._sleep(wait)
        try:
            samples = self.next_block(AUDIO_FRAME_SAMPLES)
        except MediaStreamError:
            self.stop()
            raise
        frame = samples_to_frame(samples, self._pts)
        self._pts += len(samples)
        if self.on_block is not None:
            self.on_block(samples, time.monotonic())
        return frame


def sine(freq: float, amplitude: float, start: int, n: int) -> Samples:
    """``n`` int16 samples of a sine at ``freq`` Hz starting at sample index ``start``."""
    t = (start + np.arange(n)) * (2 * np.pi * freq / AUDIO_RATE)
    out: Samples = (np.sin(t) * (amplitude * 32767)).astype(np.int16)
    return out


def _check_amplitude(amplitude: float) -> float:
    if not 0 <= amplitude <= 1:
        raise MediaError(f"tone amplitude must be between 0 and 1, got {amplitude}")
    return amplitude


class ToneTrack(PacedAudioTrack):
    """A continuous sine (phase-continuous across frames); ``amplitude`` is 0..1 of full scale."""

    def __init__(
        self,
        freq: float = 440.0,
        amplitude: float = 0.3,
        *,
        realtime: bool = True,
        on_block: BlockHook | None = None,
    ) -> None:
        super().__init__(realtime=realtime, on_block=on_block)
        if not 0 < freq < AUDIO_RATE / 2:
            raise MediaError(f"tone frequency must be between 0 and {AUDIO_RATE // 2} Hz")
        self.freq = freq
        self.amplitude = _check_amplitude(amplitude)

    def next_block(self, n: int) -> Samples:
        return sine(self.freq, self.amplitude, self._pts, n)


class SilenceTrack(PacedAudioTrack):
    """Digital silence, paced like a microphone."""

    def next_block(self, n: int) -> Samples:
        return np.zeros(n, dtype=np.int16)


class BurstTrack(PacedAudioTrack):
    """Silence with short tone bursts, for latency measurements by tone detection.

    :meth:`trigger` starts a burst at the beginning of the next block (or ``interval`` seconds
    apart automatically); ``burst_times`` holds the ``time.monotonic()`` at which each burst's
    first block was released. A burst always starts on a block boundary with a hard edge, so
    its onset is sharp to detect.
    """

    def __init__(
        self,
        freq: float = 1000.0,
        amplitude: float = 0.5,
        burst_ms: float = 60.0,
        *,
        interval: float | None = None,
        realtime: bool = True,
        on_block: BlockHook | None = None,
    ) -> None:
        super().__init__(realtime=realtime, on_block=on_block)
        self.freq = freq
        self.amplitude = _check_amplitude(amplitude)
        self.burst_samples = max(1, round(burst_ms * AUDIO_RATE / 1000))
        self.interval = interval
        self.burst_times: list[float] = []
        self._remaining = 0  # samples left in the current burst
        self._pending = 0
        self._burst_start = 0
        self._next_auto: int | None = 0 if interval else None

    def trigger(self) -> None:
        """Start a burst with the next block (bursts asked for during a burst queue up)."""
        self._pending += 1

    def next_block(self, n: int) -> Samples:
        if self._next_auto is not None and self._pts >= self._next_auto and self.interval:
            self._pending += 1
            self._next_auto = self._pts + round(self.interval * AUDIO_RATE)
        if self._remaining == 0 and self._pending:
            self._pending -= 1
            self._remaining = self.burst_samples
            self._burst_start = self._pts
            self.burst_times.append(time.monotonic())
        block = np.zeros(n, dtype=np.int16)
        if self._remaining:
            k = min(n, self._remaining)
            # Phase counted from the burst start, so every burst begins at a zero crossing.
            block[:k] = sine(self.freq, self.amplitude, self._pts - self._burst_start, k)
            self._remaining -= k
        return block


class WavFileTrack(PacedAudioTrack):
    """Audio from a file (WAV, or anything FFmpeg decodes), remixed to 48 kHz mono.

    At the end the track ends (``recv`` raises ``MediaStreamError``), or starts over with
    ``loop=True``. The last partial block is padded with silence.
    """

    def __init__(
        self,
        path: str | Path,
        loop: bool = False,
        *,
        realtime: bool = True,
        on_block: BlockHook | None = None,
    ) -> None:
        super().__init__(realtime=realtime, on_block=on_block)
        self.path = Path(path)
        self.loop = loop
        self._pending: list[Samples] = []
        self._pending_len = 0
        self._finished = False
        self._container: Any = None
        self._decoded = self._decode()
        # Decode the first chunk now so a missing or unreadable file fails here, not mid-call.
        self._fill(1)

    def _open(self) -> Any:
        try:
            container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise MediaError(f"cannot read audio file '{self.path}': {reason}") from None
        if not container.streams.audio:
            container.close()
            raise MediaError(f"cannot read audio file '{self.path}': it has no audio stream")
        return container

    def _decode(self) -> Generator[Samples, None, None]:
        """Blocks of converted samples, file after file when looping."""
        while True:
            container = self._container = self._open()
            converter = MonoConverter()
            produced = 0
            try:
                for frame in container.decode(audio=0):
                    out = converter.convert(frame)
                    produced += len(out)
                    yield out
                tail = converter.flush()
                produced += len(tail)
                yield tail
            except av.FFmpegError as exc:
                raise MediaError(f"cannot decode audio file '{self.path}': {exc}") from None
            finally:
                container.close()
            if not self.loop or produced == 0:
                return

    def _fill(self, n: int) -> None:
        while self._pending_len < n and not self._finished:
            try:
                chunk = next(self._decoded)
            except StopIteration:
                self._finished = True
                break
            if len(chunk):
                self._pending.append(chunk)
                self._pending_len += len(chunk)

    def next_block(self, n: int) -> Samples:
        self._fill(n)
        if self._pending_len == 0:
            raise MediaStreamError
        data = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        block, rest = data[:n], data[n:]
        self._pending = [rest] if len(rest) else []
        self._pending_len = len(rest)
        if len(block) < n:
            block = np.concatenate([block, np.zeros(n - len(block), dtype=np.int16)])
        return block

    def stop(self) -> None:
        super().stop()
        self._decoded.close()


class WavFileSink(TrackConsumer):
    """Writes a remote audio track to a 16-bit 48 kHz mono WAV file."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.samples_written = 0
        self._converter = MonoConverter()
        self._wav: wave.Wave_write | None = None
        self._file: BinaryIO | None = None

    async def _open(self) -> None:
        try:
            # Opened here, not by wave.open: Python 3.11's wave leaks a broken object on failure.
            self._file = self.path.open("wb")
        except OSError as exc:
            raise MediaError(f"cannot write WAV file '{self.path}': {exc.strerror}") from None
        wav = wave.open(self._file, "wb")  # noqa: SIM115 - closed in _close
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        self._wav = wav

    def handle(self, frame: Frame | Packet[Any]) -> None:
        if not isinstance(frame, AudioFrame):
            raise MediaError(f"WavFileSink stores audio, got {type(frame).__name__}")
        self._write(self._converter.convert(frame))

    def _write(self, samples: Samples) -> None:
        if self._wav is not None and len(samples):
            self._wav.writeframes(samples.astype("<i2").tobytes())
            self.samples_written += len(samples)

    async def _close(self) -> None:
        self._write(self._converter.flush())
        wav, self._wav = self._wav, None
        if wav is not None:
            wav.close()  # writes the final header sizes
        file, self._file = self._file, None
        if file is not None:
            file.close()


class NullSink(TrackConsumer):
    """Consumes a track (audio or video) and discards it, counting frames in ``frames``.

    Useful when a remote track must be drained but not played (no sound card, benchmarks).
    """

    def handle(self, frame: Frame | Packet[Any]) -> None:
        pass
