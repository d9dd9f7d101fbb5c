"""Two hosts behind home-router NATs and a relay on a small "internet", from network namespaces.

No pytest dependency: bench/bench_ice.py uses it too. Topology (SETUP-NOTES, NAT-lab facts)::

    h1 198.19.1.10 -- r1 [198.19.1.1 | 198.18.0.11] --+
                                                      br0 198.18.0.1 (inet: peercall relay)
    h2 198.19.2.10 -- r2 [198.19.2.1 | 198.18.0.12] --+

Each router masquerades (port-preserving: endpoint-independent mapping, address+port dependent
filtering, a "port-restricted cone") and drops unsolicited packets from the internet, to itself
as well: without that a peer's early check leaves a conntrack entry on the router that clashes
with the host's later mapping. Namespace names carry the pid and a random suffix, so labs of
other engineers running at the same time never collide; ``close()`` deletes them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[3]
INTERNET = "198.18.0"
RELAY_IP = f"{INTERNET}.1"
RELAY_PORT = 3478
RELAY_USER, RELAY_PASSWORD, RELAY_REALM = "lab", "lab-secret", "natpair"

_ROUTER_RULES = """
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
table inet filter {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
}
"""


def unavailable_reason() -> str | None:
    """Why this machine cannot build the pair (not root, no ip/nft), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (scripts/install-system-deps.sh)"
    return None


def _run(argv: Sequence[str], stdin: str | None = None) -> None:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")


class NatPair:
    """Build with ``with NatPair() as lab:``; run programs in ``lab.host1``/``lab.host2``."""

    def __init__(self) -> None:
        tag = f"pcice-{os.getpid()}-{secrets.token_hex(2)}"
        self.inet, self.router1, self.router2 = f"{tag}-i", f"{tag}-r1", f"{tag}-r2"
        self.host1, self.host2 = f"{tag}-h1", f"{tag}-h2"
        self._namespaces: list[str] = []
        self._relay: subprocess.Popen[bytes] | None = None
        self.relay_log = Path(f"/tmp/{tag}-relay.log")

    def __enter__(self) -> NatPair:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _build(self) -> None:
        self._ns(self.inet)
        _run(["ip", "-n", self.inet, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.inet, "addr", "add", f"{RELAY_IP}/24", "dev", "br0"])
        _run(["ip", "-n", self.inet, "link", "set", "br0", "up"])
        for n, router, host in ((1, self.router1, self.host1), (2, self.router2, self.host2)):
            self._ns(router)
            self._ns(host)
            _run(["ip", "link", "add", "wan", "netns", router, "type", "veth",
                  "peer", "name", f"up{n}", "netns", self.inet])  # fmt: skip
            _run(["ip", "-n", self.inet, "link", "set", f"up{n}", "master", "br0", "up"])
            _run(["ip", "-n", router, "addr", "add", f"{INTERNET}.1{n}/24", "dev", "wan"])
            _run(["ip", "-n", router, "link", "set", "wan", "up"])
            _run(["ip", "link", "add", "lan", "netns", router, "type", "veth",
                  "peer", "name", "eth0", "netns", host])  # fmt: skip
            _run(["ip", "-n", router, "addr", "add", f"198.19.{n}.1/24", "dev", "lan"])
            _run(["ip", "-n", router, "link", "set", "lan", "up"])
            _run(["ip", "-n", host, "addr", "add", f"198.19.{n}.10/24", "dev", "eth0"])
            _run(["ip", "-n", host, "link", "set", "eth0", "up"])
            _run(["ip", "-n", host, "route", "add", "default", "via", f"198.19.{n}.1"])
            _run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            _run(["ip", "netns", "exec", router, "nft", "-f", "-"], stdin=_ROUTER_RULES)
        self._start_relay()

    def _start_relay(self) -> None:
        with self.relay_log.open("wb") as log:
            self._relay = subprocess.Popen(
                ["ip", "netns", "exec", self.inet, sys.executable, "-m", "app.cli", "relay",
                 "-L", RELAY_IP, "-p", str(RELAY_PORT), "--no-tls", "-r", RELAY_REALM,
                 "-u", f"{RELAY_USER}:{RELAY_PASSWORD}", "--min-port", "40000",
                 "--max-port", "40100", "--allowed-peer-ip", f"{INTERNET}.0-{INTERNET}.255"],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while b"relay ready" not in self.relay_log.read_bytes():
            if self._relay.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay did not start: {self.relay_log.read_text()}")
            time.sleep(0.05)

    @property
    def stun_uri(self) -> str:
        return f"stun:{RELAY_IP}:{RELAY_PORT}"

    @property
    def turn_uri(self) -> str:
        return f"turn:{RELAY_IP}:{RELAY_PORT}?transport=udp"

    def block_direct(self, blocked: bool) -> None:
        """Drop (or stop dropping) UDP between the two routers' WAN addresses, relay untouched."""
        for router, other in ((self.router1, 12), (self.router2, 11)):
            if blocked:
                rules = (
                    "table inet block {\n"
                    "  chain forward { type filter hook forward priority -10;"
                    f" ip saddr {INTERNET}.{other} drop; }}\n"
                    "  chain input { type filter hook input priority -10;"
                    f" ip saddr {INTERNET}.{other} drop; }}\n"
                    "}\n"
                )
                _run(["ip", "netns", "exec", router, "nft", "-f", "-"], stdin=rules)
            else:
                _run(["ip", "netns", "exec", router, "nft", "delete", "table", "inet", "block"])

    def block_udp(self, blocked: bool) -> None:
        """Router 1 forwards TCP only (outbound UDP blocked, as some networks do), or all again."""
        if blocked:
            rules = (
                "table inet udpblock {\n"
                "  chain forward { type filter hook forward priority -10;"
                ' iifname "lan" meta l4proto udp drop; }\n'
                "}\n"
            )
            _run(["ip", "netns", "exec", self.router1, "nft", "-f", "-"], stdin=rules)
        else:
            _run(
                ["ip", "netns", "exec", self.router1, "nft", "delete", "table", "inet", "udpblock"]
            )

    @property
    def turn_tcp_uri(self) -> str:
        return f"turn:{RELAY_IP}:{RELAY_PORT}?transport=tcp"

    def popen(self, host: str, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a program in a host namespace with pipes for stdin/stdout (text)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", host, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def close(self) -> None:
        if self._relay is not None:
            self._relay.terminate()
            try:
                self._relay.wait(10)
            except subprocess.TimeoutExpired:
                self._relay.kill()
                self._relay.wait()
            self._relay = None
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self._namespaces.clear()
        self.relay_log.unlink(missing_ok=True)


class Peer:
    """A running :mod:`tests.app.rtcfixes.icepeer` process, read line by line (JSON)."""

    def __init__(self, lab: NatPair, host: str, role: str, extra: Sequence[str]) -> None:
        argv = [sys.executable, "-m", "tests.app.rtcfixes.icepeer", "--role", role,
                "--stun", lab.stun_uri, *extra]  # fmt: skip
        self.proc = lab.popen(host, argv)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"peer said nothing for {timeout} s") from None
        if line is None:
            assert self.proc.stderr is not None
            raise RuntimeError(f"peer exited: {self.proc.stderr.read()[-3000:]}")
        data: dict[str, Any] = json.loads(line)
        return data

    def send(self, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(fields) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send(cmd="quit")
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump_thread.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@contextlib.contextmanager
def call(lab: NatPair, *extra: str) -> Iterator[tuple[Peer, Peer, dict[str, Any], dict[str, Any]]]:
    """h1 offers, h2 answers; yields both peers and their "connected" reports."""
    offerer = Peer(lab, lab.host1, "offer", extra)
    answerer = Peer(lab, lab.host2, "answer", extra)
    try:
        answerer.send(**offerer.read())
        offerer.send(**answerer.read())
        yield offerer, answerer, offerer.read(), answerer.read()
    finally:
        offerer.stop()
        answerer.stop()
