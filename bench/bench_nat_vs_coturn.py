"""coturn's turnserver vs ``peercall relay`` on this machine, under the same load.

Usage: .venv/bin/python bench/bench_nat_vs_coturn.py [--clients 100] [--messages 1000]

Servers: coturn, ``peercall`` (``peercall relay --event-loop uvloop``) and ``peercall-asyncio``
(``--event-loop asyncio``, asyncio's own loop as under the GUI's qasync). For each server, one
after the other, on loopback with the same settings:

1. Relay: coturn's ``turnutils_uclient`` (``-m`` clients, ``-n`` messages each of ``-l`` bytes
   every ``-z`` ms, channels, no RTCP) sends through the relay to ``turnutils_peer``, which
   echoes back. Figures: relayed messages per second (the slope of uclient's per-second
   received counter while it transmits), loss, and the server's CPU seconds per message (user +
   system time from /proc/<pid>/stat over the whole run, allocations included).
2. STUN: a Binding-request load generator written here (non-blocking UDP sockets, a window of
   outstanding requests each) for ``--stun-seconds``. Figures: Binding responses per second and
   server CPU seconds per request.

Ratios are PeerCall / coturn for rates (higher is better for PeerCall) and coturn / PeerCall
for CPU per message (so > 1 would mean PeerCall is cheaper). coturn runs with its default relay
threads (it may use both cores); PeerCall is one event-loop thread. The load generators share the
2 cores, so a server that is not CPU-saturated is generator-bound: the CPU-per-message figure is
the fairer comparison then, and the utilisation printed says which case it was.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.nat.conftest import (
    LOOPBACK,
    PASSWORD,
    USER,
    coturn_command,
    free_udp_tcp_port,
    peercall_command,
    relay_port_range,
)

REPO = Path(__file__).resolve().parent.parent
HOST = LOOPBACK
TICKS = os.sysconf("SC_CLK_TCK")
MAGIC_COOKIE = 0x2112A442


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def binding_request(txid: bytes) -> bytes:
    return struct.pack("!HHI", 0x0001, 0, MAGIC_COOKIE) + txid


def wait_stun(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-2000:]}")
            sock.sendto(binding_request(os.urandom(12)), (HOST, port))
            try:
                sock.recv(2048)
                return
            except TimeoutError:
                continue
    raise RuntimeError("server did not answer STUN")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(name: str, workdir: Path) -> Server:
    # The interop tests' own command lines, so the bench runs the servers as they are tested;
    # quotas off on both, since the load is hundreds of allocations of one user.
    port = free_udp_tcp_port(HOST)
    relay_ports = relay_port_range(1000)
    log = workdir / f"{name}.log"
    if name == "coturn":
        cmd = coturn_command(port, relay_ports, "lt", workdir, "--total-quota=0", "--user-quota=0")
    else:
        loop = "asyncio" if name == "peercall-asyncio" else "uvloop"
        cmd = peercall_command(port, relay_ports, "lt", "--total-quota", "0", "--event-loop", loop)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
        )
    server = Server(name, proc, port, log)
    try:
        wait_stun(port, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class RelayResult:
    sent: int
    received: int
    lost_percent: float
    rate: float  # received messages per second while transmitting
    cpu: float  # server CPU seconds over the whole uclient run
    wall: float

    @property
    def cpu_per_message(self) -> float:
        return self.cpu / max(self.received, 1)


_PROGRESS = re.compile(
    r"^(\d+): : start_mclient: msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+)"
)
_TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
_LOST = re.compile(r"Total lost packets \d+ \(([\d.]+)%\)")


def transmit_rate(output: str) -> float:
    """Received messages per second over uclient's per-second progress lines with traffic."""
    points = [
        (int(m.group(1)), int(m.group(3)))
        for m in map(_PROGRESS.match, output.splitlines())
        if m is not None
    ]
    moving = [(t, r) for t, r in points if r > 0]
    if len(moving) < 2 or moving[-1][0] == moving[0][0]:
        return float("nan")
    # The first moving point already includes traffic since the previous (zero) line.
    first_index = points.index(moving[0])
    t0, r0 = points[first_index - 1] if first_index > 0 else moving[0]
    t1, r1 = moving[-1]
    return (r1 - r0) / (t1 - t0)


def relay_load(server: Server, peer_port: int, args: argparse.Namespace) -> RelayResult:
    cmd = [
        "turnutils_uclient",
        "-p",
        str(server.port),
        "-e",
        HOST,
        "-r",
        str(peer_port),
        "-u",
        USER,
        "-w",
        PASSWORD,
        "-m",
        str(args.clients),
        "-n",
        str(args.messages),
        "-l",
        str(args.length),
        "-z",
        str(args.interval),
        "-c",
        HOST,
    ]
    before = cpu_seconds(server.proc.pid)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(server.proc.pid) - before
    output = proc.stdout + proc.stderr
    totals = _TOTALS.findall(output)
    lost = _LOST.findall(output)
    if proc.returncode != 0 or not totals:
        tail = "\n".join(output.splitlines()[-10:])
        raise RuntimeError(f"uclient failed against {server.name} (rc {proc.returncode}):\n{tail}")
    return RelayResult(
        int(totals[-1][0]),
        int(totals[-1][1]),
        float(lost[-1]) if lost else float("nan"),
        transmit_rate(output),
        cpu,
        wall,
    )


@dataclass
class StunResult:
    responses: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.responses / self.seconds

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / max(self.responses, 1)


def stun_load(server: Server, seconds: float, sockets: int = 8, window: int = 16) -> StunResult:
    """Closed-loop Binding load: each socket keeps ``window`` requests outstanding."""
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        sock.connect((HOST, server.port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    txid = bytearray(os.urandom(12))
    request = bytearray(binding_request(bytes(txid)))
    counter = 0

    def send(sock: socket.socket, count: int) -> None:
        nonlocal counter
        for _ in range(count):
            counter += 1
            struct.pack_into("!Q", request, 12, counter)  # unique transaction ids
            try:
                sock.send(request)
            except BlockingIOError:
                return

    by_fd = {sock.fileno(): sock for sock in socks}
    responses = 0
    last_seen = {sock: time.perf_counter() for sock in socks}
    for sock in socks:
        send(sock, window)
    before = cpu_seconds(server.proc.pid)
    started = time.perf_counter()
    deadline = started + seconds
    try:
        while (now := time.perf_counter()) < deadline:
            for key, _ in selector.select(0.05):
                sock = by_fd[key.fd]
                got = 0
                while True:
                    try:
                        sock.recv(2048)
                    except BlockingIOError:
                        break
                    got += 1
                responses += got
                last_seen[sock] = now
                send(sock, got)
            for sock in socks:  # a lost datagram must not stall a socket's window
                if now - last_seen[sock] > 0.2:
                    last_seen[sock] = now
                    send(sock, window)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.proc.pid) - before
    finally:
        for sock in socks:
            selector.unregister(sock)
            sock.close()
        selector.close()
    return StunResult(responses, elapsed, cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="uclient -m (default 100)")
    parser.add_argument("--messages", type=int, default=1000, help="uclient -n (default 1000)")
    parser.add_argument("--length", type=int, default=120, help="uclient -l bytes (default 120)")
    parser.add_argument("--interval", type=int, default=1, help="uclient -z ms (default 1)")
    parser.add_argument("--stun-seconds", type=float, default=10, help="STUN load duration")
    parser.add_argument(
        "--servers",
        default="coturn,peercall,peercall-asyncio",
        help="comma-separated: coturn, peercall (on uvloop), peercall-asyncio (asyncio's loop)",
    )
    args = parser.parse_args()
    for tool in ("turnserver", "turnutils_uclient", "turnutils_peer"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install coturn", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-nat-"))
    peer_port = free_udp_tcp_port(HOST)
    peer = subprocess.Popen(
        ["turnutils_peer", "-L", HOST, "-p", str(peer_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    relay: dict[str, RelayResult] = {}
    stun: dict[str, StunResult] = {}
    print(
        f"load: turnutils_uclient -m {args.clients} -n {args.messages} -l {args.length} "
        f"-z {args.interval} -c (channels, UDP); STUN: {args.stun_seconds:.0f} s closed loop"
    )
    try:
        for name in args.servers.split(","):
            server = start(name, workdir)
            try:
                relay[name] = r = relay_load(server, peer_port, args)
                print(
                    f"{name:16} relay: {r.received}/{r.sent} messages, loss {r.lost_percent:.2f} %,"
                    f" {r.rate:,.0f} msg/s while transmitting, server CPU {r.cpu:.2f} s "
                    f"= {r.cpu_per_message * 1e6:.1f} µs/msg (run {r.wall:.1f} s)"
                )
                stun[name] = s = stun_load(server, args.stun_seconds)
                print(
                    f"{name:16} STUN:  {s.rate:,.0f} Binding/s, server CPU {s.cpu:.2f} s over "
                    f"{s.seconds:.1f} s ({s.cpu / s.seconds:.0%} of a core) = "
                    f"{s.cpu_per_request * 1e6:.1f} µs/request"
                )
            finally:
                server.stop()
    finally:
        peer.terminate()
        peer.wait(10)
    for name in ("peercall", "peercall-asyncio"):
        if {"coturn", name} <= relay.keys():
            ours, ref = relay[name], relay["coturn"]
            sours, sref = stun[name], stun["coturn"]
            print(
                f"{name} / coturn: relay rate {ours.rate / ref.rate:.2f}x, CPU per message "
                f"coturn/PeerCall {ref.cpu_per_message / ours.cpu_per_message:.2f}x; "
                f"STUN rate {sours.rate / sref.rate:.2f}x, CPU per request coturn/PeerCall "
                f"{sref.cpu_per_request / sours.cpu_per_request:.2f}x (rate targets >= 0.5x)"
            )
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
