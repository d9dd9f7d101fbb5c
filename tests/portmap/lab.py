"""A home router in network namespaces: the "internet", a router running miniupnpd, a LAN.

    internet ns  198.18.0.1 + 198.18.0.3  (coturn, STUN only, RFC 5780: miniupnpd's own check)
        | 198.18.0.0/24
    router ns    WAN 198.18.0.2, LAN 198.19.1.1; nftables masquerade + miniupnpd's chains
        | 198.19.1.0/24
    host ns      198.19.1.2 (the one who hosts)    friend ns 198.19.1.3 (same LAN)

miniupnpd refuses a reserved WAN address (198.18.0.0/15 is RFC 2544 space) unless its STUN
check finds the router "1:1 behind an unrestricted NAT", which needs an RFC 5780 STUN server
with two addresses: hence coturn on two addresses of the internet namespace. Names carry the
pid and a random suffix; :meth:`RouterLab.close` deletes everything, also after a failure.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WAN_IP = "198.18.0.2"
INTERNET_IP = "198.18.0.1"
INTERNET_IP2 = "198.18.0.3"
ROUTER_LAN_IP = "198.19.1.1"
HOST_IP = "198.19.1.2"
FRIEND_IP = "198.19.1.3"
FAR_WAN_IP = "198.18.0.4"  # the friend's own router, elsewhere on the internet
FAR_LAN_IP = "198.19.2.1"
FAR_FRIEND_IP = "198.19.2.2"
RELAY_LAB_IP = "198.18.0.5"  # a relay on the "internet" (the comparison in the benchmark)
TOOLS = ("ip", "nft", "miniupnpd", "upnpc", "turnserver")


def skip_unless_lab() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (scripts/install-system-deps.sh)")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, check=check, capture_output=True, text=True, timeout=30, cwd=str(REPO)
    )


_STUN_PROBE = (
    "import asyncio, sys\n"
    "from nat.portmap.stunaddr import public_address\n"
    "sys.exit(0 if asyncio.run(public_address(sys.argv[1], within=1.0)) else 1)\n"
)


@dataclass(frozen=True)
class PortEntry:
    protocol: str
    external_port: int
    internal_ip: str
    internal_port: int
    description: str


_ENTRY = re.compile(r"^\s*\d+\s+(UDP|TCP)\s+(\d+)->([\d.]+):(\d+)\s+'([^']*)'")


class RouterLab:
    def __init__(
        self,
        workdir: Path,
        *,
        upnp: bool = True,
        min_lifetime: int = 120,
        far_nat: str | None = None,
    ) -> None:
        """``far_nat`` ("cone" or "symmetric") adds a second router with a friend behind it."""
        tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.inet, self.router = f"pmi{tag}", f"pmr{tag}"
        self.host, self.friend = f"pmh{tag}", f"pmf{tag}"
        self.far_router, self.far_friend = f"pmR{tag}", f"pmF{tag}"
        self.far_nat = far_nat
        self.tag = tag
        self.dir = workdir
        self.upnp = upnp
        self.min_lifetime = min_lifetime
        self.procs: list[subprocess.Popen[bytes]] = []
        self.http_port = 0
        self.namespaces: list[str] = []

    # --- set-up ---------------------------------------------------------------------------
    def _ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def _veth(self, a_ns: str, a: str, b_ns: str, b: str) -> None:
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", a_ns)
        sh("ip", "link", "set", b, "netns", b_ns)

    def start(self) -> RouterLab:
        t = self.tag
        for ns in (self.inet, self.router, self.host, self.friend):
            self._ns(ns)
        self.wan, self.lan = f"w{t}", f"l{t}"
        # The "internet" is a bridge, so that a second router can join it.
        sh("ip", "-n", self.inet, "link", "add", f"i{t}", "type", "bridge")
        self._veth(self.inet, f"iw{t}", self.router, self.wan)
        sh("ip", "-n", self.inet, "link", "set", f"iw{t}", "master", f"i{t}")
        sh("ip", "-n", self.inet, "link", "set", f"iw{t}", "up")
        sh("ip", "-n", self.router, "link", "add", f"br{t}", "type", "bridge")
        self._veth(self.router, f"lh{t}", self.host, f"h{t}")
        self._veth(self.router, f"lf{t}", self.friend, f"f{t}")
        r = self.router
        for port in (f"lh{t}", f"lf{t}"):
            sh("ip", "-n", r, "link", "set", port, "master", f"br{t}")
            sh("ip", "-n", r, "link", "set", port, "up")
        self.lan = f"br{t}"
        sh("ip", "-n", self.inet, "addr", "add", f"{INTERNET_IP}/24", "dev", f"i{t}")
        sh("ip", "-n", self.inet, "addr", "add", f"{INTERNET_IP2}/24", "dev", f"i{t}")
        sh("ip", "netns", "exec", self.inet, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", self.inet, "link", "set", f"i{t}", "up")
        sh("ip", "-n", r, "addr", "add", f"{WAN_IP}/24", "dev", self.wan)
        sh("ip", "-n", r, "link", "set", self.wan, "up")
        sh("ip", "-n", r, "addr", "add", f"{ROUTER_LAN_IP}/24", "dev", self.lan)
        sh("ip", "-n", r, "link", "set", self.lan, "up")
        sh("ip", "-n", r, "route", "add", "default", "via", INTERNET_IP)
        for ns, dev, ip in ((self.host, f"h{t}", HOST_IP), (self.friend, f"f{t}", FRIEND_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", ROUTER_LAN_IP)
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = self.dir / "router.nft"
        rules.write_text(
            f"""table inet pcfilter {{
  # A home router drops unsolicited WAN packets to itself, except here the answers of the
  # RFC 5780 STUN check miniupnpd runs at start (they come from the server's other address).
  chain input {{ type filter hook input priority 0; policy accept;
    iifname "{self.wan}" ct state established,related accept
    iifname "{self.wan}" ip saddr {{ {INTERNET_IP}, {INTERNET_IP2} }} udp sport {{ 3478, 3479 }} \
      accept
    iifname "{self.wan}" drop; }}
  chain forward {{ type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "{self.lan}" accept
    jump miniupnpd; }}
  chain miniupnpd {{ }}
}}
table inet pcnat {{
  chain prerouting {{ type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd; }}
  chain postrouting {{ type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd;
    oifname "{self.wan}" masquerade; }}
  chain prerouting_miniupnpd {{ }}
  chain postrouting_miniupnpd {{ }}
}}
"""
        )
        sh("ip", "netns", "exec", r, "nft", "-f", str(rules))
        # A default route for the internet (into a dead end): without one, sends to
        # unroutable private candidates fail with ENETUNREACH (SETUP-NOTES).
        sh("ip", "-n", self.inet, "link", "add", f"d{t}", "type", "veth", "peer", "name", f"D{t}")
        sh("ip", "-n", self.inet, "link", "set", f"d{t}", "up")  # its peer stays down
        sh("ip", "-n", self.inet, "route", "add", "default", "dev", f"d{t}")
        if self.far_nat:
            self._far_router()
        if self.upnp:
            self._start_stun()
            self._start_miniupnpd()
        return self

    def _far_router(self) -> None:
        """The friend's home: a router (cone or symmetric NAT) with one computer behind it."""
        t, r, f = self.tag, self.far_router, self.far_friend
        self._ns(r)
        self._ns(f)
        self._veth(self.inet, f"iW{t}", r, f"W{t}")
        sh("ip", "-n", self.inet, "link", "set", f"iW{t}", "master", f"i{t}")
        sh("ip", "-n", self.inet, "link", "set", f"iW{t}", "up")
        self._veth(r, f"L{t}", f, f"F{t}")
        sh("ip", "-n", r, "addr", "add", f"{FAR_WAN_IP}/24", "dev", f"W{t}")
        sh("ip", "-n", r, "link", "set", f"W{t}", "up")
        sh("ip", "-n", r, "addr", "add", f"{FAR_LAN_IP}/24", "dev", f"L{t}")
        sh("ip", "-n", r, "link", "set", f"L{t}", "up")
        sh("ip", "-n", r, "route", "add", "default", "via", INTERNET_IP)
        sh("ip", "-n", f, "addr", "add", f"{FAR_FRIEND_IP}/24", "dev", f"F{t}")
        sh("ip", "-n", f, "link", "set", f"F{t}", "up")
        sh("ip", "-n", f, "route", "add", "default", "via", FAR_LAN_IP)
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Plain masquerade keeps the port for every destination (a port-restricted cone);
        # "random" gives a new port per destination (symmetric), as SETUP-NOTES measured.
        how = "masquerade random" if self.far_nat == "symmetric" else "masquerade"
        rules = self.dir / "far-router.nft"
        rules.write_text(
            f"""table inet far {{
  chain input {{ type filter hook input priority 0; policy accept;
    iifname "W{t}" ct state established,related accept
    iifname "W{t}" drop; }}
  chain forward {{ type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "L{t}" accept; }}
  chain postrouting {{ type nat hook postrouting priority 100; policy accept;
    oifname "W{t}" {how}; }}
}}
"""
        )
        sh("ip", "netns", "exec", r, "nft", "-f", str(rules))

    def add_internet_address(self, ip: str) -> None:
        sh("ip", "-n", self.inet, "addr", "add", f"{ip}/24", "dev", f"i{self.tag}")

    def popen(self, ns: str, *cmd: str, log: Path, **kw: object) -> subprocess.Popen[bytes]:
        out = log.open("wb")
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            **kw,  # type: ignore[call-overload]
        )
        out.close()
        self.procs.append(proc)
        return proc

    def _start_stun(self) -> None:
        self.popen(
            self.inet,
            "turnserver",
            "-n",
            "--stun-only",
            "--listening-ip",
            INTERNET_IP,
            "--listening-ip",
            INTERNET_IP2,
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--log-file",
            "stdout",
            "--pidfile",
            str(self.dir / "turnserver.pid"),
            log=self.dir / "stun.log",
        )
        log = self.dir / "stun.log"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # Ready when both addresses answer a Binding request from the router.
            if all(
                sh(
                    "ip",
                    "netns",
                    "exec",
                    self.router,
                    sys.executable,
                    "-c",
                    _STUN_PROBE,
                    ip,
                    check=False,
                ).returncode
                == 0
                for ip in (INTERNET_IP, INTERNET_IP2)
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"coturn (STUN) did not start:\n{log.read_text()[-2000:]}")

    def _start_miniupnpd(self) -> None:
        conf = self.dir / "miniupnpd.conf"
        conf.write_text(
            f"""ext_ifname={self.wan}
listening_ip={self.lan}
port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
min_lifetime={self.min_lifetime}
uuid=392290db-9eb4-437b-8c75-{secrets.token_hex(6)}
upnp_table_name=pcfilter
upnp_nat_table_name=pcnat
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
ext_perform_stun=yes
ext_stun_host={INTERNET_IP}
ext_stun_port=3478
allow 1024-65535 198.19.1.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""
        )
        log = self.dir / "miniupnpd.log"
        self.popen(
            self.router,
            "miniupnpd",
            "-d",
            "-f",
            str(conf),
            "-P",
            str(self.dir / "miniupnpd.pid"),
            log=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if "Port forwarding is now enabled" in text and "NAT-PMP/PCP traffic" in text:
                match = re.search(r"HTTP listening on port (\d+)", text)
                if match:
                    self.http_port = int(match.group(1))
                    return
            if "EXITING" in text or "Performing STUN failed" in text:
                break
            time.sleep(0.2)
        raise RuntimeError(f"miniupnpd did not become ready:\n{log.read_text()[-3000:]}")

    @property
    def upnp_location(self) -> str:
        return f"http://{ROUTER_LAN_IP}:{self.http_port}/rootDesc.xml"

    def upnpc_list(self, ns: str | None = None) -> list[PortEntry]:
        """The router's forwardings as ``upnpc -l`` shows them from the LAN.

        ``-u`` names the router's description URL: upnpc's own discovery rejects an IGD
        whose external address is in reserved space (the lab's 198.18.0.2) as "not connected".
        """
        result = sh("ip", "netns", "exec", ns or self.host, "upnpc", "-u", self.upnp_location, "-l")
        entries = []
        for line in result.stdout.splitlines():
            m = _ENTRY.match(line)
            if m:
                entries.append(
                    PortEntry(m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5))
                )
        return entries

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
