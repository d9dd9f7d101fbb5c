"""Fixtures that run a real TURN server process on loopback: ours (``peercall relay``) or coturn.

Interop tests are parametrised over both, so coturn stays in the suite as the reference: a test
that passes on coturn and fails on ours points at our bug, one that fails on both at the test.
Servers write their output to a log file under ``tmp_path`` (never a pipe that could fill up);
readiness is proven by a real STUN Binding round trip, not by sleeping.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
REALM = "peercall"
USER = "alice"
PASSWORD = "wonderland"
SECRET = "north-secret"
MAGIC_COOKIE = 0x2112A442


def service_available() -> bool:
    """Whether our asyncio relay service exists yet (the core half may still be writing it)."""
    return importlib.util.find_spec("nat.service") is not None


def free_udp_tcp_port(host: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP on ``host``: TURN listens on both with one number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def has_ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (IPv6 tests skip on hosts without it)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def relay_port_range(size: int = 200) -> tuple[int, int]:
    """A random window below Linux's ephemeral range (32768+) for relay sockets.

    Servers skip ports that are taken, so a window shared by chance with another test only
    costs a retry; staying below the ephemeral range avoids clients' own sockets.
    """
    start = random.randrange(20000, 32768 - size)
    return start, start + size - 1


def stun_binding(host: str, port: int, timeout: float = 1.0) -> tuple[str, int]:
    """One STUN Binding request over UDP, built and parsed here by hand (RFC 8489 §5, §14.2).

    Returns the XOR-MAPPED-ADDRESS. Independent of nat.stun so it can judge it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    txid = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, MAGIC_COOKIE) + txid
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(request, (host, port))
        while True:
            data = sock.recv(2048)
            if len(data) >= 20 and data[8:20] == txid:
                break
    msg_type, length, cookie = struct.unpack("!HHI", data[:8])
    assert msg_type == 0x0101, f"not a Binding success response: {msg_type:#06x}"
    assert cookie == MAGIC_COOKIE
    offset = 20
    while offset + 4 <= 20 + length:
        attr_type, attr_len = struct.unpack("!HH", data[offset : offset + 4])
        value = data[offset + 4 : offset + 4 + attr_len]
        if attr_type == 0x0020:  # XOR-MAPPED-ADDRESS
            xport = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            if value[1] == 0x01:
                raw = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
                return socket.inet_ntop(socket.AF_INET, struct.pack("!I", raw)), xport
            mask = struct.pack("!I", MAGIC_COOKIE) + txid
            raw6 = bytes(a ^ b for a, b in zip(value[4:20], mask, strict=True))
            return socket.inet_ntop(socket.AF_INET6, raw6), xport
        offset += 4 + attr_len + (-attr_len % 4)
    raise AssertionError("Binding response has no XOR-MAPPED-ADDRESS")


def wait_until_serving(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll with STUN Binding requests until the server answers (or died)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            stun_binding(host, port, timeout=0.2)
        except (TimeoutError, OSError):
            continue
        return
    raise AssertionError(f"server did not answer STUN within 20 s:\n{log.read_text()}")


@dataclass
class TurnServer:
    """A running TURN server process and what a client needs to use it."""

    kind: str  # "peercall" or "coturn"
    auth: str  # "lt" (user/password) or "rest" (shared secret)
    host: str
    port: int
    relay_ports: tuple[int, int]
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    realm: str = REALM
    user: str = USER
    password: str = PASSWORD
    secret: str = SECRET

    def uri(self, transport: str = "udp") -> str:
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the server and wait; returns its exit code (killed if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"{self.kind} did not stop within {timeout} s of signal {sig}:\n{self.output()}"
                ) from None
        return self.proc.returncode


def peercall_command(port: int, relay_ports: tuple[int, int], auth: str, *extra: str) -> list[str]:
    """``python -m app.cli relay`` with test settings (loopback peers allowed: peers are local)."""
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "relay",
        "--listening-ip",
        LOOPBACK,
        "--listening-port",
        str(port),
        "--min-port",
        str(relay_ports[0]),
        "--max-port",
        str(relay_ports[1]),
        "--realm",
        REALM,
        "--allow-loopback-peers",
        "--user-quota",  # coturn's default: the uclient variants share one user at once
        "0",
        "--workers",  # as the headless relay runs on a 2-core machine (issue 14)
        "2",
    ]
    if auth == "lt":
        cmd += ["--user", f"{USER}:{PASSWORD}"]
    else:
        cmd += ["--use-auth-secret", "--static-auth-secret", SECRET]
    return [*cmd, *extra]


def coturn_command(
    port: int, relay_ports: tuple[int, int], auth: str, workdir: Path, *extra: str
) -> list[str]:
    """coturn's turnserver with the same meaning as :func:`peercall_command`."""
    cmd = [
        "turnserver",
        "-n",
        f"--listening-ip={LOOPBACK}",
        f"--listening-port={port}",
        f"--min-port={relay_ports[0]}",
        f"--max-port={relay_ports[1]}",
        f"--realm={REALM}",
        "--allow-loopback-peers",
        "--fingerprint",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--no-rfc5780",
        "--log-file=stdout",
        f"--pidfile={workdir / 'turnserver.pid'}",
    ]
    if auth == "lt":
        cmd += ["--lt-cred-mech", f"--user={USER}:{PASSWORD}"]
    else:
        cmd += ["--use-auth-secret", f"--static-auth-secret={SECRET}"]
    return [*cmd, *extra]


def start_server(kind: str, auth: str, workdir: Path, *extra: str) -> TurnServer:
    """Start ``kind``'s server on a free loopback port and wait until it answers STUN."""
    port = free_udp_tcp_port()
    relay_ports = relay_port_range()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{kind}-{auth}-{port}.log"
    if kind == "peercall":
        cmd = peercall_command(port, relay_ports, auth, *extra)
    else:
        cmd = coturn_command(port, relay_ports, auth, workdir, *extra)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
        )
    server = TurnServer(kind, auth, LOOPBACK, port, relay_ports, proc, log)
    try:
        wait_until_serving(LOOPBACK, port, proc, log)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


def server_kinds() -> list[object]:
    """The parameters for "which TURN server": ours, and coturn as the reference."""
    return [
        pytest.param(
            "peercall",
            marks=pytest.mark.skipif(
                not service_available(), reason="nat.service is not written yet"
            ),
        ),
        pytest.param(
            "coturn",
            marks=pytest.mark.skipif(
                shutil.which("turnserver") is None, reason="coturn is not installed"
            ),
        ),
    ]


@pytest.fixture(params=server_kinds())
def server_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def turn_server(server_kind: str, tmp_path: Path) -> Iterator[TurnServer]:
    """A long-term-credential TURN server (user alice) of each kind, on loopback."""
    server = start_server(server_kind, "lt", tmp_path)
    yield server
    server.stop()


@dataclass
class EchoPeer:
    """coturn's turnutils_peer: a UDP echo server the uclient relays to."""

    host: str
    port: int
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def echo_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoPeer]:
    if shutil.which("turnutils_peer") is None:
        pytest.skip("coturn's turnutils_peer is not installed")
    port = free_udp_tcp_port()
    log = tmp_path_factory.mktemp("peer") / "peer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["turnutils_peer", "-L", LOOPBACK, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    yield EchoPeer(LOOPBACK, port, proc)
    proc.terminate()
    proc.wait(10)


@dataclass(frozen=True)
class UclientResult:
    """What turnutils_uclient reported."""

    returncode: int
    sent: int
    received: int
    lost_percent: float | None
    output: str

    def summary(self) -> str:
        tail = "\n".join(self.output.splitlines()[-15:])
        return (
            f"rc={self.returncode} sent={self.sent} received={self.received} "
            f"lost={self.lost_percent}%\n{tail}"
        )


_TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
_LOST = re.compile(r"Total lost packets \d+ \(([\d.]+)%\)")


def parse_uclient(returncode: int, output: str) -> UclientResult:
    totals = _TOTALS.findall(output)
    lost = _LOST.findall(output)
    sent, received = (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)
    return UclientResult(returncode, sent, received, float(lost[-1]) if lost else None, output)
