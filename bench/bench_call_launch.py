"""Launch to connected: two real ``peercall call`` processes through ``peercall signal`` on
loopback, side by side with a bare two-process aiortc script (bench/bare_aiortc_call.py) on
the same server, in one run (issue 15: goal <= 1.2x the bare script).

Both are timed from launching the two processes until both have reported "connected" (first
RTP arriving, PeerCall's meaning; the bare script waits for its first decoded audio frame).
Rounds alternate which kind goes first. Also prints what importing the call path costs.

Usage: ``.venv/bin/python bench/bench_call_launch.py [--rounds 10]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [PY, "-m", "app.cli", "signal", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if line.startswith("listening on "):
            url = line.split()[-1]
        if line.startswith("ready"):
            return proc, url
    raise RuntimeError("peercall signal did not start")


def when_line(proc: subprocess.Popen[str], stream: str, marker: str, out: list[float]) -> None:
    pipe = proc.stderr if stream == "stderr" else proc.stdout
    assert pipe is not None
    for line in pipe:
        if marker in line and not out:
            out.append(time.perf_counter())


def one_call(kind: str, url: str, room: str) -> float | None:
    """Seconds from launching both processes until both said connected (None: no connect)."""
    if kind == "peercall":
        base = [PY, "-m", "app.cli", "call", "--server", url, "--room", room, "--secret", "b",
                "--loopback", "--no-devices", "--no-history", "--duration", "0.5"]  # fmt: skip
        cmds = [[*base, "--answer"], base]
        stream, marker = "stderr", "call connected"
    else:
        script = str(ROOT / "bench" / "bare_aiortc_call.py")
        cmds = [[PY, script, url, room, "callee"], [PY, script, url, room, "caller"]]
        stream, marker = "stdout", "connected"
    start = time.perf_counter()
    env = {"PYTHONPATH": str(ROOT), **_env()}
    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for cmd in cmds
    ]
    seen: list[list[float]] = [[], []]
    readers = [
        threading.Thread(target=when_line, args=(p, stream, marker, s), daemon=True)
        for p, s in zip(procs, seen, strict=True)
    ]
    for reader in readers:
        reader.start()
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for reader in readers:
        reader.join(5)
    if not all(seen):
        return None
    return max(s[0] for s in seen) - start


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def import_cost(module: str) -> float:
    """Median seconds to import ``module`` in a fresh interpreter, minus a bare start."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([PY, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - start

    bare = statistics.median(run("pass") for _ in range(5))
    return statistics.median(run(f"import {module}") for _ in range(5)) - bare


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    server, url = start_server()
    try:
        times: dict[str, list[float]] = {"peercall": [], "bare aiortc": []}
        failed = {k: 0 for k in times}
        for i in range(args.rounds + 1):
            kinds = ["peercall", "bare aiortc"] if i % 2 else ["bare aiortc", "peercall"]
            for kind in kinds:
                t = one_call("peercall" if kind == "peercall" else "bare", url, f"r{i}{kind[0]}")
                if i == 0:
                    continue  # warm-up: page cache, .pyc files
                if t is None:
                    failed[kind] += 1
                else:
                    times[kind].append(t * 1000)
    finally:
        server.terminate()
        server.wait(10)
    print("== launch to connected, two processes through peercall signal on loopback")
    for kind, ms in times.items():
        if ms:
            print(
                f"  {kind:<12} median {statistics.median(ms):6.0f} ms  "
                f"min {min(ms):6.0f}  max {max(ms):6.0f}  (n={len(ms)}, failed {failed[kind]})"
            )
    if times["peercall"] and times["bare aiortc"]:
        ratio = statistics.median(times["peercall"]) / statistics.median(times["bare aiortc"])
        print(f"  ratio peercall / bare aiortc: {ratio:.2f}x (goal <= 1.2x)")
    print("== import cost in a fresh interpreter (median of 5, minus an empty start)")
    for module in ("app.call_cli", "app.call.session", "aiortc", "signaling.client"):
        print(f"  import {module:<18} {import_cost(module) * 1000:6.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
