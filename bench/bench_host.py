"""How fast "Host a call" gives a link, and how fast the link connects, in the NAT lab.

Usage (root, network namespaces):
    flock -x /tmp/peercall-bench.lock .venv/bin/python bench/bench_host.py [--runs 5]

1. Link ready: the time ``CallHost.start()`` takes in the host namespace behind miniupnpd
   (signaling + relay started, the router asked for 2 + 16 + 1 forwardings, external address
   learnt, room reserved), once per mapping method (PCP, NAT-PMP, UPnP-IGD), and with the
   router's daemon stopped (all three silent: the cost of "UPnP is off"). Median and range.
2. Link to connected: the friend behind a symmetric NAT runs ``peercall open LINK``; the host
   waits in its room (``peercall call --answer``). Measured from the friend's process start to
   its "call connected" line. Side by side with the same two computers calling through a
   signaling server and relay on the "internet" namespace (``--ice-server`` given to both),
   run alternately in ONE run. Ratio hosted / internet relay (goal <= 1.2).

Each figure is a median over ``--runs``; process start-up (Python imports, ~1 s here) is in
both call figures alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.netlab.lab import Lab  # noqa: E402 - after the path set-up
from tests.portmap.home import (  # noqa: E402
    RELAY_LAB_IP,
    HomeLab,
    build_home,
    lab_unavailable_reason,
)

_TIMER = """
import asyncio, json, sys, time
from app.host import CallHost, HostOptions
async def main():
    opts = HostOptions(methods=tuple(sys.argv[1].split(",")), signaling_port=int(sys.argv[2]),
                       turn_port=int(sys.argv[3]))
    host = CallHost(opts)
    t = time.perf_counter()
    status = await host.start()
    took = time.perf_counter() - t
    await host.stop()
    print(json.dumps({"seconds": took, "mapping": status.mapping_line,
                      "source": status.address_source}))
asyncio.run(main())
"""


def link_ready(lab: HomeLab, methods: str, port: int) -> tuple[float, str]:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.host.ns,
            sys.executable,
            "-c",
            _TIMER,
            methods,
            str(port),
            str(port + 1),
        ],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    record = json.loads(out.stdout.splitlines()[-1])
    return float(record["seconds"]), f"{record['mapping']} [{record['source']}]"


def wait_for(log: Path, marker: str, proc: subprocess.Popen[bytes], limit: float) -> float:
    """Seconds until ``marker`` shows in ``log`` (polled every 10 ms), or inf."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if marker in log.read_text(errors="replace"):
            return time.monotonic() - start
        if proc.poll() is not None and marker not in log.read_text(errors="replace"):
            return float("inf")
        time.sleep(0.01)
    return float("inf")


def one_call(lab: HomeLab, tag: str, host_args: list[str], friend_args: list[str]) -> float:
    common = ["--no-devices", "--duration", "1"]  # the default gather timeout, as shipped
    host = lab.popen(
        lab.host,
        sys.executable,
        "-m",
        "app.cli",
        *host_args,
        *common,
        log=lab.dir / f"{tag}-host.log",
    )
    time.sleep(2.0)  # the answering side starts and joins its room (it prints nothing yet)
    log = lab.dir / f"{tag}-friend.log"
    friend = lab.popen(
        lab.far_friend, sys.executable, "-m", "app.cli", *friend_args, *common, log=log
    )
    took = wait_for(log, "call connected", friend, 60)
    for proc in (friend, host):
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return took


def summary(values: list[float]) -> str:
    done = [v for v in values if v != float("inf")]
    if not done:
        return "never connected"
    text = f"median {statistics.median(done):.3f} s (min {min(done):.3f}, max {max(done):.3f})"
    if len(done) < len(values):
        text += f", {len(values) - len(done)} of {len(values)} failed"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only-calls", action="store_true", help="skip part 1")
    parser.add_argument("--keep", action="store_true", help="keep the logs (prints where)")
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"bench_host: cannot run: {reason}")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-host-"))
    try:
        return run(args, workdir)
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    (workdir / "on").mkdir()
    (workdir / "off").mkdir()
    if True:
        with Lab(workdir=workdir / "on") as built:
            lab = build_home(built, far_nat="symmetric")
            if args.only_calls:
                calls(lab, args.runs)
                return 0
            print("1. Host a call -> link ready (signaling + relay + 19 forwardings + address)")
            for methods in ("pcp", "natpmp", "upnp"):
                times = []
                for i in range(args.runs):
                    took, line = link_ready(lab, methods, 8800 + 2 * i)
                    times.append(took)
                print(f"   {methods:7s} {summary(times)}")
                print(f"           {line}")
            calls(lab, args.runs)
        if True:
            with Lab(workdir=workdir / "off") as built_off:
                off = build_home(built_off, upnp=False)
                times = [link_ready(off, "pcp,natpmp,upnp", 8800)[0] for _ in range(args.runs)]
                print(f"   router without UPnP/NAT-PMP/PCP (all silent): {summary(times)}")
    return 0


def calls(lab: HomeLab, runs: int) -> None:
    print("2. Friend behind a symmetric NAT opens the link -> call connected")
    lab.lab.add_internet_address(RELAY_LAB_IP)
    relay = lab.popen(
        lab.inet,
        sys.executable,
        "-m",
        "app.cli",
        "relay",
        "--listening-ip",
        RELAY_LAB_IP,
        "--user",
        "bench:bench",
        "--min-port",
        "49300",
        "--max-port",
        "49399",
        "--allowed-peer-ip",
        "198.18.0.0-198.19.255.255",
        log=lab.dir / "inet-relay.log",
    )
    sig = lab.popen(
        lab.inet,
        sys.executable,
        "-m",
        "app.cli",
        "signal",
        "--host",
        RELAY_LAB_IP,
        "--port",
        "8765",
        log=lab.dir / "inet-signal.log",
    )
    time.sleep(2)
    hosted: list[float] = []
    internet: list[float] = []
    host = lab.popen(
        lab.host,
        sys.executable,
        "-m",
        "app.cli",
        "host",
        "--no-qr",
        "--relay-ports",
        "49160-49175",
        log=lab.dir / "host.log",
    )
    try:
        text = ""
        for _ in range(600):
            text = (lab.dir / "host.log").read_text(errors="replace")
            if "ready (Ctrl-C" in text:
                break
            time.sleep(0.1)
        link = text.split("link: ", 1)[1].split()[0]
        # The host's own side runs the join command `peercall host` prints.
        join = text.split("join it yourself: peercall ", 1)[1].splitlines()[0].split()
        ice = f"bench:bench@turn:{RELAY_LAB_IP}:3478?transport=udp"
        for i in range(runs):  # alternate, so both see the same machine load
            hosted.append(
                one_call(
                    lab,
                    f"hosted{i}",
                    join,
                    ["open", link],
                )
            )
            internet.append(
                one_call(
                    lab,
                    f"internet{i}",
                    [
                        "call",
                        "--server",
                        f"ws://{RELAY_LAB_IP}:8765",
                        "--room",
                        f"r{i}",
                        "--secret",
                        "s",
                        "--answer",
                        "--ice-server",
                        ice,
                    ],
                    [
                        "call",
                        "--server",
                        f"ws://{RELAY_LAB_IP}:8765",
                        "--room",
                        f"r{i}",
                        "--secret",
                        "s",
                        "--ice-server",
                        ice,
                    ],
                )
            )
    finally:
        host.send_signal(signal.SIGINT)
        host.wait(timeout=30)
        for proc in (relay, sig):
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    print(f"   via the host's link and relay:   {summary(hosted)}")
    print(f"   via a relay on the internet:     {summary(internet)}")
    done_h = [v for v in hosted if v != float("inf")]
    done_i = [v for v in internet if v != float("inf")]
    if done_h and done_i:
        ratio = statistics.median(done_h) / statistics.median(done_i)
        print(f"   ratio hosted / internet relay: {ratio:.2f} (goal <= 1.2)")
    else:
        print("   ratio: not measurable (a side never connected; see the logs above)")


if __name__ == "__main__":
    sys.exit(main())
