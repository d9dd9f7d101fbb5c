"""Issue 2's call figures: set-up time, one-way audio latency (steady and after loss), CPU.

1. Set-up on loopback, from ``dial`` (offer created) until both sides are CONNECTED, over
   in-process signaling: host candidates only, then with an unreachable STUN server configured.
   This is the **engine only**: one process, an in-memory signaling channel, after a warm-up
   call (imports done, codec tables built). Launch -> connected for two real processes through
   ``peercall signal`` is bench/bench_launch.py's figure.
2. One-way audio latency from the source releasing a block to the speaker's PortAudio callback
   taking it (a private PulseAudio null sink; see tests/audio.py), found by detecting 60 ms tone
   bursts in the audio on both ends (not from timestamps). A 5 % loss burst of 2 s is then
   applied to the caller's outgoing RTP; we report the settled latency after the burst against
   the steady one before it, and how long after the burst every later burst is back within
   10 ms of the steady median, for PeerCall's jitter buffer and, in the same run, aiortc's own,
   and PeerCall with the playout trimmer it had before issue 15's fix (the lowest fill of a 1 s
   window decided, trimmed at once). Per run it also prints the speaker callbacks' pattern
   (share of back-to-back callbacks, as after an ALSA xrun) and the playout fill before reads.
   ``--stall-ms N`` stalls the speaker callback once for N ms as the loss burst starts, to
   provoke the xrun a loaded machine gets; ``--pause-server-ms N`` stops the PulseAudio
   server instead (SIGSTOP), after which PulseAudio raises the stream's device latency.
3. Capture-to-playout: the caller's audio source is a real ``MicrophoneTrack`` on a second
   virtual sound card pair (a null sink ``vmicfeed`` whose monitor is the default source), fed
   with 60 ms tone bursts by ``paplay``; the callee plays on ``vspeaker``. We time each burst
   from the microphone's PortAudio callback that captured its onset to the speaker's PortAudio
   callback that took it: capture, Opus, RTP, jitter buffer, decode, playout buffer. The mic
   never hears the speaker (different devices), so each onset is the injected one. The same
   2 s 5 % loss burst is applied midway: steady, during, 0-1 s after and from 2 s after.
4. CPU of one side of an audio-only call: two ``peercall call`` processes (tone out, Opus both
   ways, WAV sink), CPU seconds per wall second during the call, from /proc.

Usage: ``flock -x /tmp/peercall-bench.lock .venv/bin/python bench/bench_call.py [--calls 20]
[--seconds 14] [--only latency --only capture] [--stall-ms 150]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import rtcfixes
from app.call.session import CallOptions, CallSession
from app.iceservers import IceServer
from app.media.analysis import BlockRecorder
from app.media.audio import PlayoutBuffer, SpeakerSink
from app.media.synthetic import BurstTrack
from signaling.memory import memory_pair
from tests.audio import virtual_audio_env

ROOT = Path(__file__).resolve().parent.parent
FREQ = 1000.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def connect(caller: CallSession, callee: CallSession) -> None:
    """``caller`` dials ``callee`` over in-memory signaling; returns once both are connected."""
    a, b = memory_pair()

    async def answer() -> None:
        await callee.answer(b, await callee.wait_for_offer(b))

    await asyncio.gather(caller.dial(a), answer())


async def one_setup(options: CallOptions) -> float:
    caller, callee = CallSession(options), CallSession(options)
    start = time.perf_counter()
    await connect(caller, callee)
    elapsed = time.perf_counter() - start
    await caller.hangup()
    await callee.hangup()
    return elapsed


async def bench_setup(calls: int) -> None:
    print(
        "== call set-up, ENGINE ONLY: one process, in-memory signaling, after a warm-up call"
        " (dial -> both CONNECTED, loopback)"
    )
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))  # bound, never answers: a STUN server behind a firewall
    dead_uri = f"stun:127.0.0.1:{dead.getsockname()[1]}"
    cases = {
        "host candidates": CallOptions(loopback_candidates=True),
        f"unreachable STUN ({dead_uri})": CallOptions(
            loopback_candidates=True, ice_servers=(IceServer((dead_uri,)),)
        ),
    }
    for name, options in cases.items():
        await one_setup(options)  # warm-up: imports, codec tables
        times = [await one_setup(options) for _ in range(calls)]
        ms = [t * 1000 for t in times]
        print(
            f"  {name:<44} p50 {statistics.median(ms):6.1f} ms  p90 {pct(ms, 0.9):6.1f} ms  "
            f"max {max(ms):6.1f} ms  (n={calls}; targets: p50 <= 150 ms host, <= 1000 ms dead STUN)"
        )
    dead.close()


def lossy(session: CallSession, loss: dict[str, float]) -> None:
    """Drop a fraction ``loss['p']`` of the session's outgoing RTP (first byte 128-191)."""
    assert session._pc is not None
    for conn in rtcfixes.ice_connections(session._pc):
        send = conn.sendto

        async def sendto(data: bytes, component: int, send: Any = send) -> None:
            if data and 128 <= data[0] <= 191 and random.random() < loss["p"]:
                return
            await send(data, component)

        conn.sendto = sendto  # type: ignore[method-assign]


def queue_depths(session: CallSession, sink: SpeakerSink) -> tuple[float, float, float]:
    """Where received audio waits, in ms: jitter buffer, decoded-frame queue, playout buffer."""
    jitter = queue = 0.0
    if session._pc is not None:
        for transceiver in session._pc.getTransceivers():
            if transceiver.kind != "audio":
                continue
            receiver = transceiver.receiver
            buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
            jitter += 20.0 * sum(1 for p in buffer._packets if p is not None)
            track = receiver.track
            if track is not None and hasattr(track, "_queue"):
                queue += 20.0 * track._queue.qsize()
    return jitter, queue, 1000.0 * len(sink.buffer) / 48000


def watch_callbacks(sink: SpeakerSink, stalls: list[float]) -> list[tuple[float, int, float]]:
    """Record (monotonic time, playout buffer level before the read, device latency) of every
    speaker callback. The device latency is PortAudio's ``outputBufferDacTime - currentTime``:
    how long the block waits in the sound server's buffer after the callback, which the
    tone-burst figures (timed at the callback) do not include.

    ``stalls`` (seconds) is a fault injection: the next callback sleeps for each, in order, as a
    loaded machine's PortAudio thread does, which makes the ALSA plugin under-run (an xrun)."""
    seen: list[tuple[float, int, float]] = []
    callback = sink._callback

    def watched(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        if stalls:
            time.sleep(stalls.pop(0))
        device = time_info.outputBufferDacTime - time_info.currentTime
        seen.append((time.monotonic(), len(sink.buffer), device))
        callback(outdata, frames, time_info, status)

    sink._callback = watched  # type: ignore[method-assign]
    return seen


def callback_summary(seen: list[tuple[float, int, float]], start: float, end: float) -> str:
    """Speaker callback pattern, playout fill and device latency between two monotonic times."""
    part = [(t, level) for t, level, _ in seen if start <= t < end]
    device = [1000 * d for t, _, d in seen if start <= t < end and 0 <= d < 5]
    if len(part) < 3:
        return "-"
    gaps = [1000 * (b[0] - a[0]) for a, b in itertools.pairwise(part)]
    levels = [1000 * level / 48000 for _, level in part]
    paired = sum(1 for g in gaps if g < 5.0) / len(gaps)
    return (
        f"callback gap p10 {pct(gaps, 0.1):4.1f} ms, {100 * paired:3.0f} % back-to-back; "
        f"fill before read mean {statistics.fmean(levels):4.1f} ms, min {min(levels):4.1f}; "
        + (f"device latency mean {statistics.fmean(device):5.1f} ms" if device else "")
    )


async def latency_run(
    stock_buffer: bool,
    old_trimmer: bool,
    seconds: float,
    stall: float,
    pause: float = 0.0,
    server_pid: int | None = None,
) -> tuple[
    list[tuple[float, float]],
    float,
    list[tuple[float, tuple[float, float, float]]],
    list[tuple[float, int, float]],
    SpeakerSink,
]:
    """(burst time, latency) pairs, the time the loss burst ended (monotonic), samples of the
    receive-side queue depths over time, the speaker callbacks, and the sink itself."""
    source = BurstTrack(FREQ, burst_ms=60, interval=0.2)
    played = BlockRecorder()
    sink = SpeakerSink("pulse", on_block=played)
    stalls: list[float] = []
    callbacks = watch_callbacks(sink, stalls)
    if old_trimmer:
        # The trimmer before issue 15's fix: the lowest fill of a 1 s window decides, all at once.
        sink.buffer = PlayoutBuffer(
            capacity=sink.buffer.capacity, window=50, spare=0, max_step=sink.buffer.capacity
        )
    opts = CallOptions(loopback_candidates=True)
    caller, callee = CallSession(opts, audio_source=source), CallSession(opts, audio_sink=sink)
    depths: list[tuple[float, tuple[float, float, float]]] = []
    sampler: asyncio.Future[None] | None = None
    saved = rtcfixes.install_audio_jitter_buffers
    if stock_buffer:
        rtcfixes.install_audio_jitter_buffers = lambda pc: 0
    try:
        await connect(caller, callee)
        loss = {"p": 0.0}
        lossy(caller, loss)

        async def sample() -> None:
            while True:
                depths.append((time.monotonic(), queue_depths(callee, sink)))
                await asyncio.sleep(0.005)

        sampler = asyncio.ensure_future(sample())
        steady = seconds * 0.4
        await asyncio.sleep(steady)
        loss["p"] = 0.05
        if stall:
            stalls.append(stall)
        if pause and server_pid is not None:
            # The sound server itself stops (a loaded machine does not schedule it): the
            # stream under-runs on the server's side, as the ALSA plugin's xruns do.
            os.kill(server_pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(pause)
            finally:
                os.kill(server_pid, signal.SIGCONT)
        await asyncio.sleep(2.0 - pause)
        loss["p"] = 0.0
        loss_end = time.monotonic()
        await asyncio.sleep(seconds - steady - 2.0)
    finally:
        if sampler is not None:
            sampler.cancel()
        rtcfixes.install_audio_jitter_buffers = saved
        await caller.hangup()
        await callee.hangup()
    onsets = played.onset_times(FREQ)
    pairs = []
    for t in source.burst_times:
        later = [u - t for u in onsets if 0 <= u - t <= 1.0]
        if later:
            pairs.append((t, min(later)))
    return pairs, loss_end, depths, callbacks, sink


async def bench_latency(seconds: float, stall: float, pause: float = 0.0) -> None:
    print(
        "== one-way audio latency, source block -> speaker callback (tone bursts, loopback)"
        + (f"; speaker callback stalled {1000 * stall:.0f} ms at the loss burst" if stall else "")
        + (f"; sound server paused {1000 * pause:.0f} ms at the loss burst" if pause else "")
    )
    with virtual_audio_env() as server:
        pid = server._proc.pid if server._proc is not None else None
        runs = (
            ("PeerCall, old trimmer", False, True),
            ("PeerCall", False, False),
            ("aiortc stock jitter buf", True, False),
        )
        for name, stock, old in runs:
            pairs, loss_end, depths, callbacks, sink = await latency_run(
                stock, old, seconds, stall, pause, pid
            )
            if not pairs:
                print(f"  {name:<24} no bursts detected")
                continue
            start = pairs[0][0]
            steady = [lat * 1000 for t, lat in pairs if t < loss_end - 2.0 - 0.2 and t > start + 1]
            after = [(t - loss_end, lat * 1000) for t, lat in pairs if t >= loss_end]
            if not steady or not after:
                print(f"  {name:<24} too few bursts (steady {len(steady)}, after {len(after)})")
                continue
            base = statistics.median(steady)
            # Back to steady when every burst from then on is within 10 ms of the steady median.
            recovered = next(
                (
                    dt
                    for i, (dt, _) in enumerate(after)
                    if all(v <= base + 10 for _, v in after[i:])
                ),
                None,
            )
            settled = [v for dt, v in after if dt >= 2.0]
            just = [v for dt, v in after if dt < 1.0]
            tail = [v for _, v in after[-5:]]
            print(
                f"  {name:<24} steady p50 {base:5.1f} ms (p90 {pct(steady, 0.9):5.1f}, "
                f"n={len(steady)}); 0-1 s after the 5 % loss burst p50 "
                + (f"{statistics.median(just):5.1f} ms" if just else "   -    ")
                + "; from 2 s after p50 "
                + (f"{statistics.median(settled):5.1f} ms" if settled else "   -    ")
                + f"; last bursts {', '.join(f'{v:.0f}' for v in tail)} ms; "
                + (
                    f"back within 10 ms of steady {max(0.0, recovered):.1f} s after the burst"
                    if recovered is not None
                    else "never back within 10 ms of steady"
                )
            )
            before = [d for t, d in depths if start + 1 < t < loss_end - 2.2]
            later = [d for t, d in depths if t >= loss_end + 2.0]
            if before and later:
                names = ("jitter buffer", "decoded queue", "playout buffer")
                print(
                    "    mean receive-side queues before -> from 2 s after the burst: "
                    + ", ".join(
                        f"{n} {statistics.fmean(d[i] for d in before):.1f} -> "
                        f"{statistics.fmean(d[i] for d in later):.1f} ms"
                        for i, n in enumerate(names)
                    )
                )
            stats = sink.stats
            print(
                f"    speaker before: {callback_summary(callbacks, start + 1, loss_end - 2.2)}\n"
                f"    speaker from 2 s after: {callback_summary(callbacks, loss_end + 2, 1e12)}\n"
                f"    speaker totals: {stats.xruns} xruns, {stats.underruns} underruns, "
                f"{1000 * stats.trimmed / 48000:.0f} ms trimmed, {stats.dropped} samples dropped"
            )
    print("  (targets: steady p50 <= 60 ms; back to steady within 2 s after the loss burst)")


def burst_wav(path: Path, seconds: float, interval: float = 0.25, burst_ms: float = 60) -> None:
    """A 48 kHz mono WAV of 1 kHz bursts (amplitude 0.5) every ``interval`` s."""
    import wave

    import numpy as np

    rate = 48000
    t = np.arange(int(seconds * rate)) / rate
    on = (t % interval) < burst_ms / 1000
    samples = (on * 0.5 * np.sin(2 * np.pi * FREQ * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())


def bench_capture(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="peercall-bench-") as tmp:
        wav = Path(tmp) / "bursts.wav"
        burst_wav(wav, seconds)
        asyncio.run(capture_run(wav, seconds))


async def capture_run(wav: Path, seconds: float) -> None:
    print(
        "== capture-to-playout: mic PortAudio callback -> speaker PortAudio callback, through a"
        " call (in-process signaling, loopback; second virtual source for the mic)"
    )
    from app.media.audio import MicrophoneTrack

    with virtual_audio_env() as server:
        server.pactl(
            "load-module",
            "module-null-sink",
            "sink_name=vmicfeed",
            "rate=48000",
            "channels=1",
            "norewinds=1",
        )
        server.pactl("set-default-source", "vmicfeed.monitor")
        captured, played = BlockRecorder(), BlockRecorder()
        mic = MicrophoneTrack("pulse", on_block=captured)
        sink = SpeakerSink("pulse", on_block=played)
        opts = CallOptions(loopback_candidates=True)
        caller = CallSession(opts, audio_source=mic)
        callee = CallSession(opts, audio_sink=sink)
        feeder: asyncio.subprocess.Process | None = None
        try:
            await connect(caller, callee)
            loss = {"p": 0.0}
            lossy(caller, loss)
            feeder = await asyncio.create_subprocess_exec(
                "paplay",
                "--device=vmicfeed",
                str(wav),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # Steady, then the same 5 % loss burst of 2 s as the latency part, then the rest.
            steady = max(2.0, (seconds - 2.0) * 0.45)
            await asyncio.sleep(steady)
            loss_start = time.monotonic()
            loss["p"] = 0.05
            await asyncio.sleep(2.0)
            loss["p"] = 0.0
            loss_end = time.monotonic()
            await asyncio.sleep(max(0.5, seconds - steady - 2.0 + 0.5))
        finally:
            if feeder is not None:
                with contextlib.suppress(ProcessLookupError):
                    feeder.terminate()
                await feeder.wait()
            await caller.hangup()
            await callee.hangup()
    onsets_in = captured.onset_times(FREQ)
    onsets_out = played.onset_times(FREQ)
    if not onsets_in:
        print("  no bursts captured by the microphone")
        return
    warm = onsets_in[0] + 1.0
    delays: list[tuple[float, float]] = []  # (capture time, ms)
    for t in onsets_in:
        later = [u - t for u in onsets_out if 0 <= u - t <= 0.5]
        if t >= warm and later:
            delays.append((t, 1000 * min(later)))
    parts = {
        "steady": [d for t, d in delays if t < loss_start],
        "during the 5 % loss burst": [d for t, d in delays if loss_start <= t < loss_end],
        "0-1 s after it": [d for t, d in delays if loss_end <= t < loss_end + 1.0],
        "from 2 s after it": [d for t, d in delays if t >= loss_end + 2.0],
    }
    for name, values in parts.items():
        if not values:
            print(f"  {name:<26} no bursts detected at the speaker")
            continue
        print(
            f"  {name:<26} capture-to-playout p50 {statistics.median(values):6.1f} ms  p90 "
            f"{pct(values, 0.9):6.1f} ms  min {min(values):5.1f}  max {max(values):5.1f}  "
            f"(n={len(values)})"
        )
    print(
        f"  ({len(delays)} of {len(onsets_in)} captured bursts heard, after a 1 s warm-up;"
        " goal: back to steady within 2 s after the burst)"
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_cpu(seconds: float) -> None:
    print("== CPU of one side of an audio-only call (two peercall processes, Opus both ways)")
    tmp = Path(tempfile.mkdtemp(prefix="peercall-bench-"))
    base = [sys.executable, "-m", "app.cli", "call", "--loopback", "--duration", str(seconds)]
    procs = [
        subprocess.Popen(
            [*base, *extra, "--send-tone", "440", "--record", str(tmp / f"{i}.wav")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, extra in enumerate(([], ["--answer"]))
    ]
    a, b = procs
    assert a.stdin
    assert a.stdout
    assert b.stdin
    assert b.stdout
    assert a.stderr
    assert b.stderr
    offer = next(line for line in a.stdout if line.startswith("peercall1:"))
    b.stdin.write(offer)
    b.stdin.flush()
    answer = next(line for line in b.stdout if line.startswith("peercall1:"))
    a.stdin.write(answer)
    a.stdin.flush()
    connected: dict[int, float] = {}

    def watch(proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "call connected" in line:
                connected[proc.pid] = cpu_seconds(proc.pid)
                time.sleep(seconds - 1.0)
                connected[-proc.pid] = cpu_seconds(proc.pid)
                connected[proc.pid * 10] = seconds - 1.0
            if "call ended" in line:
                break

    threads = [threading.Thread(target=watch, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    for name, p in (("caller", a), ("callee", b)):
        p.wait(30)
        if p.pid in connected and -p.pid in connected:
            used = connected[-p.pid] - connected[p.pid]
            share = 100 * used / connected[p.pid * 10]
            print(f"  {name:<8} {share:5.1f} % of one core during the call (target <= 10 %)")
        else:
            print(f"  {name:<8} did not connect (exit {p.returncode})")
        for pipe in (p.stdin, p.stdout, p.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=14.0)
    parser.add_argument(
        "--only",
        choices=("setup", "latency", "capture", "cpu"),
        action="append",
        help="run only these parts (repeatable; default: all)",
    )
    parser.add_argument(
        "--stall-ms",
        type=float,
        default=0.0,
        help="latency part: stall the speaker callback this long once when the loss burst starts"
        " (an xrun, as on a loaded machine)",
    )
    parser.add_argument(
        "--pause-server-ms",
        type=float,
        default=0.0,
        help="latency part: SIGSTOP the private PulseAudio server this long when the loss burst"
        " starts (a server-side underrun)",
    )
    args = parser.parse_args()
    parts = set(args.only or ("setup", "latency", "capture", "cpu"))
    if "setup" in parts:
        asyncio.run(bench_setup(args.calls))
    if "latency" in parts:
        asyncio.run(bench_latency(args.seconds, args.stall_ms / 1000, args.pause_server_ms / 1000))
    if "capture" in parts:
        bench_capture(args.seconds * 0.6)
    if "cpu" in parts:
        bench_cpu(10.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
