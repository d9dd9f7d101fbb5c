"""Issue 5's desktop figures: cold start to a usable window, idle memory, clean exit after a call.

1. Cold start: spawn ``python -m app.cli gui --print-ready`` (offscreen Qt, a fresh temporary
   config directory each time) and time spawn -> the ready marker, which the app prints from
   the first iteration of its running qasync loop after the window is shown. Target <= 1.5 s.
2. Idle memory: VmRSS from /proc/<pid>/status 5 s after the marker (window open, no call).
   Target <= 200 MB.
3. Clean exit: ``peercall gui --self-test-call`` (a loopback call through the embedded
   signaling server, chat, hang up, quit) K times; every exit code must be 0.

Usage: ``.venv/bin/python bench/bench_ui_startup.py [--runs 10] [--calls 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = "peercall: window shown"


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


def start_once(idle: float | None) -> tuple[float, float | None, int]:
    """(seconds spawn -> ready marker, RSS in MB after ``idle`` s or None, exit code)."""
    with tempfile.TemporaryDirectory(prefix="peercall-bench-") as config:
        stay = (idle or 0.0) + 1.0
        command = [sys.executable, "-m", "app.cli", "gui", "--print-ready", "--synthetic-media"]
        command += ["--config-dir", config, "--quit-after", str(stay)]
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
        code = proc.wait(60)
        return ready, rss, code


def self_test_once() -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="peercall-bench-") as config:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", "gui", "--self-test-call", "--config-dir", config],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return proc.returncode, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="cold starts to time")
    parser.add_argument("--calls", type=int, default=5, help="--self-test-call runs")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds before reading RSS")
    args = parser.parse_args()

    start_once(None)  # warm the OS file cache once: "cold" means a new process, not a cold disk
    times, codes = [], []
    for _ in range(args.runs):
        ready, _rss, code = start_once(None)
        times.append(ready)
        codes.append(code)
    print(
        f"cold start to usable window ({args.runs} runs): p50 {statistics.median(times):.3f} s"
        f"  p90 {pct(times, 0.9):.3f} s  max {max(times):.3f} s  (target <= 1.5 s)"
    )
    print(f"  exit codes after --quit-after: {sorted(set(codes))}")
    _ready, rss, code = start_once(args.idle)
    print(f"idle RSS {args.idle:.0f} s after the window is shown: {rss:.1f} MB (target <= 200 MB)")

    results = [self_test_once() for _ in range(args.calls)]
    ok = sum(1 for code, _ in results if code == 0)
    durations = [d for _, d in results]
    print(
        f"clean exit after a loopback call: {ok}/{args.calls} exit code 0"
        f"  (each run {min(durations):.1f}-{max(durations):.1f} s incl. start-up and call)"
    )
    return 0 if ok == args.calls and set(codes) == {0} and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
