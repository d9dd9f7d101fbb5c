"""Audio device path: latency measured on the audio itself, and CPU cost of capture + playout.

Runs a private PulseAudio server (tests/audio.py), plays 60 ms 1 kHz bursts through
``SpeakerSink`` into the null sink and records its monitor with ``MicrophoneTrack``; bursts are
found by tone detection in the blocks the PortAudio callbacks saw (``on_block``), not from
timestamps. Figures:

- source -> playout callback: from the track releasing a burst to the speaker callback handing
  it to PortAudio (our consumer task + playout buffer: what the engine adds on the receive side);
- playout callback -> capture callback: PortAudio + PulseAudio out and back in (device buffers,
  the part a real sound card replaces);
- CPU: this process (mic + speaker streams, callbacks, hand-offs) and the PulseAudio daemon,
  in % of one core, while a tone plays and the microphone is read like a call would.

Usage: ``.venv/bin/python bench/bench_media_audio.py [--seconds 8]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.audio

from app.media.analysis import BlockRecorder
from app.media.audio import MicrophoneTrack, SpeakerSink
from app.media.synthetic import BurstTrack, ToneTrack
from tests.audio import VirtualAudio, virtual_audio_env

FREQ = 1000.0
THRESHOLD = 0.005  # a 0.5-amplitude burst has power 0.125; silence on the null sink is 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values_s: list[float]) -> None:
    ms = [v * 1000 for v in values_s]
    if not ms:
        print(f"  {name:<36} no samples")
        return
    print(
        f"  {name:<36} p50 {statistics.median(ms):6.1f} ms   p95 {pct(ms, 0.95):6.1f} ms   "
        f"min {min(ms):6.1f}   max {max(ms):6.1f}   (n={len(ms)})"
    )


def pair(earlier: list[float], later: list[float], limit: float = 0.5) -> list[float]:
    """For each time in ``earlier``, the delay to the first time in ``later`` after it."""
    delays = []
    for t in earlier:
        after = [u - t for u in later if 0 <= u - t <= limit]
        if after:
            delays.append(min(after))
    return delays


async def drain(mic: MicrophoneTrack, until: float) -> None:
    while time.monotonic() < until:
        await mic.recv()


async def latency(seconds: float) -> None:
    played, captured = BlockRecorder(), BlockRecorder()
    source = BurstTrack(FREQ, 0.5, burst_ms=60, interval=0.25)
    speaker = SpeakerSink("pulse", on_block=played)
    mic = MicrophoneTrack("pulse", on_block=captured)
    await mic.start()
    await speaker.start(source)
    try:
        await drain(mic, time.monotonic() + seconds)
    finally:
        await speaker.stop()
        mic.stop()
    warmup = source.burst_times[0] + 1.0 if source.burst_times else 0.0
    released = [t for t in source.burst_times if t >= warmup]
    out = played.onset_times(FREQ, THRESHOLD)
    back = captured.onset_times(FREQ, THRESHOLD)
    print(f"latency ({len(released)} bursts after a 1 s warm-up):")
    summary("source -> playout callback", pair(released, out))
    summary("playout callback -> capture callback", pair([t for t in out if t >= warmup], back))
    summary("source -> capture callback", pair(released, back))
    s = speaker.stats
    print(
        f"  speaker: {s.blocks} callbacks, {s.underruns} underruns, {s.dropped} samples dropped, "
        f"{s.trimmed} trimmed; mic: {mic.stats.blocks} blocks, {mic.stats.dropped} dropped"
    )


def daemon_cpu_seconds(server: VirtualAudio) -> float:
    proc = server._proc
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu(server: VirtualAudio, seconds: float) -> None:
    speaker = SpeakerSink("pulse")
    mic = MicrophoneTrack("pulse")
    await mic.start()
    await speaker.start(ToneTrack(440, 0.3))
    await drain(mic, time.monotonic() + 1.0)  # settle
    wall0, cpu0, d0 = time.monotonic(), time.process_time(), daemon_cpu_seconds(server)
    try:
        await drain(mic, wall0 + seconds)
    finally:
        wall = time.monotonic() - wall0
        used, daemon = time.process_time() - cpu0, daemon_cpu_seconds(server) - d0
        await speaker.stop()
        mic.stop()
    print(f"CPU over {wall:.1f} s with mic + speaker streaming (2 shared cores, noisy):")
    print(f"  peercall process (both streams)      {100 * used / wall:5.1f} % of one core")
    print(f"  pulseaudio daemon                    {100 * daemon / wall:5.1f} % of one core")


async def main(seconds: float) -> None:
    with virtual_audio_env() as server:
        await latency(seconds)
        await cpu(server, min(seconds, 5.0))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the latency run")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.seconds))
