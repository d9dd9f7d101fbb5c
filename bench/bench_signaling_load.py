"""Signaling capacity: rooms held at p99 forward latency < 50 ms, one process vs two on Redis.

Setups, run one after the other in ONE invocation (so they share the machine's state):

- ``memory``: one ``peercall signal`` process, rooms in memory;
- ``redis``: two ``peercall signal --redis`` processes and one private ``redis-server`` (on a
  free loopback port). Clients are spread over the nodes as a round-robin load balancer
  would (each node the same share; half the rooms have their two callers on different nodes).

Open files: this machine caps every process at 20,000 (a hard limit that only
CAP_SYS_RESOURCE could raise), and one connection is one file, so one server process cannot
hold 10,000 rooms whatever its speed (the bench runs at most 9,936 per process). Steps past
a setup's open-file room are not run; its figure is then marked as capped by the limit, not
by latency.

Load: ``--workers`` generator processes (uvloop; each client is websockets' sans-I/O
protocol driven from asyncio callbacks, no task per client, speaking
docs/signaling-protocol.md: join, relay with seq, an ack per delivered relay, and every 20 s
a WebSocket ping and a ``ping`` frame, as PeerCall's client does) hold two clients per room,
both in the same worker so that forward latency is measured on one clock
(``time.perf_counter``, send to receive, so it includes both clients' work as well as the
server's). Every ``--period`` seconds (random phase per room) the
caller sends an offer and the callee answers it when it arrives: real-size descriptions of
``--sdp-bytes`` (default 3,800: an audio+video offer with candidates), each unique.

For each setup the room count goes up the ladder (``--rooms``) until p99 >= 50 ms or more
than 1 % of the messages are lost; each step is a fresh set of connections and a steady
window of ``--window`` seconds. Printed per step: p50/p99/max latency, loss, messages/s, the
server processes' CPU (share of one core, and CPU-microseconds per forwarded message), Redis'
CPU and commands per message, the generator's CPU (so a saturated generator shows), the rest
of the machine (other processes on a shared machine distort every figure), and server RSS.
Finally: rooms held per setup and their ratio.

Usage: ``flock -x /tmp/peercall-bench.lock .venv/bin/python bench/bench_signaling_load.py``
(``--setups memory,redis --rooms 5000,7500,9900,12500,15000,17500,18500,19800 --window 20``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import random
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
P99_TARGET_MS = 50.0
MAX_LOSS = 0.01


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def system_busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")


def raise_nofile(want: int = 0) -> int:
    """Soft limit up to the hard one; as root also the hard one up to ``want`` (children,
    the servers among them, inherit it: 10,000 rooms are 20,000 sockets in one server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want > hard:
        with contextlib.suppress(ValueError, OSError):
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, nr_open),) * 2)
            return min(want, nr_open)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the generator (one worker process) -------------------------------------------------


def make_sdp(uid: str, size: int) -> str:
    """An audio+video offer-like description of about ``size`` bytes, unique by ``uid``."""
    head = (
        f"v=0\r\no=- {uid} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
        "a=msid-semantic:WMS *\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\n"
        "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=mid:0\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    )
    lines = [head]
    n = 0
    while sum(map(len, lines)) < size:
        n += 1
        lines.append(
            f"a=candidate:{n} 1 udp {2130706431 - n} 192.0.2.{n % 250} {50000 + n} typ host\r\n"
        )
    return "".join(lines)


class Link(asyncio.Protocol):
    """One client connection, on websockets' sans-I/O protocol driven straight from asyncio
    callbacks: no task, lock or future per connection and per frame as with the library's
    asyncio client, so one generator process carries thousands of clients with little CPU.
    The server's pings are answered by the protocol itself; the client's own pings (a
    WebSocket ping and an application ``ping`` every 20 s, like PeerCall's client) are sent
    by the worker's one heartbeat loop."""

    def __init__(self, url: str, on_text: Any) -> None:
        self.ws = ClientProtocol(parse_uri(url), max_size=None)
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.first: asyncio.Future[str] | None = None  # the next text frame, if awaited
        self.closed: asyncio.Future[None] = loop.create_future()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is no subclass)
        self.ws.send_request(self.ws.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    text = str(event.data, "utf-8")
                    first = self.first
                    if first is not None and not first.done():
                        first.set_result(text)
                    else:
                        self.on_text(self, text)
            elif isinstance(event, Response) and not self.opened.done():
                if ws.handshake_exc is not None:
                    self.opened.set_exception(ws.handshake_exc)
                else:
                    self.opened.set_result(None)
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()

    def send(self, text: str) -> None:
        if self.lost:
            return
        self.ws.send_text(text.encode())
        self.flush()

    def beat(self) -> None:
        """The client's heartbeat: a WebSocket ping and an application ping."""
        if self.lost:
            return
        self.ws.send_ping(b"")
        self.ws.send_text(b'{"v":1,"type":"ping"}')
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for future in (self.opened, self.first):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_text(self, None)

    def expect(self) -> asyncio.Future[str]:
        """The next text frame. Ask before sending what it answers: uvloop may run the
        reply's data_received before a task created meanwhile takes its first step."""
        self.first = asyncio.get_running_loop().create_future()
        return self.first


@dataclass(eq=False)
class Peer:
    link: Link
    peer: str
    room: str
    caller: bool
    seq: int = 0


@dataclass
class WorkerTally:
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    received: int = 0
    errors: int = 0
    error_texts: list[str] = field(default_factory=list)
    closed: int = 0
    gen_lag: float = 0.0
    measuring: bool = False


HEARTBEAT = 20.0  # s between a client's pings (PeerCall's client: WebSocket and application)
BEAT_SLOTS = 100  # the heartbeat loop's ticks per HEARTBEAT; each client has a random slot


async def worker_main(args: argparse.Namespace) -> None:
    raise_nofile()
    urls: list[str] = json.loads(args.urls)
    rng = random.Random(args.seed)
    tally = WorkerTally()
    sdp_cache = make_sdp("X" * 16, args.sdp_bytes)
    pairs: list[tuple[Peer, Peer]] = []
    peers: dict[Link, Peer] = {}
    loop = asyncio.get_running_loop()

    def sdp_for(uid: str) -> str:
        return sdp_cache.replace("X" * 16, uid, 1)

    def send_relay(p: Peer, kind: str) -> None:
        uid = secrets.token_hex(8)
        p.seq += 1
        text = json.dumps(
            {
                "v": 1,
                "type": "relay",
                "seq": p.seq,
                "data": {"v": 1, "type": kind, "sdp": sdp_for(uid)},
            },
            separators=(",", ":"),
        )
        if tally.measuring:
            tally.sent_at[uid] = time.perf_counter()
            tally.sent += 1
        p.link.send(text)

    def on_text(link: Link, raw: str | None) -> None:
        p = peers.get(link)
        if p is None:
            return
        if raw is None:  # connection lost
            if tally.measuring:
                tally.closed += 1  # the lean client does not resume: what was queued is lost
            return
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind == "relay":
            sdp: str = frame["data"]["sdp"]
            uid = sdp[9 : sdp.index(" ", 9)]  # "v=0\r\no=- <uid> "
            sent = tally.sent_at.pop(uid, None)
            if sent is not None:
                tally.latencies.append((time.perf_counter() - sent) * 1000)
                tally.received += 1
            link.send(f'{{"v":1,"type":"ack","from":"{frame["from"]}","seq":{frame["seq"]}}}')
            if frame["data"]["type"] == "offer" and not p.caller:
                send_relay(p, "answer")
        elif kind == "error":
            tally.errors += 1
            if len(tally.error_texts) < 3:
                tally.error_texts.append(str(raw)[:200])

    slots: list[list[Link]] = [[] for _ in range(BEAT_SLOTS)]

    async def open_peer(url: str, room: str, caller: bool) -> Peer:
        uri = parse_uri(url)
        _, link = await asyncio.wait_for(
            loop.create_connection(lambda: Link(url, on_text), uri.host, uri.port), 60
        )
        await asyncio.wait_for(link.opened, 60)
        peer = secrets.token_urlsafe(9)
        answer = link.expect()
        link.send(json.dumps({"v": 1, "type": "join", "room": room, "secret": "pw", "peer": peer}))
        joined = json.loads(await asyncio.wait_for(answer, 60))
        if joined.get("type") != "joined":
            raise SystemExit(f"join failed: {joined}")
        p = Peer(link, peer, room, caller)
        peers[link] = p
        # the heartbeat from the join on, as a real client's: connecting 20,000 clients takes
        # longer than the server's 60 s idle timeout
        slots[rng.randrange(BEAT_SLOTS)].append(link)
        return p

    async def heartbeat() -> None:
        tick = HEARTBEAT / BEAT_SLOTS
        slot = 0
        next_at = time.perf_counter()
        while True:
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            for link in slots[slot]:
                link.beat()
            slot = (slot + 1) % BEAT_SLOTS

    beating = asyncio.create_task(heartbeat())
    sem = asyncio.Semaphore(args.concurrency)

    async def open_room(i: int) -> None:
        room = f"{args.prefix}-{i}"
        async with sem:
            # balanced like a round-robin load balancer: every node gets the same number of
            # callers and of callees, and with two nodes half the rooms span both
            n = len(urls)
            a = await open_peer(urls[i % n], room, True)
            b = await open_peer(urls[(i // n) % n], room, False)
        pairs.append((a, b))

    await asyncio.gather(*(open_room(i) for i in range(args.rooms)))
    gc.collect()
    gc.freeze()  # the generator's own GC pauses would count as latency
    print(json.dumps({"connected": len(pairs)}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    cpu0 = time.process_time()
    tally.measuring = True
    end = time.perf_counter() + args.window

    async def room_loop(a: Peer, b: Peer) -> None:
        phase = rng.uniform(0, args.period)
        if time.perf_counter() + phase >= end:
            return
        await asyncio.sleep(phase)
        while time.perf_counter() < end:
            send_relay(a, "offer")
            if time.perf_counter() + args.period >= end:
                break  # (not asleep past the window: elapsed time is the window's)
            await asyncio.sleep(args.period)

    lag = 0.0

    async def lag_monitor() -> None:  # a stalled generator would show as forward latency
        nonlocal lag
        while time.perf_counter() < end:
            t = time.perf_counter()
            await asyncio.sleep(0.05)
            lag = max(lag, time.perf_counter() - t - 0.05)

    loops = [asyncio.create_task(room_loop(a, b)) for a, b in pairs]
    loops.append(asyncio.create_task(lag_monitor()))
    await asyncio.gather(*loops, return_exceptions=True)
    beating.cancel()  # the heartbeat ends with the window
    tally.measuring = False
    await asyncio.sleep(args.drain)  # answers and forwards still in flight
    cpu = time.process_time() - cpu0
    print(
        json.dumps(
            {
                "latencies": [round(x, 3) for x in tally.latencies],
                "sent": tally.sent,
                "received": tally.received,
                "errors": tally.errors,
                "error_texts": tally.error_texts,
                "closed": tally.closed,
                "lag": lag * 1000,
                "cpu": cpu,
            }
        ),
        flush=True,
    )
    # leave for good (the seat is free at once, no resume grace), then close
    for link in peers:
        link.send('{"v":1,"type":"leave"}')
        if not link.lost:
            link.ws.send_close(1000)
            link.flush()
    await asyncio.wait([link.closed for link in peers], timeout=10)
    for link in peers:
        if link.transport is not None and not link.lost:
            link.transport.abort()


# --- the orchestrator -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (scripts/install-system-deps.sh)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(500):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("redis-server did not start")


SIGNAL = (sys.executable, "-m", "app.cli", "signal")


@functools.cache
def lifted_caps(root: Path) -> tuple[str, ...]:
    """Every client comes from 127.0.0.1 and the bench is no flood: the options that lift the
    per-address caps and the rate limit, those that the server in ``root`` has (--server-root).
    Asked once per checkout, not per node."""
    known = subprocess.run(
        [*SIGNAL, "--help"], cwd=root, capture_output=True, text=True, check=False
    ).stdout
    return tuple(
        x
        for option in ("--max-connections-per-ip", "--max-seats-per-ip", "--max-address-bytes",
                       "--rate-limit")
        if option in known
        for x in (option, "0")
    )  # fmt: skip


def start_node(
    redis_url: str | None, errlog: Path, root: Path = ROOT
) -> tuple[subprocess.Popen[str], str]:
    with errlog.open("a") as err:  # a file, not a pipe nobody reads
        proc = subprocess.Popen(
            [
                *SIGNAL,
                *("--host", "127.0.0.1", "--port", "0", *lifted_caps(root)),
                *(("--redis", redis_url) if redis_url else ()),
            ],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if line.startswith("listening on "):
            url = line.split()[-1]
        if line.startswith("ready"):
            break
    if not url:
        proc.kill()
        raise SystemExit(f"signaling server did not start: {errlog.read_text()[-2000:]}")
    return proc, url


def redis_info(port: int, section: str) -> str:
    """One INFO section, read with a raw RESP command (no client library needed)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"INFO {section}\r\n".encode())
        data = b""
        # a bulk reply: "$<length>\r\n<text>\r\n"
        while b"\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n")
        length = int(head[1:])
        while len(rest) < length + 2:
            rest += s.recv(65536)
    return rest[:length].decode()


def redis_commands(port: int) -> tuple[int, dict[str, int]]:
    """total_commands_processed and calls per command (INFO commandstats: commands run inside
    Lua scripts count there too, so they say what a message really costs)."""
    total = 0
    for line in redis_info(port, "stats").splitlines():
        if line.startswith("total_commands_processed:"):
            total = int(line.split(":")[1])
    per: dict[str, int] = {}
    for line in redis_info(port, "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[8:].partition(":")
            per[name] = int(rest.split(",")[0].split("=")[1])
    return total, per


@dataclass
class Step:
    rooms: int
    p50: float
    p99: float
    worst: float
    loss: float
    msgs_per_s: float
    server_cpu: float  # share of one core, all nodes together
    us_per_msg: float
    redis_cpu: float
    redis_us_per_msg: float
    redis_cmds_per_msg: float
    gen_cpu: float
    other_cpu: float
    rss: float
    errors: int = 0
    error_texts: list[str] = field(default_factory=list)
    closed: int = 0
    gen_lag: float = 0.0
    redis_per_cmd: dict[str, float] = field(default_factory=dict)
    window: tuple[float, float] = (0.0, 0.0)  # Unix time of the measured window

    @property
    def ok(self) -> bool:
        return self.p99 < P99_TARGET_MS and self.loss <= MAX_LOSS


def settle(pids: list[int], limit: float = 90.0) -> float:
    """Wait until the servers are idle (under 5 % of a core over a second): the previous step's
    leaves and closes must not be measured in the next one. Returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(1.0)
        if sum(cpu_seconds(pid) for pid in pids) - before < 0.05:
            break
    return time.perf_counter() - t0


def run_step(
    args: argparse.Namespace,
    rooms: int,
    urls: list[str],
    nodes: list[subprocess.Popen[str]],
    redis: tuple[subprocess.Popen[bytes], int] | None,
    label: str,
) -> Step:
    # each generator process is under the same open-file limit: enough of them for the step
    nworkers = max(args.workers, -(-2 * rooms // (args.nofile - 256)))
    per = [rooms // nworkers + (1 if i < rooms % nworkers else 0) for i in range(nworkers)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--urls",
                json.dumps(urls),
                "--rooms",
                str(n),
                "--prefix",
                f"{label}-{rooms}-{i}",
                "--seed",
                str(i),
                "--window",
                str(args.window),
                "--period",
                str(args.period),
                "--sdp-bytes",
                str(args.sdp_bytes),
                "--drain",
                str(args.drain),
                "--concurrency",
                str(args.concurrency),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, n in enumerate(per)
        if n
    ]
    try:
        for w in workers:
            assert w.stdout is not None
            line = w.stdout.readline()
            if not line:
                raise SystemExit("a load worker failed while connecting")
        pids = [p.pid for p in nodes]
        srv0 = sum(cpu_seconds(pid) for pid in pids)
        red0 = cpu_seconds(redis[0].pid) if redis else 0.0
        cmd0, per0 = redis_commands(redis[1]) if redis else (0, {})
        busy0 = system_busy_seconds()
        gen0 = sum(cpu_seconds(w.pid) for w in workers)
        t0 = time.perf_counter()
        wall0 = time.time()
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        results = []
        for w in workers:
            assert w.stdout is not None
            results.append(json.loads(w.stdout.readline()))
        elapsed = time.perf_counter() - t0
        window = (wall0, time.time())
        srv = sum(cpu_seconds(pid) for pid in pids) - srv0
        red = (cpu_seconds(redis[0].pid) - red0) if redis else 0.0
        cmd1, per1 = redis_commands(redis[1]) if redis else (0, {})
        cmds = cmd1 - cmd0
        busy = system_busy_seconds() - busy0
        gen = sum(cpu_seconds(w.pid) for w in workers) - gen0
        rss = sum(rss_mib(pid) for pid in pids)
    finally:
        for w in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.wait(60)
            if w.poll() is None:
                w.kill()
    latencies = [x for r in results for x in r["latencies"]]
    sent = sum(r["sent"] for r in results)
    received = sum(r["received"] for r in results)
    # every relay is forwarded once: per message the server handles relay + ack (+ a ping)
    msgs = max(received, 1)
    other = max(0.0, busy - srv - red - gen)
    return Step(
        rooms=rooms,
        p50=pct(latencies, 0.5),
        p99=pct(latencies, 0.99),
        worst=max(latencies, default=float("nan")),
        loss=(sent - received) / sent if sent else 1.0,
        msgs_per_s=received / elapsed,
        server_cpu=srv / elapsed,
        us_per_msg=srv / msgs * 1e6,
        redis_cpu=red / elapsed,
        redis_us_per_msg=red / msgs * 1e6,
        redis_cmds_per_msg=cmds / msgs,
        gen_cpu=gen / elapsed,
        other_cpu=other / elapsed,
        rss=rss,
        errors=sum(r["errors"] for r in results),
        error_texts=[t for r in results for t in r["error_texts"]][:3],
        closed=sum(r["closed"] for r in results),
        gen_lag=max(r["lag"] for r in results),
        window=window,
        redis_per_cmd={
            k: (v - per0.get(k, 0)) / msgs for k, v in per1.items() if v - per0.get(k, 0) > 0
        },
    )


def print_step(step: Step) -> None:
    redis = (
        f" | redis {step.redis_cpu * 100:4.0f}% {step.redis_us_per_msg:5.0f} us/msg "
        f"{step.redis_cmds_per_msg:4.1f} cmd/msg"
        if step.redis_cmds_per_msg
        else ""
    )
    print(
        f"  {step.rooms:6d} rooms: p50 {step.p50:6.1f} ms  p99 {step.p99:7.1f} ms  "
        f"max {step.worst:7.1f} ms  loss {step.loss * 100:4.1f}%  {step.msgs_per_s:6.0f} msg/s | "
        f"server {step.server_cpu * 100:4.0f}% {step.us_per_msg:5.0f} us/msg  "
        f"rss {step.rss:6.1f} MiB{redis} | generator {step.gen_cpu * 100:4.0f}% "
        f"(loop lag max {step.gen_lag:4.0f} ms)  "
        f"others {step.other_cpu * 100:4.0f}%  {'ok' if step.ok else 'OVER'}"
        + (
            f"  ({step.errors} error frames, {step.closed} links closed)"
            if step.errors or step.closed
            else ""
        ),
        flush=True,
    )
    for text in step.error_texts:
        print(f"    error frame: {text}")
    if step.redis_per_cmd:
        top = sorted(step.redis_per_cmd.items(), key=lambda kv: -kv[1])[:8]
        print("    redis commands per msg: " + ", ".join(f"{k} {v:.2f}" for k, v in top))


def pause_ms(line: str) -> float:
    return float(line.split(" paused the server ")[1].split()[0])


def in_window(line: str, windows: list[tuple[float, float]]) -> bool:
    """Whether a log line (logging's default local-time stamp) falls in a measured window."""
    import datetime

    try:
        stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return False
    return any(start <= stamp <= end for start, end in windows)


def run_setup(args: argparse.Namespace, name: str, workdir: Path) -> tuple[int, list[Step], str]:
    """Rooms held, the steps run, and what stopped it if not latency ("open-file limit", or
    "top of the ladder" when every step held; else "")."""
    redis = start_redis(workdir) if name == "redis" else None
    redis_url = f"redis://127.0.0.1:{redis[1]}/0" if redis else None
    errlog = workdir / f"{name}.log"
    root = args.server_root or ROOT
    started = [start_node(redis_url, errlog, root) for _ in range(2 if redis else 1)]
    nodes = [p for p, _ in started]
    urls = [u for _, u in started]
    print(
        f"{name}: {len(nodes)} signaling process(es)"
        + (f" + redis-server (pid {redis[0].pid})" if redis else "")
        + f", {args.workers} generator processes (more for a step that needs more open files)"
        + (f"; server code from {root}" if args.server_root else ""),
        flush=True,
    )
    held = 0
    steps = []
    # one file per connection, plus the server's own (listener, log, Redis links, ...)
    room_cap = len(nodes) * (args.nofile - 128) // 2
    capped = False
    try:
        for rooms in args.rooms:
            if rooms > room_cap:
                print(
                    f"  {rooms:6d} rooms: not run, over this setup's open-file room "
                    f"({args.nofile} files per process: at most {room_cap} rooms)",
                    flush=True,
                )
                capped = True
                break
            waited = settle([p.pid for p in nodes])
            if waited > 5:
                print(f"  (the servers took {waited:.0f} s to go idle after the last step)")
            try:
                step = run_step(args, rooms, urls, nodes, redis, name)
            except SystemExit as exc:  # this step, not the whole run (the next setup goes on)
                print(f"  {rooms:6d} rooms: {exc}", flush=True)
                break
            print_step(step)
            steps.append(step)
            if not step.ok:
                break
            held = rooms
    finally:
        capped = capped and bool(steps) and steps[-1].ok
        stop = ""
        if capped:
            stop = "open-file limit"
            print(f"  {name}: {held} rooms is where the open-file limit stops it, not latency")
        elif steps and steps[-1].ok and held == args.rooms[-1]:
            stop = "top of the ladder"
            print(f"  {name}: every step held; the ladder ends at {held} rooms (this setup's "
                  f"open-file room: {room_cap})")  # fmt: skip
        for p in nodes:
            p.terminate()
        for p in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
        if redis:
            redis[0].terminate()
            redis[0].wait(10)
        lines = errlog.read_text().splitlines()
        pauses = [line for line in lines if "garbage collection of generation" in line]
        windows = [s.window for s in steps]
        measured = [line for line in pauses if in_window(line, windows)]
        print(f"  server GC pauses over 50 ms inside the measured windows: {len(measured)}"
              + (f" (the longest {max(pause_ms(x) for x in measured):.0f} ms)" if measured else "")
              + f"; outside them (connecting, closing): {len(pauses) - len(measured)}")  # fmt: skip
        if pauses:
            longest = max(
                pauses, key=lambda line: float(line.split(" paused the server ")[1].split()[0])
            )
            print(f"  server GC pauses over 50 ms: {len(pauses)}, the longest: "
                  f"{longest.split(' WARNING ')[-1]}")  # fmt: skip
            for line in pauses[:12]:
                print("    " + line)
        problems = [
            line
            for line in lines
            if (" WARNING " in line or " ERROR " in line) and line not in pauses
        ]
        if problems:
            print(f"  server log: {len(problems)} warnings/errors, the last: {problems[-1][:300]}")
    return held, steps, stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rooms", default="5000,7500,9900,12500,15000,17500", help="room ladder")
    parser.add_argument("--setups", default="memory,redis")
    parser.add_argument("--workers", type=int, default=3, help="generator processes")
    parser.add_argument("--window", type=float, default=30.0, help="steady seconds per step")
    parser.add_argument("--period", type=float, default=25.0, help="s between a room's offers")
    parser.add_argument("--sdp-bytes", type=int, default=3800)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=50, help="connects at once, per worker")
    parser.add_argument(
        "--nice",
        type=int,
        default=-5,
        help="scheduling priority of the bench and everything it starts (default -5 as root: "
        "on a shared machine, other processes' CPU would otherwise decide the tail)",
    )
    parser.add_argument(
        "--server-root",
        type=Path,
        help="run the server from this checkout (e.g. a git worktree of an older commit, to "
        "compare with it under the same load; this checkout's venv must run it)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.rooms = int(args.rooms)
        import uvloop

        uvloop.run(worker_main(args))
        return 0
    args.rooms = [int(x) for x in args.rooms.split(",")]
    args.nofile = raise_nofile(2 * max(args.rooms) + 4096)
    print(f"open files: at most {args.nofile} per process", flush=True)
    if args.nice:
        try:
            os.nice(args.nice)  # inherited by the servers, redis-server and the generators
            print(f"priority: nice {args.nice} for the bench and its processes", flush=True)
        except PermissionError:
            print(f"priority: cannot set nice {args.nice} (not root); figures include contention")
    print(
        f"load: {args.sdp_bytes}-byte offer + answer per room every {args.period:g} s, a ping per "
        f"client every 20 s, {args.window:g} s per step; target p99 < {P99_TARGET_MS:g} ms, "
        f"loss <= {MAX_LOSS * 100:g} %; per-address caps off (every client is 127.0.0.1): with"
        " them on, a clustered join or relay costs one more Redis round trip",
        flush=True,
    )
    held: dict[str, int] = {}
    stopped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="peercall-bench-") as tmp:
        for name in args.setups.split(","):
            held[name], _, stopped[name] = run_setup(args, name, Path(tmp))
    figures = [f"{k} {v}" + (f" ({stopped[k]})" if stopped[k] else "") for k, v in held.items()]
    print("rooms held at p99 < 50 ms: " + ", ".join(figures))
    if held.get("memory") and "redis" in held:
        why = {
            "open-file limit": " (one process stopped by the open-file limit, not latency: it"
            " might hold more where the limit is higher)",
            "top of the ladder": " (one process held every step: raise --rooms)",
        }.get(stopped["memory"], "")
        if stopped["redis"]:
            why += f"; two nodes: {stopped['redis']}, not latency"
        print(f"two nodes on Redis / one process: {held['redis'] / held['memory']:.2f}x{why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
