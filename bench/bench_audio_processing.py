"""What noise suppression / auto gain (app.audio_processing) cost: CPU per second of audio,
added latency, how much stationary noise it removes, and what that does to the Opus bitrate.

Run: ``.venv/bin/python bench/bench_audio_processing.py [--seconds 20]``. Prints one line per
setting. Latency is measured, not computed: the lag that maximises the cross-correlation of a
loud chirp-burst train (in) with the processed output (out), on top of the 20 ms block that the
microphone delivers anyway.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import numpy.typing as npt

from app.audio_processing import AudioProcessing
from app.media.base import AUDIO_FRAME_SAMPLES, AUDIO_RATE


def noisy_speechlike(seconds: float, seed: int = 7) -> npt.NDArray[np.int16]:
    """Stationary white noise (-27 dBFS rms) plus 300 ms tone bursts every second."""
    rng = np.random.default_rng(seed)
    n = int(seconds * AUDIO_RATE)
    t = np.arange(n) / AUDIO_RATE
    bursts = ((t % 1.0) > 0.5) & ((t % 1.0) < 0.8)
    signal = np.where(
        bursts, 8000 * np.sin(2 * np.pi * 440 * t) + 3000 * np.sin(2 * np.pi * 1300 * t), 0
    )
    noise = rng.normal(0, 1500, n)
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


def run(
    processing: AudioProcessing, x: npt.NDArray[np.int16]
) -> tuple[npt.NDArray[np.int16], float]:
    blocks = [x[i : i + AUDIO_FRAME_SAMPLES] for i in range(0, len(x), AUDIO_FRAME_SAMPLES)]
    out = []
    cpu0 = time.process_time()
    for block in blocks:
        out.append(processing(block))
    cpu = time.process_time() - cpu0
    return np.concatenate(out), cpu


def opus_kbps(x: npt.NDArray[np.int16]) -> float:
    """Bitrate aiortc's own Opus encoder (96 kb/s target, libopus VBR) spends on ``x``."""
    from aiortc.codecs.opus import OpusEncoder

    from app.media.convert import samples_to_frame

    encoder = OpusEncoder()
    total = 0
    for i in range(0, len(x) - AUDIO_FRAME_SAMPLES + 1, AUDIO_FRAME_SAMPLES):
        payloads, _ = encoder.encode(samples_to_frame(x[i : i + AUDIO_FRAME_SAMPLES], i))
        total += sum(len(p) for p in payloads)
    return total * 8 / (len(x) / AUDIO_RATE) / 1000


def lag_of(x: npt.NDArray[np.int16], y: npt.NDArray[np.int16], max_lag: int = 4800) -> int:
    """The delay (samples) of ``y`` against ``x``: the peak of their cross-correlation
    (computed by FFT) over lags 0..max_lag."""
    n = 1 << (len(x) + max_lag).bit_length()
    spectrum = np.fft.rfft(y.astype(np.float64), n) * np.conj(np.fft.rfft(x.astype(np.float64), n))
    correlation = np.fft.irfft(spectrum, n)[: max_lag + 1]
    return int(np.argmax(correlation))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    x = noisy_speechlike(args.seconds)
    t = np.arange(len(x)) / AUDIO_RATE
    quiet = ((t % 1.0) < 0.45) & (t > 2.0)  # noise only, after the suppressor has adapted
    # A chirp (200 Hz -> 3.5 kHz over each 300 ms burst): broadband, so one clear peak.
    phase = t % 1.0 - 0.5
    sweep = np.sin(2 * np.pi * (200 * phase + (3300 / 0.6) * phase**2))
    clean = np.where((phase > 0) & (phase < 0.3), 20000 * sweep, 0).astype(np.int16)
    print(f"{args.seconds:g} s of 48 kHz mono in 20 ms blocks")
    for ns, agc in ((0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (0, 3), (2, 3)):
        processing = AudioProcessing(ns, agc)
        out, cpu = run(processing, x)
        rms_in = float(x[quiet].astype(np.float64).std())
        rms_out = float(out[quiet].astype(np.float64).std())
        reduction = 20 * np.log10(rms_in / max(rms_out, 1e-9))
        lag = lag_of(clean, run(AudioProcessing(ns, agc), clean)[0])
        print(
            f"ns={ns} agc={agc}: CPU {cpu / args.seconds * 1000:.1f} ms per s of audio "
            f"({cpu / args.seconds * 100:.2f}% of one core), added latency {lag / 48:.2f} ms "
            f"({lag} samples), stationary noise {reduction:+.1f} dB quieter, "
            f"Opus {opus_kbps(out):.1f} kb/s"
        )


if __name__ == "__main__":
    main()
