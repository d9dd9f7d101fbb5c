"""Microphone capture and speaker playback through PortAudio (sounddevice).

PortAudio calls our callbacks on its own thread every 20 ms (960 samples at 48 kHz). The
callbacks do as little as possible: the microphone copies the block and hands it to the event
loop with ``loop.call_soon_threadsafe`` into a bounded queue; the speaker copies samples out of
a lock-protected ring buffer that the event loop fills. Both queues are small and drop the
*oldest* audio when full, so a stalled consumer costs a glitch, never growing latency.

For latency measurements both ends expose ``on_block(samples, t)``: the samples of each block
and ``time.monotonic()`` taken inside the PortAudio callback, delivered on the event loop's
thread. A benchmark detects a tone burst in those blocks at capture and at playout, which
measures the real path instead of trusting RTP timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import AudioFrame
from av.frame import Frame
from av.packet import Packet

from app.errors import MediaError
from app.media import devices
from app.media.base import AUDIO_FRAME_SAMPLES, AUDIO_RATE
from app.media.consumer import TrackConsumer
from app.media.convert import MonoConverter, Samples, samples_to_frame

logger = logging.getLogger(__name__)

BlockHook = Callable[[Samples, float], None]
#: A processing step for microphone blocks (noise suppression, gain): same length out.
BlockProcess = Callable[[Samples], Samples]

#: PortAudio latency hint: 'low' asks the host API for its smallest safe buffer
#: (40 ms on PulseAudio).
DEFAULT_LATENCY = "low"


@dataclass
class AudioStats:
    """Counters a debug panel or a test can read; updated as blocks flow."""

    blocks: int = 0  # blocks that went through the PortAudio callback
    dropped: int = 0  # blocks (mic) or samples (speaker) discarded because a queue was full
    underruns: int = 0  # speaker callbacks that had to pad with silence
    trimmed: int = 0  # samples the speaker skipped to bring standing latency back down
    xruns: int = 0  # callbacks where PortAudio reported an over/underflow itself
    last_callback: float | None = None  # time.monotonic() of the latest callback


def _start_stream(kind: str, index: int, channels: int, latency: Any, **callbacks: Any) -> Any:
    """Open and start a PortAudio ``kind`` ("input"/"output") stream of 20 ms int16 blocks at
    48 kHz; a refusal becomes a one-line MediaError naming the device."""
    sd = devices.sounddevice()
    factory = sd.InputStream if kind == "input" else sd.OutputStream
    try:
        stream = factory(
            device=index,
            samplerate=AUDIO_RATE,
            channels=channels,
            dtype="int16",
            blocksize=AUDIO_FRAME_SAMPLES,
            latency=latency,
            **callbacks,
        )
        stream.start()
    except (sd.PortAudioError, ValueError) as exc:
        raise _stream_error(kind, index, exc) from None
    role = "microphone" if kind == "input" else "speaker"
    logger.info(
        "%s '%s' open (latency %.0f ms)", role, devices.device_name(index), stream.latency * 1000
    )
    return stream


def _stream_error(kind: str, index: int, exc: BaseException) -> MediaError:
    name = devices.device_name(index)
    return MediaError(f"cannot open {kind} device '{name}': {devices.portaudio_message(exc)}")


class MicrophoneTrack(AudioStreamTrack):
    """Live microphone audio as an aiortc track: 48 kHz mono s16 frames of 960 samples.

    The device is looked up and its format checked in the constructor (so a bad ``--mic`` fails
    before a call starts); the stream opens on :meth:`start` or on the first :meth:`recv`.
    ``pts`` counts delivered samples, so it is continuous even when blocks are dropped.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        on_block: BlockHook | None = None,
        queue_frames: int = 5,
        latency: str | float = DEFAULT_LATENCY,
        process: BlockProcess | None = None,
    ) -> None:
        super().__init__()
        self.device_index, self.channels = devices.open_device(device, "input")
        self.on_block = on_block
        #: Runs on the event loop on each block before it is queued and shown to ``on_block``.
        self.process = process
        self.stats = AudioStats()
        self._latency = latency
        self._queue: asyncio.Queue[Samples | None] = asyncio.Queue(maxsize=max(1, queue_frames))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: Any = None
        self._opening: asyncio.Lock | None = None
        self._pts = 0

    @property
    def device_name(self) -> str:
        return devices.device_name(self.device_index)

    def is_live(self) -> bool:
        """Whether the track has not been stopped."""
        return self.readyState == "live"

    def is_open(self) -> bool:
        """Whether the input stream is open (it opens on ``start`` or the first ``recv``)."""
        return self._stream is not None

    async def start(self) -> None:
        """Open and start the input stream now (idempotent; ``recv`` does it when needed)."""
        if self.is_open() or not self.is_live():
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.is_open():  # opened by a concurrent start() while we waited for the lock
                return
            self._loop = asyncio.get_running_loop()
            # Opening a stream talks to the sound server: keep that off the event loop.
            stream = await _open_off_loop(self._open_stream)
            if not self.is_live():  # stopped while we were opening
                await asyncio.to_thread(_close_quietly, stream)
                return
            self._stream = stream

    def _open_stream(self) -> Any:
        return _start_stream(
            "input",
            self.device_index,
            self.channels,
            self._latency,
            callback=self._callback,
            finished_callback=self._finished,
        )

    # --- PortAudio thread -------------------------------------------------------------------
    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        if self.channels == 1:
            block = indata[:, 0].copy()
        else:  # a stereo-only device: mix down (int32 so the sum cannot overflow)
            block = (indata.sum(axis=1, dtype=np.int32) // self.channels).astype(np.int16)
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to deliver to
            loop.call_soon_threadsafe(self._deliver, block, now, bool(status))

    def _finished(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._deliver_end)

    # --- event loop thread ------------------------------------------------------------------
    def _deliver(self, block: Samples, at: float, xrun: bool) -> None:
        stats = self.stats
        stats.blocks += 1
        stats.last_callback = at
        if xrun:
            stats.xruns += 1
        if self.process is not None:
            block = self.process(block)
        if self._queue.full():
            self._queue.get_nowait()
            stats.dropped += 1
        self._queue.put_nowait(block)
        if self.on_block is not None:
            self.on_block(block, at)

    def _deliver_end(self) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._stream is None:
            await self.start()
        block = await self._queue.get()
        if block is None or self.readyState != "live":
            raise MediaStreamError
        frame = samples_to_frame(block, self._pts)
        self._pts += len(block)
        return frame

    def stop(self) -> None:
        """End the track and close the input stream."""
        super().stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_quietly(stream)
        self._deliver_end()  # wake a pending recv()


async def _open_off_loop(open_stream: Callable[[], Any]) -> Any:
    """``open_stream()`` in a worker thread; if we are cancelled meanwhile, the stream it still
    opens is closed (cancelling ``to_thread`` does not stop the thread, and an unowned stream
    would keep the device open and its callback running)."""
    # A plain executor future, not a task: nothing that cancels the loop's tasks (a shutdown,
    # a test's teardown) can cancel it and so lose the stream it delivers.
    opening = asyncio.get_running_loop().run_in_executor(None, open_stream)
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_orphan)
        raise


def _close_orphan(opening: asyncio.Future[Any]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return  # nothing was opened (the exception is retrieved, so it is not logged)
    _close_quietly(opening.result())


def _close_quietly(stream: Any) -> None:
    """Abort (do not drain) and close a stream; errors here only mean it is already gone."""
    try:
        stream.abort()
        stream.close()
    except Exception as exc:
        logger.debug("closing audio stream: %s", exc)


class PlayoutBuffer:
    """A bounded FIFO of int16 samples between the event loop (writer) and PortAudio (reader).

    Overflow drops the oldest samples. A writer that got ahead (a burst after a network stall,
    frames a jitter buffer released together, clock drift) would otherwise leave latency
    standing above what the reads need, so the reader also keeps latency down, the way WebRTC's
    NetEq "accelerates":

    - Every ``window`` reads it looks at the fill found just before each read. The excess is
      what the ``spare + 1``-th lowest of them has above ``target`` (1.5 blocks: a 10 ms cushion
      after the read for writes that arrive late), but never so much that the lowest one would
      have under-run. Ignoring the ``spare`` lowest readings matters on a loaded machine: a late
      write or a back-to-back pair of callbacks after an ALSA xrun dips the fill now and then,
      and a plain minimum then never sees the buffer as over-full, so latency stays up for good.
    - The excess is removed in steps of at most ``max_step`` samples per read, each cut where
      the block is quietest (a pause between words, if there is one) and joined by a
      ``ramp``-sample crossfade, so a trim is not heard as a click.
    """

    def __init__(
        self,
        capacity: int = 5 * AUDIO_FRAME_SAMPLES,
        target: int = AUDIO_FRAME_SAMPLES * 3 // 2,
        window: int = 25,
        spare: int = 2,
        max_step: int = AUDIO_FRAME_SAMPLES // 4,
        ramp: int = 48,
    ) -> None:
        self.capacity = capacity
        self.target = target
        self.window = window
        self.spare = spare
        self.max_step = max_step
        self.ramp = ramp
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._head = 0
        self._size = 0
        self._lock = threading.Lock()
        self._levels: list[int] = []  # fill before each read of the current window
        self._pending = 0  # excess still to trim, a step per read
        self._written = False
        self.dropped = 0
        self.trimmed = 0
        self.underruns = 0

    def __len__(self) -> int:
        return self._size

    def write(self, samples: Samples) -> None:
        n = len(samples)
        if n == 0:
            return
        with self._lock:
            if n >= self.capacity:
                self.dropped += self._size + n - self.capacity
                samples = samples[n - self.capacity :]
                n = self.capacity
                self._head = 0
                self._size = 0
            elif self._size + n > self.capacity:
                excess = self._size + n - self.capacity
                self._skip(excess)
                self.dropped += excess
            start = (self._head + self._size) % self.capacity
            first = min(n, self.capacity - start)
            self._buf[start : start + first] = samples[:first]
            if first < n:
                self._buf[: n - first] = samples[first:]
            self._size += n
            self._written = True

    def _skip(self, n: int) -> None:
        self._head = (self._head + n) % self.capacity
        self._size -= n

    def _take(self, out: Any, n: int) -> None:
        """Move the ``n`` oldest samples into ``out[:n]``."""
        first = min(n, self.capacity - self._head)
        out[:first] = self._buf[self._head : self._head + first]
        if first < n:
            out[first:n] = self._buf[: n - first]
        self._skip(n)

    def _observe(self, level: int, wanted: int) -> None:
        """Note the fill before a read; at the end of a window, decide how much to trim."""
        self._levels.append(level)
        if len(self._levels) < self.window:
            return
        ordered = sorted(self._levels)
        self._levels.clear()
        if self._pending:
            return  # still trimming the last excess: these readings are not settled yet
        spare = min(self.spare, len(ordered) - 1)
        self._pending = max(0, min(ordered[spare] - self.target, ordered[0] - wanted))

    def read_into(self, out: Any) -> int:
        """Fill ``out`` (1-D int16) with the oldest samples, silence after them; count served."""
        wanted = len(out)
        with self._lock:
            self._observe(self._size, wanted)
            step = min(self._pending, self.max_step, self._size - wanted)
            if step > 0 and wanted > self.ramp:
                self._read_trimmed(out, wanted, step)
                self._pending -= step
                self.trimmed += step
                return wanted
            n = min(wanted, self._size)
            self._take(out, n)
        if n < wanted:
            out[n:] = 0
            if self._written:  # silence before the first write is start-up, not an underrun
                self.underruns += 1
        return n

    def _read_trimmed(self, out: Any, wanted: int, step: int) -> None:
        """Fill ``out`` from ``wanted + step`` samples, cutting ``step`` at the quietest place."""
        ramp = self.ramp
        chunk = np.empty(wanted + step, dtype=np.int16)
        self._take(chunk, wanted + step)
        # The cut spans chunk[at : at + step + ramp]: choose ``at`` (on a ramp-long grid) where
        # that stretch holds the least energy.
        energy = np.concatenate(([0.0], np.cumsum(chunk.astype(np.float64) ** 2)))
        starts = np.arange(0, wanted - ramp + 1, ramp)
        at = int(starts[np.argmin(energy[starts + step + ramp] - energy[starts])])
        fade = np.linspace(0.0, 1.0, ramp, endpoint=False, dtype=np.float32)
        before = chunk[at : at + ramp].astype(np.float32)
        after = chunk[at + step : at + step + ramp].astype(np.float32)
        out[:at] = chunk[:at]
        out[at : at + ramp] = np.round(before * (1.0 - fade) + after * fade).astype(np.int16)
        out[at + ramp : wanted] = chunk[at + step + ramp :]


class SpeakerSink(TrackConsumer):
    """Plays a remote audio track on an output device (a :class:`~app.media.base.MediaSink`).

    Frames of any format are remixed to 48 kHz mono s16 and queued in a :class:`PlayoutBuffer`
    (``buffer_frames`` blocks at most); the output callback plays silence on underrun.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        on_block: BlockHook | None = None,
        buffer_frames: int = 5,
        latency: str | float = DEFAULT_LATENCY,
    ) -> None:
        super().__init__()
        self.device_index, self.channels = devices.open_device(device, "output")
        self.on_block = on_block
        self._stats = AudioStats()
        self.buffer = PlayoutBuffer(capacity=max(2, buffer_frames) * AUDIO_FRAME_SAMPLES)
        self._latency = latency
        self._converter = MonoConverter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: Any = None

    @property
    def device_name(self) -> str:
        return devices.device_name(self.device_index)

    @property
    def stats(self) -> AudioStats:
        """A snapshot of the callback counters and the playout buffer's drops/underruns/trims."""
        s = self._stats
        return AudioStats(
            blocks=s.blocks,
            dropped=self.buffer.dropped,
            underruns=self.buffer.underruns,
            trimmed=self.buffer.trimmed,
            xruns=s.xruns,
            last_callback=s.last_callback,
        )

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stream = await _open_off_loop(self._open_stream)

    def _open_stream(self) -> Any:
        return _start_stream(
            "output", self.device_index, self.channels, self._latency, callback=self._callback
        )

    async def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await asyncio.to_thread(_close_quietly, stream)

    def handle(self, frame: Frame | Packet[Any]) -> None:
        if not isinstance(frame, AudioFrame):
            raise MediaError(f"SpeakerSink plays audio, got {type(frame).__name__}")
        self.buffer.write(self._converter.convert(frame))

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        samples = outdata[:, 0]
        self.buffer.read_into(samples)
        if self.channels > 1:  # a stereo-only device: the same signal on every channel
            outdata[:, 1:] = samples[:, None]
        stats = self._stats
        stats.blocks += 1
        stats.last_callback = now
        if status:
            stats.xruns += 1
        hook, loop = self.on_block, self._loop
        if hook is not None and loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(hook, samples.copy(), now)
