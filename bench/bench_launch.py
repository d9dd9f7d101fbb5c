"""Issue 15's launch figures: launch -> connected for two real processes, and import cost.

1. **Launch -> connected.** One ``peercall signal`` on 127.0.0.1 (port 0). Each round launches
   two processes at once and times from just before the first ``Popen`` until *both* say they
   are connected:

   - PeerCall: ``peercall call --server URL --room R --loopback --no-devices --duration 0.3``,
     one of them with ``--answer --auto-answer``; connected = its "call connected" line, which
     PeerCall prints once RTP from the peer arrives.
   - The anchor, ``bench/launch_bare_peer.py``: bare aiortc (one silent audio track each way,
     aiortc's defaults, no trickle, no data channel) sending its offer/answer through the same
     ``peercall signal`` server with a minimal client of its protocol; connected = the first
     audio frame from the peer decoded. It is a fair anchor because it does the least any
     aiortc call needs on this very path: start Python, import aiortc and websockets, reach the
     same server over the same WebSocket, gather on 127.0.0.1, ICE + DTLS, first RTP.

   Rounds alternate which kind goes first, so machine noise falls on both alike. We print
   medians, spread (min-max, p25-p75) and the ratio of medians (goal <= 1.2x).

2. **Import cost.** ``python -X importtime`` of what ``peercall call --no-devices`` imports
   before it dials (``app.cli`` with the call parser, ``app.call_cli``, the call core, the
   signaling client), the same plus what a call with a microphone and speaker adds
   (``app.media.audio``: PortAudio, numpy), against the anchor's (``aiortc``, ``aioice``,
   ``websockets``), each run several times; we print medians of the totals and the top modules
   by cumulative time. ``peercall`` itself also keeps the garbage collector off while it
   imports (app.startup), which a plain ``-X importtime`` of the modules does not show.

Bytecode: an installed PeerCall (``pip install``, a package) has its modules compiled to
``.pyc`` at install time, as aiortc in site-packages has. A development checkout run with
``PYTHONDONTWRITEBYTECODE=1`` (as this machine's environment sets) never writes them, so every
launch compiles app/, signaling/ and nat/ from source again: about 20-30 ms per process that no
user pays. By default the bench first compiles them (``compileall``, into the checkout's
gitignored ``__pycache__``) so both sides run as installed; ``--source`` skips that to measure
the checkout as it is (run ``find app signaling nat -name __pycache__ -exec rm -r {} +``
first to drop bytecode an earlier run left).

Usage: ``flock -x /tmp/peercall-bench.lock .venv/bin/python bench/bench_launch.py [--runs 10]``
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TIMEOUT = 30.0

# What `peercall call --no-devices` (the launch figure's command) imports before it dials:
CALL_PATH_IMPORTS = (
    "import app.cli; app.cli.build_parser(only='call'); "
    "import app.call_cli, app.call.session, app.call.controller, signaling.client, "
    "signaling.manual"
)
# … and with a microphone and speaker (PortAudio streams, numpy blocks), as people call:
DEVICE_IMPORTS = "import app.media.audio, app.media.synthetic"
BARE_IMPORTS = "import aiortc, aioice, websockets"
# Before/after of the lazy parser: `peercall call` used to build every subcommand's parser.
PARSER_EVERY = "import app.cli; app.cli.build_parser()"
PARSER_CALL_ONLY = "import app.cli; app.cli.build_parser(only='call')"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Server:
    """``peercall signal --port 0`` on 127.0.0.1, for the whole run."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "app.cli", "signal", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("listening on "):
                self.url = line.split()[-1]
                break
        else:
            raise SystemExit("peercall signal did not start")
        # Keep reading its output so that a full pipe never blocks it.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def peercall_cmds(url: str, room: str) -> list[list[str]]:
    base = [PY, "-m", "app.cli", "call", "--server", url, "--room", room, "--secret", "bench"]
    opts = ["--loopback", "--no-devices", "--duration", "0.3", "--no-history"]
    return [[*base, *opts], [*base, *opts, "--answer", "--auto-answer"]]


def bare_cmds(url: str, room: str) -> list[list[str]]:
    script = str(ROOT / "bench" / "launch_bare_peer.py")
    return [[PY, script, url, room, "offer"], [PY, script, url, room, "answer"]]


def launch_pair(cmds: list[list[str]], marker: str, on_stderr: bool) -> float | None:
    """Seconds from launch until both processes printed ``marker``; None if one did not."""
    seen: dict[int, float] = {}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cmd in cmds
    ]

    def watch(i: int, proc: subprocess.Popen[str]) -> None:
        stream = proc.stderr if on_stderr else proc.stdout
        other = proc.stdout if on_stderr else proc.stderr
        assert stream is not None
        assert other is not None
        threading.Thread(target=other.read, daemon=True).start()
        for line in stream:
            if marker in line and i not in seen:
                seen[i] = time.perf_counter() - start

    threads = [threading.Thread(target=watch, args=(i, p)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    for p in procs:
        try:
            p.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for t in threads:
        t.join(5)
    return max(seen.values()) if len(seen) == len(procs) else None


def bench_launch(runs: int) -> None:
    print("== launch -> connected, two processes through `peercall signal` on 127.0.0.1")
    server = Server()
    results: dict[str, list[float]] = {"peercall call": [], "bare aiortc": []}
    failed: dict[str, int] = defaultdict(int)
    try:
        kinds = {
            "peercall call": (peercall_cmds, "call connected", True),
            "bare aiortc": (bare_cmds, "connected", False),
        }
        # One untimed round each: the first start of a process reads its files from disk.
        for build, marker, on_stderr in kinds.values():
            launch_pair(build(server.url, "warm-" + secrets.token_hex(4)), marker, on_stderr)
        for i in range(runs):
            order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
            for name in order:
                build, marker, on_stderr = kinds[name]
                room = f"b{i}-{secrets.token_hex(4)}"
                elapsed = launch_pair(build(server.url, room), marker, on_stderr)
                if elapsed is None:
                    failed[name] += 1
                else:
                    results[name].append(elapsed * 1000)
    finally:
        server.stop()
    for name, ms in results.items():
        if not ms:
            print(f"  {name:<14} no run connected ({failed[name]} failed)")
            continue
        print(
            f"  {name:<14} median {statistics.median(ms):6.0f} ms   p25-p75 {pct(ms, 0.25):4.0f}-"
            f"{pct(ms, 0.75):4.0f} ms   min-max {min(ms):4.0f}-{max(ms):4.0f} ms   "
            f"(n={len(ms)}, failed {failed[name]})"
        )
    ours, bare = results["peercall call"], results["bare aiortc"]
    if ours and bare:
        ratio = statistics.median(ours) / statistics.median(bare)
        print(f"  ratio of medians peercall / bare aiortc: {ratio:.2f}x   (goal <= 1.2x)")


def importtime(code: str) -> dict[str, tuple[int, float]]:
    """Module -> (depth, cumulative seconds) for one fresh interpreter importing ``code``."""
    proc = subprocess.run(
        [PY, "-X", "importtime", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    out: dict[str, tuple[int, float]] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        out[name.strip()] = (depth, int(cumulative) / 1e6)
    return out


def bench_imports(runs: int, top: int) -> None:
    print(f"== import cost (python -X importtime, median of {runs} fresh interpreters)")
    codes = {
        "peercall call": CALL_PATH_IMPORTS,
        "peercall call + devices": f"{CALL_PATH_IMPORTS}; {DEVICE_IMPORTS}",
        "bare aiortc": BARE_IMPORTS,
        "cli parser, every command (before)": PARSER_EVERY,
        "cli parser, call only (now)": PARSER_CALL_ONLY,
    }
    totals: dict[str, list[float]] = {name: [] for name in codes}
    per_module: dict[str, list[float]] = defaultdict(list)
    depth: dict[str, int] = {}
    for _ in range(runs):
        for name, code in codes.items():
            modules = importtime(code)
            # Top-level entries (depth 0) together are everything the statement imported.
            totals[name].append(sum(c for d, c in modules.values() if d == 0))
            if name == "peercall call":
                for module, (d, cumulative) in modules.items():
                    per_module[module].append(cumulative)
                    depth[module] = d
    for name, values in totals.items():
        print(f"  {name:<36} total {1000 * statistics.median(values):6.0f} ms")
    print(f"  peercall call: top {top} modules by cumulative time (median ms; indent = depth)")
    ranked = sorted(per_module, key=lambda m: statistics.median(per_module[m]), reverse=True)
    for module in ranked[:top]:
        ms = 1000 * statistics.median(per_module[module])
        print(f"    {ms:6.0f}  {'  ' * depth[module]}{module}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="launch rounds per kind")
    parser.add_argument("--import-runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--source",
        action="store_true",
        help="do not compile PeerCall's bytecode first (a checkout under PYTHONDONTWRITEBYTECODE)",
    )
    args = parser.parse_args()
    if args.source:
        print("== PeerCall's modules as the checkout has them (no bytecode compiled by the bench)")
    else:
        print("== PeerCall's modules compiled to bytecode first, as an installed copy has them")
        subprocess.run(
            [PY, "-m", "compileall", "-q", "app", "signaling", "nat"], cwd=ROOT, check=True
        )
    with contextlib.suppress(KeyboardInterrupt):
        bench_imports(args.import_runs, args.top)
        bench_launch(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
