"""coturn's turnserver vs ``peercall relay`` on this machine: capacity at saturation.

Usage: .venv/bin/python bench/bench_nat_vs_coturn.py [--traffic channel,send,data,tcp,stun]
       [--servers coturn,peercall] [--runs 3] [--seconds 3] [--max-rate 1000000]
       [--no-paced] [--no-memory]

Capacity, not a paced rate: for each kind of traffic the offered load is raised in steps until
the loss passes 1 % (past the listed steps it grows by 1.25x, up to ``--max-rate``), for coturn
and PeerCall in the same run. A sweep also stops when the generator cannot offer the step's
rate (UDP) or a generator process is near a full core: its capacity is then marked
"≥ ... (generator-limited)", a floor, not the server's limit. Each step runs ``--runs`` times,
each time against a freshly started server, the servers taking turns run by run, and the
medians are kept. A server's capacity is
the highest median delivered rate of a step whose median loss stayed at or under 1 %.

Traffic (one direction, so one message is one pass through the relay):

* ``channel``: UDP ChannelData on a bound channel (RFC 8656 §12), client -> relay -> peer;
* ``send``: UDP Send indications to a permitted peer (§11), client -> relay -> peer;
* ``data``: the way back without a channel, peer -> relay -> client: a peer socket in each
  generator process sends to the relayed addresses round robin and the relay passes each
  datagram on as a Data indication (§11.3), loss = datagrams that reached no client;
* ``tcp``: ChannelData framed over TCP connections to the server (§12.5). TCP does not drop:
  a server that cannot keep up pushes back, so "loss" is how far delivery falls behind the
  offered rate (delivered / (rate x seconds));
* ``stun``: bare Binding requests (RFC 8489), loss = requests without a response.

The load generator is open loop (it sends on schedule whatever comes back): ``--procs``
processes, each holding its share of the client allocations (120-byte payloads) and sending in
batches round robin over its sockets, sleeping only when ahead of schedule. The peer is a sink
process counting datagrams on one socket with a 16 MiB buffer. Generator and sink CPU are
printed next to the server's: a generator near 100 % of a core per process, or an achieved
offered rate below the target, means the step measured the generator, not the server.

CPU per message is the server's user + system time (the server process and its children, from
/proc) over the sending window, divided by messages delivered; for the capacity step. Ratios are
PeerCall / coturn for capacity and for CPU per message (below 1.2 is the goal there).

Also printed: memory per allocation (RSS of the server process tree before and after
``--memory-allocations`` idle UDP allocations), and, unless ``--no-paced``, the old *paced*
figure: coturn's ``turnutils_uclient`` (``-m 100 -n 1000 -z 1``, channels, echoed by
``turnutils_peer``), which both servers carry without effort and so shows the generator's pace,
not capacity.

Run under ``flock -x /tmp/peercall-bench.lock`` so two benchmarks never share the machine; the
load average at start and end is printed because the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nat import stun
from nat.auth import long_term_key
from tests.nat.conftest import (
    LOOPBACK,
    PASSWORD,
    REALM,
    USER,
    coturn_command,
    free_udp_tcp_port,
    peercall_command,
    relay_port_range,
)

REPO = Path(__file__).resolve().parent.parent
HOST = LOOPBACK
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
MAGIC_COOKIE = 0x2112A442
KEY = long_term_key(USER, REALM, PASSWORD)
PAYLOAD = bytes(range(120))
BATCH = 32
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# Offered load steps, messages per second, per kind of traffic.
STEPS: dict[str, list[int]] = {
    "channel": [20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 140_000, 170_000, 200_000],
    "send": [20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 140_000, 170_000],
    "data": [20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 140_000, 170_000],
    "tcp": [20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 140_000, 170_000],
    "stun": [40_000, 80_000, 120_000, 160_000, 200_000, 240_000, 280_000],
}
CLIENTS = {"channel": 64, "send": 64, "data": 64, "tcp": 32, "stun": 32}


# --- processes, CPU and memory from /proc ---------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the relay's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            fields = _stat(member)
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, KiB (field 24 of /proc/<pid>/stat)."""
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            total += int(_stat(member)[21]) * PAGE_KIB
    return total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- servers --------------------------------------------------------------------------------


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
    """``coturn``, or ``peercall`` (``--workers 2`` as the interop tests run it, or N from a
    ``-wN`` option; ``-asyncio`` for asyncio's loop, ``-nommsg`` for the pure-Python UDP path).
    The interop tests' command lines, so the bench runs the servers as they are tested; quotas
    off on both, since the load is many allocations of one user."""
    port = free_udp_tcp_port(HOST)
    relay_ports = relay_port_range(2000)
    log = workdir / f"{name}.log"
    if name == "coturn":
        cmd = coturn_command(port, relay_ports, "lt", workdir, "--total-quota=0", "--user-quota=0")
    else:
        options = name.split("-")[1:]  # e.g. peercall-asyncio-w1, peercall-nommsg
        loop = "asyncio" if "asyncio" in options else "uvloop"
        extra = ["--total-quota", "0", "--event-loop", loop]
        extra += [f"--workers={o[1:]}" for o in options if o[:1] == "w" and o[1:].isdigit()]
        cmd = peercall_command(port, relay_ports, "lt", *extra)
    env = dict(os.environ)
    if "nommsg" in name.split("-"):  # the pure-Python UDP path (see nat/_mmsg.py)
        env["PEERCALL_NO_MMSG"] = "1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO, env=env
        )
    server = Server(name, proc, port, log)
    try:
        wait_stun(port, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


# --- the load generator (runs in child processes) -------------------------------------------


class _Turn:
    """A blocking TURN client on one UDP or TCP socket (just enough to set up the load)."""

    def __init__(self, kind: str, port: int) -> None:
        tcp = kind == "tcp"
        self.tcp = tcp
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        self.sock.settimeout(10)
        self.sock.connect((HOST, port))
        self.nonce = b""

    def _receive(self) -> bytes:
        if not self.tcp:
            return self.sock.recv(4096)
        head = b""
        while len(head) < 20:
            head += self.sock.recv(20 - len(head))
        size = struct.unpack("!H", head[2:4])[0]
        body = b""
        while len(body) < size:
            body += self.sock.recv(size - len(body))
        return head + body

    def request(self, method: int, attrs: list[tuple[stun.Attr[Any], Any]]) -> stun.Message:
        for _ in range(3):
            msg = stun.Message(method, stun.MsgClass.REQUEST, os.urandom(12))
            for attr, value in attrs:
                msg.add(attr, value)
            if self.nonce:
                msg.add(stun.USERNAME, USER)
                msg.add(stun.REALM, REALM)
                msg.add(stun.NONCE, self.nonce)
            data = msg.encode(KEY if self.nonce else None, add_fingerprint=True)
            self.sock.send(data)
            while True:
                answer = stun.parse_message(self._receive())
                if answer.transaction_id == msg.transaction_id:
                    break
            error = answer.get(stun.ERROR_CODE)
            nonce = answer.get(stun.NONCE)
            if error is not None and error.code in (401, 438) and nonce:
                self.nonce = nonce
                continue
            if error is not None:
                raise RuntimeError(f"{stun.Method(method).name}: {error}")
            return answer
        raise RuntimeError("authentication failed")


def _setup(
    kind: str,
    port: int,
    sink: tuple[str, int],
    clients: int,
    relays: list[tuple[str, int]] | None = None,
) -> list[socket.socket]:
    """``clients`` sockets ready to send ``kind`` traffic (allocated, channel or permission);
    their relayed addresses appended to ``relays`` if given."""
    socks = []
    for _ in range(clients):
        if kind == "stun":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((HOST, port))
        else:
            turn = _Turn(kind, port)
            answer = turn.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
            relayed = answer.get(stun.XOR_RELAYED_ADDRESS)
            if relays is not None and relayed is not None:
                relays.append(relayed)
            if kind in ("send", "data"):
                # (A permission is for the peer's IP, any port (§9): the generator's own peer
                # socket, on the sink's address, is let in by it too.)
                turn.request(stun.Method.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, sink)])
            else:
                bind: list[tuple[stun.Attr[Any], Any]] = [
                    (stun.CHANNEL_NUMBER, 0x4000),
                    (stun.XOR_PEER_ADDRESS, sink),
                ]
                turn.request(stun.Method.CHANNEL_BIND, bind)
            sock = turn.sock
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _message(kind: str, sink: tuple[str, int], index: int) -> bytes:
    if kind == "send":
        msg = stun.Message(stun.Method.SEND, stun.MsgClass.INDICATION, os.urandom(12))
        msg.add(stun.XOR_PEER_ADDRESS, sink)
        msg.add(stun.DATA, PAYLOAD)
        return msg.encode()
    if kind == "stun":
        return binding_request(index.to_bytes(12, "big"))
    return stun.encode_channel_data(0x4000, PAYLOAD, pad=kind == "tcp")


def generator(
    conn: multiprocessing.connection.Connection,
    kind: str,
    port: int,
    sink: tuple[str, int],
    clients: int,
    rate: float,
    seconds: float,
) -> None:
    """One generator process: set up, say ready, wait for go, send on schedule, report."""
    relays: list[tuple[str, int]] = []
    peer: socket.socket | None = None
    try:
        socks = _setup(kind, port, sink, clients, relays)
        if kind == "data":  # this process's peer, sending to its clients' relayed addresses
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind((HOST, 0))
            peer.setblocking(False)
    except Exception as exc:  # reported to the parent as one line
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    messages = [_message(kind, sink, i) for i in range(len(socks))]
    answered = kind in ("stun", "data")  # counted as they reach the client sockets
    conn.send(("ready", None))
    conn.recv()
    tcp = kind == "tcp"
    sent = responses = 0
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = started + seconds
    count = len(socks)
    i = 0
    pending = [b""] * count  # TCP: the unsent tail of a frame, sent before anything else
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        due = (now - started) * rate - sent
        if due < BATCH:
            time.sleep(min(BATCH / rate, deadline - now))
            continue
        for _ in range(BATCH):
            i = i + 1 if i + 1 < count else 0
            sock = socks[i]
            try:
                if tcp:
                    if pending[i]:
                        n = sock.send(pending[i])
                        pending[i] = pending[i][n:]
                        if pending[i]:
                            continue
                    n = sock.send(messages[i])
                    if n < len(messages[i]):
                        pending[i] = messages[i][n:]
                elif peer is not None:
                    peer.sendto(PAYLOAD, relays[i])
                else:
                    sock.send(messages[i])
                sent += 1
            except (BlockingIOError, InterruptedError):
                continue  # TCP pushing back, or a full UDP buffer: not sent, so not counted
            except ConnectionRefusedError:
                continue
        if answered:
            for sock in socks:
                with contextlib.suppress(BlockingIOError, InterruptedError, ConnectionError):
                    while True:
                        sock.recv(2048)
                        responses += 1
    elapsed = time.perf_counter() - started
    if answered:  # responses still in flight
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            got = 0
            for sock in socks:
                with contextlib.suppress(BlockingIOError, InterruptedError, ConnectionError):
                    while True:
                        sock.recv(2048)
                        responses += 1
                        got += 1
            if not got:
                time.sleep(0.05)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    conn.send(("done", (sent, responses, elapsed, cpu)))
    conn.recv()  # keep the allocations until the parent has read the sink
    for sock in socks:
        sock.close()
    if peer is not None:
        peer.close()


def sink(conn: multiprocessing.connection.Connection, sock: socket.socket) -> None:
    """The peer: count datagrams until asked, then report the count and its CPU."""
    sock.settimeout(0.05)
    received = 0
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    while True:
        try:
            while True:
                sock.recv(2048)
                received += 1
        except TimeoutError:
            pass
        if conn.poll():
            conn.recv()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
            conn.send((received, cpu))
            return


# --- one measured run -----------------------------------------------------------------------


@dataclass
class Run:
    offered: float  # messages per second the generator achieved
    delivered: float  # messages per second that reached the peer (or were answered)
    loss: float  # percent
    server_cpu: float  # seconds over the sending window
    generator_cpu: float  # percent of one core, per generator process (mean)
    sink_cpu: float  # percent of one core
    delivered_count: int

    @property
    def cpu_per_message(self) -> float:
        return self.server_cpu / max(self.delivered_count, 1)


def measure(server: Server, kind: str, rate: int, args: argparse.Namespace) -> Run:
    ctx = multiprocessing.get_context("fork")
    sink_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sink_sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    sink_sock.bind((HOST, 0))
    peer = sink_sock.getsockname()
    sink_parent, sink_child = ctx.Pipe()
    sink_proc = ctx.Process(target=sink, args=(sink_child, sink_sock), daemon=True)
    sink_proc.start()
    sink_sock.close()
    procs, pipes = [], []
    share = max(1, CLIENTS[kind] // args.procs)
    for _ in range(args.procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=generator,
            args=(child, kind, server.port, peer, share, rate / args.procs, args.seconds),
            daemon=True,
        )
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    try:
        for pipe in pipes:
            status, detail = pipe.recv()
            if status == "error":
                raise RuntimeError(f"load generator against {server.name}: {detail}")
        before = cpu_seconds(server.proc.pid)
        for pipe in pipes:
            pipe.send("go")
        results = [pipe.recv()[1] for pipe in pipes]
        server_cpu = cpu_seconds(server.proc.pid) - before
        time.sleep(0.3)  # datagrams still in the relay's and the sink's buffers
        sink_parent.send("report")
        received, sink_cpu = sink_parent.recv()
        for pipe in pipes:
            pipe.send("close")
    finally:
        for proc in [*procs, sink_proc]:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    sent = sum(r[0] for r in results)
    seconds = max(r[2] for r in results)
    generator_cpu = statistics.mean(r[3] / r[2] for r in results) * 100
    if kind in ("stun", "data"):
        received = sum(r[1] for r in results)
    if kind == "tcp":  # no drops over TCP: loss is falling behind the offered rate
        loss = max(0.0, 1 - received / (rate * seconds)) * 100
    else:
        loss = max(0.0, 1 - received / max(sent, 1)) * 100
    return Run(
        sent / seconds,
        received / seconds,
        loss,
        server_cpu,
        generator_cpu,
        sink_cpu / seconds * 100,
        received,
    )


@dataclass
class Step:
    rate: int
    runs: list[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(r, attribute) for r in self.runs))


@dataclass
class Sweep:
    server: str
    kind: str
    steps: list[Step] = field(default_factory=list)
    generator_limited: bool = False  # stopped because the generator could not offer more

    @property
    def capacity_step(self) -> Step | None:
        good = [s for s in self.steps if s.median("loss") <= 1.0]
        return max(good, key=lambda s: s.median("delivered")) if good else None

    @property
    def reached_top(self) -> bool:
        """Whether even the highest step stayed under 1 % loss (capacity not reached)."""
        return bool(self.steps) and self.steps[-1].median("loss") <= 1.0


GROWTH = 1.25
"""Past the listed steps the offered load keeps growing by this factor (up to ``--max-rate``)
until the loss passes ``--stop-loss`` or the generator falls short: a quiet machine carried
the top listed step on both servers, so a fixed list would report a floor, not capacity."""
GENERATOR_SHORT = 0.97
"""A UDP step whose achieved offered rate is below this share of the target measured the
generator (UDP sends do not wait for the server), as does a generator process near a core."""


def _next_rate(rate: int) -> int:
    return int(round(rate * GROWTH, -4))


def _generator_short(kind: str, step: Step) -> bool:
    if step.median("generator_cpu") >= 90:
        return True
    # Over TCP a server that cannot keep up pushes back: a short offered rate is its loss.
    return kind != "tcp" and step.median("offered") < GENERATOR_SHORT * step.rate


def sweep(names: list[str], kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Sweep]:
    """Each server's sweep of ``kind``, interleaved: at each step the servers still climbing
    take turns run by run (coturn, PeerCall, coturn, ...), each run against a freshly started
    server, so a slower stretch of this shared machine falls on all of them alike (one server's
    whole sweep after the other's let a few such minutes move one side's figures by half)."""
    results = {name: Sweep(name, kind) for name in names}
    climbing = list(names)
    rates = list(STEPS[kind])
    while rates and climbing:
        rate = rates.pop(0)
        steps = {name: Step(rate) for name in climbing}
        for _ in range(args.runs):
            for name in climbing:
                server = start(name, workdir)
                try:
                    steps[name].runs.append(measure(server, kind, rate, args))
                finally:
                    server.stop()
        for name, step in steps.items():
            results[name].steps.append(step)
            print(
                f"  {name:16} {kind:8} offered {rate:>7,}/s (achieved"
                f" {step.median('offered'):>9,.0f}): delivered {step.median('delivered'):>9,.0f}/s"
                f", loss {step.median('loss'):6.2f} %"
                f", server {step.median('cpu_per_message') * 1e6:5.1f} µs/msg"
                f" = {step.median('server_cpu') / args.seconds:4.0%} of a core"
                f"; generator {step.median('generator_cpu'):3.0f} %/proc x{args.procs}"
                f", sink {step.median('sink_cpu'):3.0f} %"
                f"  [losses {', '.join(f'{r.loss:.1f}' for r in step.runs)}]",
                flush=True,
            )
            if step.median("loss") > args.stop_loss:
                climbing.remove(name)
            elif _generator_short(kind, step):
                results[name].generator_limited = True
                climbing.remove(name)
                print(
                    f"  {name:16} {kind:8} stop: the generator cannot offer {rate:,}/s", flush=True
                )
        if climbing and not rates and not args.rates and _next_rate(rate) <= args.max_rate:
            rates.append(_next_rate(rate))
    return results


# --- the hot paths alone, in-process ----------------------------------------------------------


HOT_PATH_BATCH = 1000
"""Datagrams queued per measured round (a relay socket's 1 MiB buffer holds about 1,300)."""


def hot_path(rounds: int) -> None:
    """CPU per message of the relay's own code on each hot path, without event-loop wake-ups.

    An in-process :class:`nat.service.RelayServer` on asyncio's loop; a real client allocates
    (and binds a channel or a permission), ``HOT_PATH_BATCH`` messages are queued in the socket
    and the reader that a readiness event runs is called until they are drained, timed with
    process CPU time (the best of ``rounds``). It includes the recvfrom and sendto system calls
    (about 2.7 µs of it on this machine). For comparing versions of ``nat/``, not servers.
    """
    import asyncio

    from nat.config import RelayConfig
    from nat.service import DRAIN_MAX, RelayServer

    async def measure_all() -> None:
        low, high = relay_port_range(20)
        config = RelayConfig(
            listening_ips=(HOST,),
            listening_port=0,
            min_port=low,
            max_port=high,
            realm=REALM,
            users=((USER, KEY),),
            allow_loopback_peers=True,
        )
        async with RelayServer(config) as relay:
            port = relay.addresses[0][2]
            sink_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):
                sink_sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
            sink_sock.bind((HOST, 0))
            sink_sock.setblocking(False)
            peer = sink_sock.getsockname()
            [listener] = relay.udp_listeners.values()

            def drain(sock: socket.socket) -> None:
                with contextlib.suppress(BlockingIOError):
                    while True:
                        sock.recv(4096)

            def best(fill: Any, run: Any, out: socket.socket) -> float:
                times = []
                for _ in range(rounds):
                    drain(out)
                    fill()
                    started = time.process_time()
                    run()
                    times.append(time.process_time() - started)
                drain(out)
                return min(times) / HOT_PATH_BATCH * 1e9

            drains = HOT_PATH_BATCH // DRAIN_MAX + 2
            for kind in ("channel", "send", "stun"):
                [client] = await asyncio.to_thread(
                    _setup, "send" if kind == "send" else "channel", port, peer, 1
                )
                message = _message(kind, peer, 0)
                out = client if kind == "stun" else sink_sock

                def fill(client: socket.socket = client, message: bytes = message) -> None:
                    for _ in range(HOT_PATH_BATCH):
                        client.send(message)

                def run() -> None:
                    for _ in range(drains):
                        listener.reader()

                print(f"hot path, {kind:8}: {best(fill, run, out):5.0f} ns/msg", flush=True)
                if kind == "channel":  # the other way: peer -> relay -> client as ChannelData
                    relay_sock = next(iter(relay.relays.values()))
                    target = relay_sock.sock.getsockname()

                    def fill_peer(target: tuple[str, int] = target) -> None:
                        for _ in range(HOT_PATH_BATCH):
                            sink_sock.sendto(PAYLOAD, target)

                    def run_peer(reader: Any = relay_sock.reader) -> None:
                        for _ in range(drains):
                            reader()

                    cost = best(fill_peer, run_peer, client)
                    print(f"hot path, {'peer':8}: {cost:5.0f} ns/msg", flush=True)
                client.close()
            [stream_client] = await asyncio.to_thread(_setup, "tcp", port, peer, 1)
            await asyncio.sleep(0.1)  # the connection's protocol object is registered
            [stream] = relay.streams.values()
            chunk = _message("tcp", peer, 0) * 100

            def run_tcp() -> None:
                for _ in range(HOT_PATH_BATCH // 100):
                    stream.data_received(chunk)  # as the transport hands a 100-frame read

            print(f"hot path, {'tcp':8}: {best(lambda: None, run_tcp, sink_sock):5.0f} ns/msg")
            stream_client.close()
            sink_sock.close()

    asyncio.run(measure_all())


# --- memory per allocation ------------------------------------------------------------------


def memory_per_allocation(name: str, count: int, workdir: Path) -> float:
    """KiB of server RSS per idle UDP allocation (with a permission), over ``count`` of them.

    The marginal cost: 100 allocations are made first (and kept), so that one-time costs (code
    paths run for the first time, in each worker process) are not counted as per allocation.
    """
    server = start(name, workdir)
    try:
        warm = _setup("send", server.port, (HOST, 9), 100)
        time.sleep(0.5)
        before = rss_kib(server.proc.pid)
        socks = _setup("send", server.port, (HOST, 9), count)
        time.sleep(0.5)
        after = rss_kib(server.proc.pid)
        for sock in warm + socks:
            sock.close()
    finally:
        server.stop()
    return (after - before) / count


# --- the old paced figure -------------------------------------------------------------------

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
    first_index = points.index(moving[0])
    t0, r0 = points[first_index - 1] if first_index > 0 else moving[0]
    t1, r1 = moving[-1]
    return (r1 - r0) / (t1 - t0)


def paced(name: str, workdir: Path, peer_port: int) -> str:
    """turnutils_uclient -m 100 -n 1000 -l 120 -z 1 -c into turnutils_peer (echo)."""
    server = start(name, workdir)
    try:
        cmd = ["turnutils_uclient", "-p", str(server.port), "-e", HOST, "-r", str(peer_port)]
        cmd += ["-u", USER, "-w", PASSWORD, "-m", "100", "-n", "1000", "-l", "120", "-z", "1"]
        cmd += ["-c", HOST]
        before = cpu_seconds(server.proc.pid)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
        cpu = cpu_seconds(server.proc.pid) - before
    finally:
        server.stop()
    output = proc.stdout + proc.stderr
    totals, lost = _TOTALS.findall(output), _LOST.findall(output)
    if proc.returncode != 0 or not totals:
        return f"uclient failed (rc {proc.returncode})"
    received = int(totals[-1][1])
    return (
        f"{received}/{totals[-1][0]} echoed, loss {float(lost[-1]) if lost else float('nan'):.2f}"
        f" %, {transmit_rate(output):,.0f} msg/s while transmitting, server "
        f"{cpu / max(received, 1) * 1e6:.1f} µs/msg"
    )


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traffic", default="channel,send,data,tcp,stun", help="kinds to sweep")
    parser.add_argument(
        "--servers",
        default="coturn,peercall",
        help="comma-separated: coturn, peercall (2 workers, as the tests run it), peercall-wN (N "
        "workers), peercall-asyncio (asyncio's own loop), peercall-nommsg (without the "
        "recvmmsg/sendmmsg extension, PEERCALL_NO_MMSG=1); options combine: peercall-nommsg-w1",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per step (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="sending time per run")
    parser.add_argument("--procs", type=int, default=2, help="generator processes (default 2)")
    parser.add_argument(
        "--stop-loss", type=float, default=1.0, help="stop raising the load past this loss %%"
    )
    parser.add_argument(
        "--rates", help="comma-separated offered rates to step through instead of the defaults"
    )
    parser.add_argument(
        "--max-rate",
        type=int,
        default=1_000_000,
        help=f"past the default steps, grow the load by {GROWTH}x up to this rate (msg/s)",
    )
    parser.add_argument("--memory-allocations", type=int, default=1000)
    parser.add_argument("--no-memory", action="store_true", help="skip memory per allocation")
    parser.add_argument("--no-paced", action="store_true", help="skip the old paced uclient run")
    parser.add_argument(
        "--hot-path",
        action="store_true",
        help="only time PeerCall's hot paths in-process (ns per message, no event-loop wake-ups; "
        "for comparing versions of nat/), then exit",
    )
    args = parser.parse_args()
    if args.hot_path:
        hot_path(max(args.runs, 30))
        return 0
    for tool in ("turnserver", "turnutils_uclient", "turnutils_peer"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install coturn", file=sys.stderr)
            return 2
    servers = args.servers.split(",")
    kinds = args.traffic.split(",")
    if args.rates:
        for kind in kinds:
            STEPS[kind] = [int(rate) for rate in args.rates.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-nat-"))
    print(
        f"load average at start: {loadavg()}; {os.cpu_count()} cores; {args.runs} runs per step "
        f"of {args.seconds:.0f} s, {args.procs} generator processes, 120-byte payloads"
    )
    sweeps: dict[tuple[str, str], Sweep] = {}
    try:
        for kind in kinds:
            for name, result in sweep(servers, kind, args, workdir).items():
                sweeps[name, kind] = result
        print()
        print(f"load average after the sweeps: {loadavg()}")
        print_table(sweeps, servers, kinds)
        if not args.no_memory:
            for name in servers:
                try:
                    kib = memory_per_allocation(name, args.memory_allocations, workdir)
                except (OSError, RuntimeError) as exc:
                    print(f"memory per allocation, {name}: failed: {exc}")
                    continue
                print(
                    f"memory per allocation, {name}: {kib:.1f} KiB "
                    f"({args.memory_allocations} idle UDP allocations with a permission, after 100)"
                )
        if not args.no_paced:
            peer_port = free_udp_tcp_port(HOST)
            peer = subprocess.Popen(
                ["turnutils_peer", "-L", HOST, "-p", str(peer_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                for name in servers:
                    print(f"paced (not capacity), {name}: {paced(name, workdir, peer_port)}")
            finally:
                peer.terminate()
                peer.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at end: {loadavg()}")
    return 0


def print_table(sweeps: dict[tuple[str, str], Sweep], servers: list[str], kinds: list[str]) -> None:
    """The issue's table: capacity, CPU per message and both ratios to the reference."""
    reference = "coturn" if "coturn" in servers else servers[0]
    print(
        "| traffic | server | capacity (≤ 1 % loss), msg/s | CPU per message | "
        f"capacity / {reference} | CPU per message / {reference} | same rate: CPU per message "
        f"/ {reference} |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind in kinds:
        ref_sweep = sweeps[reference, kind]
        ref = ref_sweep.capacity_step
        for name in servers:
            result = sweeps[name, kind]
            step = result.capacity_step
            if step is None:
                print(f"| {kind} | {name} | < {STEPS[kind][0]:,} | | | | |")
                continue
            capacity = step.median("delivered")
            mark = "≥ " if result.reached_top or result.generator_limited else ""
            note = " (generator-limited)" if result.generator_limited else ""
            cpu = step.median("cpu_per_message")
            ratio = cpu_ratio = same = ""
            if ref is not None and name != reference:
                ratio = f"{capacity / ref.median('delivered'):.2f}×"
                if mark or ref_sweep.reached_top or ref_sweep.generator_limited:
                    ratio += " (a floor or ceiling: see the marks)"
                cpu_ratio = f"{cpu / ref.median('cpu_per_message'):.2f}×"
                same = _same_rate(result, ref_sweep)
            print(
                f"| {kind} | {name} | {mark}{capacity:,.0f}{note} | {cpu * 1e6:.1f} µs | {ratio} | "
                f"{cpu_ratio} | {same} |",
                flush=True,
            )


def _same_rate(result: Sweep, reference: Sweep) -> str:
    """CPU per message of both at the highest step both carried (≤ 1 % loss): the two at
    capacity ran at different rates, and per-message cost falls as bursts grow."""
    ok = {s.rate: s for s in result.steps if s.median("loss") <= 1.0}
    both = [s for s in reference.steps if s.median("loss") <= 1.0 and s.rate in ok]
    if not both:
        return ""
    ref = max(both, key=lambda s: s.rate)
    mine = ok[ref.rate]
    ratio = mine.median("cpu_per_message") / ref.median("cpu_per_message")
    return f"{ratio:.2f}× at {ref.rate:,}/s"


if __name__ == "__main__":
    sys.exit(main())
