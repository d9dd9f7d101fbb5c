"""Issue 4's signaling load figures: many rooms at once through one WebSocket signaling server.

The server runs as its own process (``python -m app.cli signal --host 127.0.0.1 --port 0``), so
on a 2-core machine it and the load generator each get a core. The load generator is one
asyncio process holding ``2 x --rooms`` :class:`signaling.client.WebSocketChannel` clients (the
real client: join, per-relay acks, heartbeats and keepalive pings included), two per room, each
room with its own random secret. What is measured:

1. Connect: every client opens its WebSocket and joins (``--connect-concurrency`` at a time, so
   the connect storm stays within the listen backlog); wall time for all, per-client p50/p99.
2. Exchange, in two rounds over the same connections. In each room the caller sends an Offer
   and ``--candidates`` Candidates; the callee waits for the Offer, then sends an Answer and as
   many Candidates. Forward latency is receive time minus send time (``time.perf_counter`` in
   this one process; every SDP and candidate string is unique, and its send time is kept in a
   dict keyed by it), taken from just before ``WebSocketChannel.send`` to the message coming
   out of ``receive``, so it includes both clients' work as well as the server's.

   - ``paced``: rooms start at random times over ``--spread`` seconds and candidates trickle
     ``--candidate-interval`` apart (ICE pacing): every room is active at once, as in the issue,
     at an offered load of about ``2 x rooms x (1 + candidates) / spread`` messages/s.
   - ``burst``: every room sends everything at the same instant: the messages/s figure is then
     the saturated throughput, and the latency is queueing behind ~all other messages.

   Messages per second = relays received / (first send -> last receive) of the round. The CPU
   share of server and load generator during the round tells which side was the bottleneck;
   "other processes" is the rest of the machine (from /proc/stat): if it is busy (a test run),
   the two sides share what is left and the figures are not this machine's capacity.
3. Server memory: VmRSS from /proc/<pid>/status before any client, with all clients connected
   and idle, and the peak (sampled every 50 ms, and the kernel's VmHWM).

Set-up that matters for the tail (see the report in git history, "p99 148 -> 4 ms"): the server
runs as `peercall signal` does (start-up objects frozen, full GC collections deferred,
uvloop when installed: ``--event-loop``), the load generator gets the same GC treatment after
connecting and prints its own collection pauses per round (they would count as latency), and
clients coalesce their cumulative acks (``--ack-delay``; 0 acks every relay, as before).
The per-address connection cap is lifted (every client comes from 127.0.0.1).

Usage: ``.venv/bin/python bench/bench_signaling_load.py [--rooms 1000] [--candidates 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signaling.cli import tune_gc
from signaling.client import DEFAULT_ACK_DELAY, WebSocketChannel
from signaling.errors import SignalingError
from signaling.messages import Answer, Candidate, Message, Offer

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (user + nice + system + irq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))
    return busy / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> str:
    return f"{kib / 1024:7.1f} MiB"


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(eq=False)
class Client:
    channel: WebSocketChannel
    offer: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


@dataclass
class Tally:
    """What the receivers saw during the current round."""

    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    expected: int = 0
    received: int = 0
    unmatched: int = 0
    last_receive: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, expected: int) -> None:
        self.sent_at.clear()
        self.latencies = []
        self.expected, self.received, self.unmatched = expected, 0, 0
        self.done.clear()


def key_of(message: Message) -> str | None:
    if isinstance(message, Offer | Answer):
        return message.sdp
    if isinstance(message, Candidate):
        return message.candidate
    return None


async def read_loop(client: Client, tally: Tally) -> None:
    with contextlib.suppress(SignalingError):
        while True:
            message = await client.channel.receive()
            now = time.perf_counter()
            sent = tally.sent_at.pop(key_of(message) or "", None)
            if sent is None:
                tally.unmatched += 1
            else:
                tally.latencies.append(now - sent)
            tally.received += 1
            tally.last_receive = now
            if tally.received >= tally.expected:
                tally.done.set()
            if isinstance(message, Offer):
                client.offer.set()


async def send(client: Client, tally: Tally, message: Message) -> None:
    key = key_of(message)
    assert key is not None
    tally.sent_at[key] = time.perf_counter()
    await client.channel.send(message)


class Ids:
    """Unique candidate foundations / SDP session ids, so every payload is its own dict key."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def sdp(ids: Ids) -> str:
    return (
        f"v=0\r\no=- {ids.next()} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    )


def candidate(ids: Ids, k: int) -> Candidate:
    return Candidate(f"candidate:{ids.next()} 1 udp 2130706431 127.0.0.1 {5000 + k} typ host")


@dataclass
class RoundResult:
    name: str
    messages: int
    expected: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float
    other_cpu: float  # everyone else on the machine: the figures are only fair when this is ~0


async def exchange(
    name: str,
    pairs: list[tuple[Client, Client]],
    tally: Tally,
    server_pid: int,
    *,
    candidates: int,
    spread: float,
    interval: float,
    limit: float,
) -> RoundResult:
    ids = Ids()
    tally.reset(len(pairs) * 2 * (1 + candidates))
    for _, callee in pairs:
        callee.offer.clear()

    async def trickle(client: Client) -> None:
        for k in range(candidates):
            if interval:
                await asyncio.sleep(interval)
            await send(client, tally, candidate(ids, k))

    async def caller_side(caller: Client) -> None:
        if spread:
            await asyncio.sleep(random.uniform(0, spread))
        await send(caller, tally, Offer(sdp(ids)))
        await trickle(caller)

    async def callee_side(callee: Client) -> None:
        await callee.offer.wait()
        await send(callee, tally, Answer(sdp(ids)))
        await trickle(callee)

    cpu0, own0, all0 = cpu_seconds(server_pid), time.process_time(), system_busy_seconds()
    start = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await asyncio.gather(
                *(caller_side(a) for a, _ in pairs), *(callee_side(b) for _, b in pairs)
            )
            await tally.done.wait()
    end = tally.last_receive if tally.received else time.perf_counter()
    wall = time.perf_counter() - start
    server_cpu = (cpu_seconds(server_pid) - cpu0) / wall
    client_cpu = (time.process_time() - own0) / wall
    return RoundResult(
        name,
        tally.received,
        tally.expected,
        max(end - start, 1e-9),
        tally.latencies,
        server_cpu,
        client_cpu,
        max(0.0, (system_busy_seconds() - all0) / wall - server_cpu - client_cpu),
    )


class GcPauses:
    """The load generator's own collection pauses: they delay receive timestamps too."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._t0)

    def take(self) -> list[float]:
        out, self.pauses = self.pauses, []
        return out


def start_server(event_loop: str) -> tuple[subprocess.Popen[str], str, Path]:
    errlog = Path(tempfile.mkstemp(prefix="peercall-signal-", suffix=".log")[1])
    with errlog.open("w") as err:  # a file, not a pipe nobody reads: the server must not block
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.cli", "signal", "--host", "127.0.0.1", "--port", "0"),
                *("--event-loop", event_loop),
                *("--max-connections-per-ip", "0"),  # all 2,000 clients come from 127.0.0.1
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )  # inherits our raised RLIMIT_NOFILE
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if line.startswith("listening on "):
            url = line.split()[-1]
        if line.startswith("ready"):
            break
    if not url:
        proc.kill()
        proc.wait()
        raise SystemExit(f"signaling server did not start: {errlog.read_text()[-2000:]}")
    return proc, url, errlog


async def run(args: argparse.Namespace) -> int:
    nofile = raise_nofile()
    clients_wanted = 2 * args.rooms
    if nofile < clients_wanted + 200:
        print(f"RLIMIT_NOFILE is {nofile}: too low for {clients_wanted} clients", file=sys.stderr)
        return 2
    proc, url, errlog = start_server(args.event_loop)
    pid = proc.pid
    peak = rss_kib(pid)
    stop_sampling = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop_sampling.is_set():
            with contextlib.suppress(OSError, ValueError):
                peak = max(peak, rss_kib(pid))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await stop_sampling.wait()

    sampler = asyncio.create_task(sample())
    tally = Tally()
    pairs: list[tuple[Client, Client]] = []
    clients: list[Client] = []
    try:
        await asyncio.sleep(0.5)
        rss_idle = rss_kib(pid)
        print(
            f"== signaling load: {args.rooms} rooms, {clients_wanted} WebSocketChannel clients, "
            f"server {url} (pid {pid}, event loop {args.event_loop}), {os.cpu_count()} cores, "
            f"client ack delay {args.ack_delay:g} s"
        )

        for i in range(args.rooms):
            room, secret = f"bench-{i}-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
            pair = tuple(
                Client(
                    WebSocketChannel(
                        url, room, secret, name=who, reconnect=False, ack_delay=args.ack_delay
                    )
                )
                for who in ("caller", "callee")
            )
            pairs.append((pair[0], pair[1]))
            clients.extend(pair)

        gate = asyncio.Semaphore(args.connect_concurrency)
        connect_times: list[float] = []
        failures: list[str] = []

        async def connect(client: Client) -> None:
            async with gate:
                t0 = time.perf_counter()
                try:
                    await client.channel.connect()
                except SignalingError as exc:
                    failures.append(str(exc))
                    return
                connect_times.append(time.perf_counter() - t0)
                client.reader = asyncio.create_task(read_loop(client, tally))

        t0 = time.perf_counter()
        await asyncio.gather(*(connect(c) for c in clients))
        if failures:
            print(f"  {len(failures)} clients failed to connect, e.g. {failures[0]}")
            return 1
        async with asyncio.timeout(30):
            await asyncio.gather(*(c.channel.wait_for_peer() for c in clients))
        connect_wall = time.perf_counter() - t0
        ms = [t * 1000 for t in connect_times]
        print(
            f"  connect + join + peer present, all {len(connect_times)} clients: "
            f"{connect_wall:6.2f} s ({len(connect_times) / connect_wall:5.0f} clients/s; "
            f"per client p50 {pct(ms, 0.5):.0f} ms, p99 {pct(ms, 0.99):.0f} ms; "
            f"{args.connect_concurrency} at a time)"
        )
        await asyncio.sleep(1.0)
        rss_connected = rss_kib(pid)
        # The load generator is the instrument: the same GC treatment as `peercall signal`
        # (signaling.cli.tune_gc), so that its own full collections of 2,000 clients' objects
        # do not show up as forwarding latency. Its remaining pauses are printed below.
        tune_gc()
        gc_pauses = GcPauses()

        rounds = [
            ("paced", args.spread, args.candidate_interval),
            ("burst", 0.0, 0.0),
        ]
        results = []
        round_gc: list[list[float]] = []
        for name, spread, interval in rounds:
            gc_pauses.take()
            results.append(
                await exchange(
                    name,
                    pairs,
                    tally,
                    pid,
                    candidates=args.candidates,
                    spread=spread,
                    interval=interval,
                    limit=args.timeout,
                )
            )
            round_gc.append(gc_pauses.take())
            await asyncio.sleep(1.0)  # let acks settle between rounds

        per_room = 2 * (1 + args.candidates)
        print(
            f"  each round: {per_room} messages per room (offer + answer + "
            f"{2 * args.candidates} candidates), {per_room * args.rooms} in all"
        )
        for r, pauses in zip(results, round_gc, strict=True):
            lat = [v * 1000 for v in r.latencies] or [float("nan")]
            what = (
                f"rooms start over {args.spread:g} s, "
                f"candidates {args.candidate_interval:g} s apart"
                if r.name == "paced"
                else "all rooms send everything at once"
            )
            lost = "" if r.messages == r.expected else f"  MISSING {r.expected - r.messages}"
            print(f"  {r.name} ({what}):")
            print(
                f"    forwarded {r.messages}/{r.expected} in {r.seconds:5.2f} s = "
                f"{r.messages / r.seconds:7.0f} messages/s{lost}"
            )
            print(
                f"    forward latency p50 {pct(lat, 0.5):6.1f} ms  p90 {pct(lat, 0.9):6.1f} ms  "
                f"p99 {pct(lat, 0.99):6.1f} ms  max {max(lat):6.1f} ms  (target p99 < 50 ms)"
            )
            longest = max(pauses, default=0.0) * 1000
            print(
                f"    load generator GC during the round: {len(pauses)} collections, "
                f"longest {longest:.1f} ms"
            )
            print(
                f"    CPU: server {100 * r.server_cpu:3.0f} % of a core, "
                f"load generator {100 * r.client_cpu:3.0f} % of a core, "
                f"other processes {100 * r.other_cpu:3.0f} % (of {os.cpu_count()} cores)"
            )
        total = sum(r.messages for r in results)
        print(f"  total messages forwarded: {total}")
        stop_sampling.set()
        await sampler
        print(
            f"  server RSS: idle {mib(rss_idle)}, {len(connect_times)} clients connected "
            f"{mib(rss_connected)} ({(rss_connected - rss_idle) / len(connect_times):.1f} KiB per "
            f"client), peak {mib(peak)} (VmHWM {mib(rss_kib(pid, 'VmHWM'))})"
        )
        return 0 if total == sum(r.expected for r in results) else 1
    finally:
        stop_sampling.set()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        t0 = time.perf_counter()
        for start in range(0, len(clients), args.connect_concurrency):
            batch = clients[start : start + args.connect_concurrency]
            await asyncio.gather(*(c.channel.close() for c in batch), return_exceptions=True)
        for c in clients:
            if c.reader is not None:
                c.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await c.reader
        closing = time.perf_counter() - t0
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        print(f"  closed all clients in {closing:.2f} s; server exited with {code}")
        errors = errlog.read_text().strip()
        if errors:
            print(f"  server stderr (last lines):\n{errors[-1500:]}")
        errlog.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rooms", type=int, default=1000, help="rooms; 2 clients each")
    parser.add_argument("--candidates", type=int, default=10, help="candidates per peer")
    parser.add_argument(
        "--spread", type=float, default=5.0, help="paced round: rooms start over this many s"
    )
    parser.add_argument(
        "--candidate-interval", type=float, default=0.05, help="paced round: s between candidates"
    )
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0, help="per exchange round")
    parser.add_argument(
        "--ack-delay",
        type=float,
        default=DEFAULT_ACK_DELAY,
        help="clients' ack coalescing delay (WebSocketChannel ack_delay; 0 acks every relay)",
    )
    parser.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the server's event loop (peercall signal --event-loop)",
    )
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
