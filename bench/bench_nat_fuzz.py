"""Fuzz the STUN codec and the sans-I/O TURN core with a million inputs; print inputs/s, crashes.

Usage: .venv/bin/python bench/bench_nat_fuzz.py [--inputs 1000000] [--engine atheris|mutate]

Each input goes through ``nat.stun.parse_message`` (which may only raise ``StunError``) and
``nat.server.TurnServer`` (whose ``internal_errors`` counter must stay 0: it counts exceptions
the core caught from its own code). The harness plays the I/O layer: it opens fake relay
sockets when asked, learns nonces from 401/438 answers and signs structured requests with a
valid key, so inputs reach the authenticated handlers (Refresh, CreatePermission, ChannelBind,
Send, ChannelData, peer data) and not just the 401 path.

Peers include every IPv6 form that embeds the denied 10.0.0.1 (mapped, compatible, 6to4,
NAT64, local-use NAT64, Teredo): a SendToPeer to any of them is a crash (a deny-list bypass).

Input kinds, picked by the first byte: raw bytes on UDP, raw bytes on TCP (through the stream
framer), a structured signed request with fuzzed attributes, peer data on a relay, a clock tick.

Engines: ``atheris`` (coverage-guided libFuzzer, used when installed) and ``mutate`` (a
deterministic mutation loop over valid seed messages; ``--seed`` reproduces a run).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import logging
import os
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nat import stun
from nat.auth import long_term_key
from nat.config import RelayConfig
from nat.errors import ChannelDataError, StunError
from nat.five_tuple import Transport
from nat.server import CloseRelay, OpenRelay, SendToClient, SendToPeer, TurnServer

REALM = "peercall"
USER = "alice"
KEY = long_term_key(USER, REALM, "pw")
SERVER_ADDR = ("127.0.0.1", 3478)
UDP = Transport("udp", SERVER_ADDR)
TCP = Transport("tcp", SERVER_ADDR)
CLIENTS = [("127.0.0.1", 50000 + i) for i in range(4)] + [("::1", 50010)]
# 10.0.0.1 is denied (private); so is each IPv6 form embedding it (IPv4-mapped, -compatible,
# 6to4, NAT64, local-use NAT64 /48 and /96, Teredo client): nothing may ever be sent to them.
DENIED_PEERS = [
    ("10.0.0.1", 1),
    ("::ffff:10.0.0.1", 2),
    ("::10.0.0.1", 3),
    ("2002:a00:1::1", 4),
    ("64:ff9b::a00:1", 5),
    ("64:ff9b:1:a00:0:100::", 6),
    ("64:ff9b:1::a00:1", 7),
    ("2001:0:c633:6401:0:ffff:f5ff:fffe", 8),
]
DENIED_IPS = {ipaddress.ip_address(host) for host, _ in DENIED_PEERS}
PEERS = [("127.0.0.1", 60000), ("127.0.0.1", 60001), ("::1", 60002), *DENIED_PEERS]
METHODS = [m for m in stun.Method if m is not stun.Method.DATA]
METHOD_VALUES = {int(m) for m in stun.Method}
ATTRS = list(stun.ATTRIBUTES.values())
KINDS = 6  # raw-udp, raw-tcp, structured, structured, peer-data, tick


class Crash(Exception):
    """An input made the codec raise something else than StunError, or the core fail."""


class Harness:
    """A TurnServer plus a fake I/O layer; :meth:`one_input` is the fuzz target."""

    def __init__(self) -> None:
        self.config = RelayConfig(
            users=((USER, KEY),),
            realm=REALM,
            listening_ips=("127.0.0.1", "::1"),  # IPv6 and dual allocations too
            allow_loopback_peers=True,
            user_quota=8,
            total_quota=64,
            max_bps=0,
        )
        self.server = TurnServer(self.config, random_bytes=os.urandom)
        self.now = 1_700_000_000.0
        self.nonce: bytes = b""
        self.next_port = 20000
        self.relays: list[tuple[str, int]] = []
        self.tcp_buffers: dict[tuple[str, int], bytearray] = {}
        self.inputs = 0
        self.parsed = 0
        self.handled = 0
        self.responses: dict[str, int] = {}
        self.started = time.perf_counter()

    # --- the fake I/O layer ------------------------------------------------------------------

    def perform(self, actions: list[Any], depth: int = 0) -> None:
        for action in actions:
            if isinstance(action, OpenRelay):
                if self.next_port % 17 == 0:  # sometimes no port is free
                    self.next_port += 1
                    self.perform(self.server.relay_failed(action.five_tuple, self.now), depth)
                    continue
                relay = (action.host, self.next_port)
                self.next_port = 20000 + (self.next_port - 19999) % 20000
                reserved = (action.host, relay[1] + 1) if action.reserve_next else None
                self.relays.append(relay)
                additional = None
                if action.additional_host is not None and self.next_port % 5:
                    additional = (action.additional_host, relay[1] + 2)
                    self.relays.append(additional)
                out = self.server.relay_opened(
                    action.five_tuple, relay, reserved, self.now, additional=additional
                )
                self.perform(out, depth + 1)
            elif isinstance(action, CloseRelay):
                if action.relay in self.relays:
                    self.relays.remove(action.relay)
            elif isinstance(action, SendToClient):
                self.learn(action.data)
            elif (
                isinstance(action, SendToPeer)
                and ipaddress.ip_address(action.peer[0]) in DENIED_IPS
            ):
                raise Crash(f"relayed to the denied peer {action.peer}")

    def learn(self, data: bytes) -> None:
        """Keep the newest NONCE the server handed out, to sign the next requests with."""
        if len(data) < 20 or data[0] & 0xC0:
            return
        try:
            message = stun.parse_message(data)
        except StunError:
            raise Crash(f"the server sent a message its own codec rejects: {data.hex()}") from None
        outcome = "ok" if message.cls == stun.MsgClass.SUCCESS else "error"
        name = stun.Method(message.method).name if message.method in METHOD_VALUES else "?"
        key = f"{name} {outcome}"
        self.responses[key] = self.responses.get(key, 0) + 1
        nonce = message.get(stun.NONCE)
        if nonce:
            self.nonce = nonce

    # --- one input -------------------------------------------------------------------------

    def parse(self, data: bytes) -> None:
        """The codec on arbitrary bytes: a Message, or a StunError/ChannelDataError."""
        try:
            if data and data[0] & 0xC0 == 0x40:
                stun.parse_channel_data(data)
            else:
                stun.parse_message(data)
            self.parsed += 1
        except (StunError, ChannelDataError):
            pass

    def handle(self, data: bytes, client: tuple[str, int], transport: Transport) -> None:
        self.perform(self.server.handle(data, client, transport, self.now))
        self.handled += 1

    def feed_tcp(self, data: bytes, client: tuple[str, int]) -> None:
        """Bytes on a TCP connection: framed as the service does (RFC 8656 §12.5)."""
        buffer = self.tcp_buffers.setdefault(client, bytearray())
        buffer += data
        while True:
            try:
                size = stun.stream_frame_length(buffer)
            except StunError:  # not STUN: the service drops the connection
                del self.tcp_buffers[client]
                self.perform(self.server.connection_lost(client, TCP, self.now))
                return
            if size is None or size > len(buffer):
                if len(buffer) > 70000:  # a frame can't be this big: drop the connection
                    raise Crash("stream framer asked for more than 64 KiB")
                return
            frame = bytes(buffer[:size])
            del buffer[:size]
            self.handle(frame, client, TCP)

    def structured(self, rng: random.Random) -> bytes:
        """A well-formed, correctly signed request or indication with fuzzed attributes."""
        method = rng.choice(METHODS)
        cls = stun.MsgClass.INDICATION if method is stun.Method.SEND else stun.MsgClass.REQUEST
        message = stun.Message(method, cls, rng.randbytes(12))
        for _ in range(rng.randrange(6)):
            attr = rng.choice(ATTRS)
            if attr in (stun.MESSAGE_INTEGRITY, stun.FINGERPRINT):
                continue
            message.add(attr, fuzz_value(attr, rng))
        if method is stun.Method.ALLOCATE and rng.random() < 0.8:
            message.add(stun.REQUESTED_TRANSPORT, rng.choice([17, 17, 17, 6, 0]))
        if method in (stun.Method.CREATE_PERMISSION, stun.Method.CHANNEL_BIND, stun.Method.SEND):
            message.add(stun.XOR_PEER_ADDRESS, rng.choice(PEERS))
        if method is stun.Method.CHANNEL_BIND:
            message.add(stun.CHANNEL_NUMBER, rng.choice([0x4000, 0x4001, 0x7FFF, 0x3FFF, 0x8000]))
        if method is stun.Method.SEND:
            message.add(stun.DATA, rng.randbytes(rng.randrange(64)))
            return message.encode(add_fingerprint=rng.random() < 0.5)
        if rng.random() < 0.9:
            message.add(stun.USERNAME, USER if rng.random() < 0.95 else "mallory")
            message.add(stun.REALM, REALM)
            message.add(stun.NONCE, self.nonce or b"x")
            key = KEY if rng.random() < 0.95 else bytes(16)
            return message.encode(key, add_fingerprint=rng.random() < 0.5)
        return message.encode(add_fingerprint=rng.random() < 0.5)

    def one_input(self, data: bytes) -> None:
        """The fuzz target: route ``data`` by its first byte; raise Crash on a real failure."""
        if not self.inputs:
            self.started = time.perf_counter()
        self.inputs += 1
        if not data:
            return
        before = self.server.counters.internal_errors
        kind, body = data[0] % KINDS, data[1:]
        client = CLIENTS[data[0] // KINDS % len(CLIENTS)]
        if kind == 0:
            self.parse(body)
            fast = self.server.binding_fast(body, client)
            if fast is not None:  # the I/O layer's lean Binding answer must match the core's
                full = self.server.handle(body, client, UDP, self.now)
                if [getattr(a, "data", None) for a in full] != [fast]:
                    raise Crash(f"binding_fast differs from handle on input {data.hex()}")
            self.handle(body, client, UDP)
        elif kind == 1:
            self.parse(body)
            self.feed_tcp(body, client)
        elif kind in (2, 3):
            rng = random.Random(body)
            message = self.structured(rng)
            self.parse(message)
            transport = UDP if kind == 2 else TCP
            if transport is TCP:
                self.feed_tcp(message, client)
            else:
                self.handle(message, client, transport)
            if rng.random() < 0.3:  # then some ChannelData on whatever channel may be bound
                payload = stun.encode_channel_data(0x4000 + rng.randrange(3), body[:64])
                self.handle(payload, client, UDP)
        elif kind == 4:
            if self.relays:
                relay = self.relays[len(body) % len(self.relays)]
                peer = PEERS[len(body) % len(PEERS)]
                self.perform(self.server.relay_received(relay, body, peer, self.now))
        else:
            step = int.from_bytes(body[:2] or b"\x01", "big")
            self.now += step
            self.perform(self.server.tick(self.now))
        if self.server.counters.internal_errors != before:
            raise Crash(f"TurnServer caught an internal error on input {data.hex()}")


def fuzz_value(attr: stun.Attr[Any], rng: random.Random) -> Any:
    """A value of the right Python type for ``attr`` (edge cases included)."""
    name = attr.name
    if name == "ADDRESS-ERROR-CODE":
        return rng.choice([1, 2, 0]), stun.ErrorCode(rng.choice([440, 508, 300]), "x")
    if "ADDRESS" in name or name in ("ALTERNATE-SERVER", "RESPONSE-ORIGIN", "OTHER-ADDRESS"):
        if "FAMILY" in name:
            return rng.choice([1, 2, 3, 0, 255])
        return rng.choice([*PEERS, ("0.0.0.0", 0), ("255.255.255.255", 65535), ("fe80::1", 9)])
    if name in ("USERNAME", "REALM", "SOFTWARE"):
        return rng.choice(["", USER, REALM, "x" * rng.randrange(300), "\u00e9\u30de"])
    if name in ("LIFETIME", "PRIORITY"):
        return rng.choice([0, 1, 600, 3600, 2**32 - 1, rng.randrange(2**32)])
    if name in ("CHANNEL-NUMBER", "REQUESTED-TRANSPORT"):
        return rng.choice([0, 17, 6, 0x4000, 0x7FFF, 0xFFFF]) & (
            0xFF if name == "REQUESTED-TRANSPORT" else 0xFFFF
        )
    if name == "ERROR-CODE":
        return stun.ErrorCode(rng.choice([300, 400, 401, 438, 699]), "x")
    if name == "UNKNOWN-ATTRIBUTES":
        return tuple(rng.randrange(65536) for _ in range(rng.randrange(4)))
    if name in ("DONT-FRAGMENT", "USE-CANDIDATE", "EVEN-PORT"):
        return rng.random() < 0.5
    if name in ("RESERVATION-TOKEN", "ICE-CONTROLLED", "ICE-CONTROLLING"):
        return rng.randbytes(8)
    return rng.randbytes(rng.randrange(48))


def seed_corpus() -> list[bytes]:
    """Valid messages of every kind (prefixed by their input-kind byte) to mutate from."""
    rng = random.Random(0)
    tid = bytes(range(12))
    seeds = [
        stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, tid).encode(),
        stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, tid).encode(add_fingerprint=True),
        stun.Message(stun.Method.ALLOCATE, stun.MsgClass.REQUEST, tid)
        .add(stun.REQUESTED_TRANSPORT, 17)
        .encode(),
        stun.Message(stun.Method.ALLOCATE, stun.MsgClass.REQUEST, tid)
        .add(stun.REQUESTED_TRANSPORT, 17)
        .add(stun.USERNAME, USER)
        .add(stun.REALM, REALM)
        .add(stun.NONCE, b"0123456789abcdef")
        .encode(KEY, add_fingerprint=True),
        stun.Message(stun.Method.SEND, stun.MsgClass.INDICATION, tid)
        .add(stun.XOR_PEER_ADDRESS, PEERS[0])
        .add(stun.DATA, b"hello")
        .encode(),
        stun.encode_channel_data(0x4000, b"payload"),
    ]
    corpus = [bytes([kind]) + seed for seed in seeds for kind in (0, 1)]
    corpus += [bytes([kind]) + rng.randbytes(16) for kind in (2, 3) for _ in range(8)]
    corpus += [b"\x04" + b"peer data", b"\x05\x00\x3c"]
    return corpus


def mutate(seed: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    """One random mutation of ``seed``: flips, overwrites, inserts, cuts, length lies, splices."""
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        pos = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[pos] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x40, rng.randrange(256)))
        elif op == 2:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and len(data) > 1:
            del data[pos : pos + rng.randrange(1, 9)]
        elif op == 4:
            del data[rng.randrange(len(data) + 1) :]
        elif op == 5 and len(data) >= 5:  # lie in the STUN length field
            struct.pack_into(">H", data, 3, rng.choice((0, 4, 8, len(data), 0xFFFF, pos)))
        elif op == 6:  # splice another seed's tail
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            data[pos:] = other[cut:]
        elif op == 7 and len(data) > 24:  # duplicate an attribute-sized chunk
            start = rng.randrange(21, len(data))
            data[start:start] = data[start : start + 8]
    if data:
        data[0] = seed[0] if rng.random() < 0.9 else rng.randrange(256)
    return bytes(data)


def run_mutate(harness: Harness, inputs: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    corpus = seed_corpus()
    crashes: list[str] = []
    for i in range(inputs):
        data = corpus[i] if i < len(corpus) else mutate(rng.choice(corpus), rng, corpus)
        try:
            harness.one_input(data)
        except Crash as exc:
            crashes.append(str(exc))
        except Exception as exc:  # the codec raised something it should not
            crashes.append(f"{type(exc).__name__}: {exc} on input {data.hex()}")
        if i and i % 200_000 == 0:
            print(f"  {i} inputs...", flush=True)
    return crashes


def run_atheris(harness: Harness, inputs: int, seed: int, report: Callable[[], None]) -> None:
    """Coverage-guided run; libFuzzer exits the process after the last input, and a Crash
    (or any exception) stops it with the input saved as ``crash-<sha1>``."""
    import atheris

    corpus_dir = Path(tempfile.mkdtemp(prefix="nat-fuzz-corpus-"))
    for data in seed_corpus():
        (corpus_dir / hashlib.sha1(data).hexdigest()).write_bytes(data)

    atheris.instrument_all()  # coverage feedback from every loaded module, nat's included

    def target(data: bytes) -> None:
        try:
            harness.one_input(data)
        finally:
            if harness.inputs == inputs:  # libFuzzer's last run: it exits without atexit
                report()

    atheris.Setup(
        [sys.argv[0], f"-runs={inputs}", f"-seed={seed}", "-max_len=1024", str(corpus_dir)],
        target,
    )
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs to run")
    parser.add_argument("--seed", type=int, default=1, help="random seed (reproducible runs)")
    try:
        import atheris  # noqa: F401

        default_engine = "atheris"
    except ImportError:
        default_engine = "mutate"
    parser.add_argument("--engine", choices=["atheris", "mutate"], default=default_engine)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the core logs each internal error; we count them
    harness = Harness()

    def report() -> None:
        elapsed = time.perf_counter() - harness.started
        counters = harness.server.counters
        print(f"engine: {args.engine}, seed {args.seed}")
        print(
            f"inputs: {harness.inputs} in {elapsed:.1f} s = {harness.inputs / elapsed:,.0f} "
            f"inputs/s ({harness.parsed} parsed as STUN/ChannelData, {harness.handled} "
            f"through TurnServer.handle)"
        )
        print(
            f"server: {counters.stun_requests} requests, {counters.error_responses} error "
            f"responses, {counters.malformed} malformed, {counters.relayed_packets} relayed, "
            f"{len(harness.server.allocations.by_five_tuple)} live allocations, "
            f"internal errors {counters.internal_errors}"
        )
        print("responses: " + ", ".join(f"{k} {v}" for k, v in sorted(harness.responses.items())))

    if args.engine == "atheris":
        run_atheris(harness, args.inputs, args.seed, report)
        return 0  # not reached: libFuzzer exits
    crashes = run_mutate(harness, args.inputs, args.seed)
    report()
    print(f"crashes: {len(crashes)}")
    for crash in crashes[:10]:
        print(f"  {crash[:300]}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
