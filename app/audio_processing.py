"""Noise suppression and automatic gain for the microphone, via WebRTC's audio processing.

``webrtc-noise-gain`` wraps the noise suppressor, high-pass filter and AGC of WebRTC's audio
processing module; it takes 10 ms chunks of 16 kHz mono int16. Our microphone delivers 48 kHz
mono int16 blocks (20 ms), so :class:`AudioProcessing` decimates by 3 through a low-pass FIR,
processes the 16 kHz chunks, and interpolates back by 3 through the same filter. Speech sits
well below the 8 kHz band edge, so the band limit costs little. It does not save bandwidth:
aiortc's Opus encoder aims at 96 kb/s either way (bench/bench_audio_processing.py measures
the bitrate with and without it).

Both off is a bit-exact passthrough (the block is returned untouched) so the setting costs
nothing when unused. No Qt here: the UI builds one from the settings and hands it to
:class:`app.media.audio.MicrophoneTrack` as its ``process`` step.

Echo cancellation is not done here: it needs the speaker signal and the microphone on one
clock. PulseAudio ships WebRTC's canceller as ``module-echo-cancel``;
:func:`enable_system_echo_cancel` loads it and points this process's PulseAudio streams at
its source and sink (``PULSE_SOURCE``/``PULSE_SINK``, read by libpulse when a stream opens).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
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
    a block of the same length and dtype, delayed when processing is on: by the two filters'
    group delay (:attr:`delay_samples`), plus about 6 ms inside WebRTC's noise suppressor when
    that is on (bench/bench_audio_processing.py measures 7.3 ms in all).
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
        """The resampling's share of the added latency at 48 kHz: two linear-phase filters of
        (TAPS-1)/2 samples each (the noise suppressor's own delay comes on top)."""
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


# --- echo cancellation by the sound server ---------------------------------------------------

EC_SOURCE = "peercall_echo_cancel_source"
EC_SINK = "peercall_echo_cancel_sink"


@dataclass(frozen=True)
class SystemEchoCancel:
    """Our loaded ``module-echo-cancel``: its PulseAudio module index, source and sink."""

    module: int
    source: str = EC_SOURCE
    sink: str = EC_SINK


def _pactl(*args: str, timeout: float = 5.0) -> str:
    """Run pactl; MediaError with pactl's own one-line reason when it fails."""
    exe = shutil.which("pactl")
    if exe is None:
        raise MediaError(
            "echo cancellation needs PulseAudio (or PipeWire's pulse server) and pactl"
        )
    try:
        done = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise MediaError(
            "echo cancellation: pactl did not answer (is the sound server up?)"
        ) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise MediaError(f"echo cancellation: pactl {args[0]}: {reason}")
    return done.stdout


def find_system_echo_cancel() -> SystemEchoCancel | None:
    """Our module if it is loaded (by this or an earlier run), else None."""
    for line in _pactl("list", "short", "modules").splitlines():
        fields = line.split("\t")
        if (
            len(fields) >= 3
            and fields[1] == "module-echo-cancel"
            and f"source_name={EC_SOURCE}" in fields[2]
        ):
            return SystemEchoCancel(int(fields[0]))
    return None


def enable_system_echo_cancel(
    source_master: str | None = None, sink_master: str | None = None
) -> SystemEchoCancel:
    """Load PulseAudio's WebRTC echo canceller (once) and use it for streams opened from now on.

    The masters default to the sound server's default source and sink. Only streams that go
    through PulseAudio (the ``pulse``/``default`` devices) are affected; a raw ``hw:`` device
    bypasses it. Raises MediaError (one line) if the server refuses.
    """
    loaded = find_system_echo_cancel()
    if loaded is None:
        args = [
            "load-module",
            "module-echo-cancel",
            "aec_method=webrtc",
            f"source_name={EC_SOURCE}",
            f"sink_name={EC_SINK}",
            "rate=48000",
            "channels=1",
        ]
        if source_master:
            args.append(f"source_master={source_master}")
        if sink_master:
            args.append(f"sink_master={sink_master}")
        loaded = SystemEchoCancel(int(_pactl(*args).strip()))
        logger.info("loaded module-echo-cancel (webrtc) as module %d", loaded.module)
    os.environ["PULSE_SOURCE"] = loaded.source
    os.environ["PULSE_SINK"] = loaded.sink
    return loaded


def disable_system_echo_cancel() -> None:
    """Stop using (and unload) our echo canceller; a no-op unless we were using it."""
    if os.environ.get("PULSE_SOURCE") != EC_SOURCE:
        return
    os.environ.pop("PULSE_SOURCE", None)
    if os.environ.get("PULSE_SINK") == EC_SINK:
        os.environ.pop("PULSE_SINK", None)
    loaded = find_system_echo_cancel()
    if loaded is not None:
        _pactl("unload-module", str(loaded.module))
