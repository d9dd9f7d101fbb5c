"""Issue 12's desktop figures: cold start, idle memory, memory per call, a video call's CPU.

1. Cold start: spawn ``python -m app.cli gui --print-ready`` (offscreen Qt, a fresh config
   directory each time) and time spawn -> the ready marker, printed from the first iteration of
   the running qasync loop after the window is shown. "Cold" drops the page cache before each
   run (``sync; echo 3 > /proc/sys/vm/drop_caches``, root only), as after a reboot; warm runs
   are timed too. Goal: cold <= 1.0 s.
2. Idle memory: VmRSS 5 s after the marker (window open, no call). Goal <= 150 MB.
3. Memory per call: ``gui --self-test-call --calls 10`` places 10 loopback calls in one
   process (both ends in that process) and prints VmRSS after each; the growth per call is the
   least-squares slope over calls 2..10 (call 1 pays one-time imports). Goal: ~0.
   ``--calls 30`` also shows whether it plateaus (allocator warm-up) or keeps climbing (a leak):
   RSS every 5 calls and the slope of each half. ``--memory-only`` runs just this figure.
4. A video call's CPU per side: two ``gui`` processes (640x480 at 30 fps: the test pattern,
   the camera when there is one) call each other through ``peercall signal`` on loopback; each
   side's CPU (utime+stime from /proc/<pid>/stat) over the held call, and the resolution and
   frame rate each side actually received.

Usage: ``flock -x /tmp/peercall-bench.lock .venv/bin/python bench/bench_ui_startup.py``
(``--runs 5 --no-drop-caches --hold 10``). Exit code 1 if a run failed.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = "peercall: window shown"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def env() -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONDONTWRITEBYTECODE": "1"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def gui(*extra: str, config: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "gui", "--config-dir", config, *extra]


def start_once(idle: float | None, *, cold: bool) -> tuple[float, float | None, int]:
    """(seconds spawn -> ready marker, RSS in MB after ``idle`` s or None, exit code)."""
    with tempfile.TemporaryDirectory(prefix="peercall-bench-") as config:
        stay = (idle or 0.0) + 1.0
        command = gui(
            "--print-ready", "--synthetic-media", "--quit-after", str(stay), config=config
        )
        if cold:
            drop_caches()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        ready = None
        for line in proc.stdout:
            if line.startswith(READY):
                ready = time.perf_counter() - t0
                break
        if ready is None:
            proc.wait(30)
            raise RuntimeError(f"no ready marker (exit code {proc.returncode})")
        rss = None
        if idle is not None:
            time.sleep(idle)
            rss = rss_mb(proc.pid)
        proc.stdout.read()
        return ready, rss, proc.wait(60)


def slope(values: list[float]) -> float:
    xs = list(range(len(values)))
    mx, my = statistics.fmean(xs), statistics.fmean(values)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / den


def memory_per_call(calls: int) -> tuple[list[float], int]:
    with tempfile.TemporaryDirectory(prefix="peercall-bench-") as config:
        proc = subprocess.run(
            gui("--self-test-call", "--calls", str(calls), config=config),
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=60 + 20 * calls,
            check=False,
        )
    rss = [float(m) for m in re.findall(r"rss after call \d+: ([\d.]+) MB", proc.stdout)]
    return rss, proc.returncode


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Side(threading.Thread):
    """One window process of the video call; records CPU between "connected" and the report."""

    def __init__(self, role: str, url: str, hold: float, config: str) -> None:
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(
            gui(
                "--bench-call",
                role,
                "--bench-url",
                url,
                "--bench-hold",
                str(hold),
                "--bench-video",
                config=config,
            ),
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.role = role
        self.cpu = 0.0
        self.wall = 0.0
        self.received = "none"
        self.code: int | None = None

    def run(self) -> None:
        assert self.proc.stdout is not None
        t0 = c0 = 0.0
        for line in self.proc.stdout:
            if line.startswith("peercall: bench connected"):
                time.sleep(1.0)  # past ICE/DTLS set-up: measure the steady call (the app
                # starts its frame count after the same second)
                t0, c0 = time.perf_counter(), cpu_seconds(self.proc.pid)
            elif line.startswith("peercall: bench video received"):
                self.wall = time.perf_counter() - t0
                self.cpu = cpu_seconds(self.proc.pid) - c0
                self.received = line.split("received", 1)[1].strip()
        self.code = self.proc.wait(60)


def video_call(hold: float) -> list[Side]:
    port = free_tcp_port()
    url = f"ws://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "signal", "--port", str(port)],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            callee = Side("wait", url, hold, a)
            callee.start()
            time.sleep(3.0)  # the callee waits in the room first
            caller = Side("call", url, hold, b)
            caller.start()
            for side in (caller, callee):
                side.join(hold + 90)
        return [caller, callee]
    finally:
        server.terminate()
        server.wait(10)


def memory_report(calls: int) -> bool:
    rss_calls, code = memory_per_call(calls)
    ok = code == 0 and len(rss_calls) == calls
    if len(rss_calls) >= 3:
        print(
            f"RSS after {len(rss_calls)} calls in one process: first {rss_calls[0]:.1f} MB,"
            f" last {rss_calls[-1]:.1f} MB, growth {slope(rss_calls[1:]):+.2f} MB/call"
            f" over calls 2..{len(rss_calls)} (goal: no growth; exit code {code})"
        )
        print("  per call: " + " ".join(f"{v:.1f}" for v in rss_calls))
        # Every 5th call and the slope of each half tell an allocator that warms up and then
        # plateaus apart from a leak, which keeps the second half's slope as steep as the first.
        print(
            "  every 5 calls: "
            + " ".join(f"#{n}={rss_calls[n - 1]:.1f}" for n in range(5, len(rss_calls) + 1, 5))
        )
        half = len(rss_calls) // 2
        if half >= 3:
            print(
                f"  growth calls 2..{half}: {slope(rss_calls[1:half]):+.3f} MB/call,"
                f" calls {half + 1}..{len(rss_calls)}: {slope(rss_calls[half:]):+.3f} MB/call"
            )
    else:
        print(f"RSS per call: the self-test failed (exit code {code})")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="starts to time, cold and warm")
    parser.add_argument("--no-drop-caches", action="store_true", help="skip the cold runs")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds before reading RSS")
    parser.add_argument("--calls", type=int, default=10, help="calls in one process")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds of video call")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="only the memory-per-call figure (skips the start timings and the video call)",
    )
    args = parser.parse_args()
    if args.calls < 1:
        parser.error(f"--calls must be at least 1, not {args.calls}")
    if args.memory_only:
        return 0 if memory_report(args.calls) else 1
    ok = True

    cold_runs = not args.no_drop_caches and os.geteuid() == 0
    if cold_runs:
        cold = [start_once(None, cold=True) for _ in range(args.runs)]
        times = [t for t, _, _ in cold]
        ok &= all(code == 0 for _, _, code in cold)
        print(
            f"cold start (page cache dropped) to usable window, {args.runs} runs:"
            f" p50 {statistics.median(times):.3f} s  max {max(times):.3f} s  (goal <= 1.0 s)"
        )
    else:
        print("cold start: skipped (needs root to drop the page cache)")
    start_once(None, cold=False)
    warm = [start_once(None, cold=False) for _ in range(args.runs)]
    times = [t for t, _, _ in warm]
    ok &= all(code == 0 for _, _, code in warm)
    print(
        f"warm start to usable window, {args.runs} runs: p50 {statistics.median(times):.3f} s"
        f"  max {max(times):.3f} s"
    )
    _ready, rss, code = start_once(args.idle, cold=False)
    ok &= code == 0
    print(f"idle RSS {args.idle:.0f} s after the window is shown: {rss:.1f} MB (goal <= 150 MB)")

    ok &= memory_report(args.calls)

    for side in video_call(args.hold):
        ok &= side.code == 0 and side.wall > 0
        share = 100 * side.cpu / side.wall if side.wall else float("nan")
        print(
            f"video call 640x480 at 30 fps, {side.role:>4} side: CPU {share:.0f} % of one core"
            f" over {side.wall:.1f} s; received {side.received} (exit code {side.code})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
