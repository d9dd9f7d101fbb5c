"""The NAT lab: a small internet of Linux network namespaces, veth pairs and nftables.

See the package docstring (tests/netlab/__init__.py) for the API and the topology. This module
has no pytest dependency so that scripts/netlab.py and bench/bench_netlab.py use the same lab.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

# Every namespace this lab creates is named PREFIX-<pid>-<lab>-<role>; the pid lets
# clean_stale() tell a leftover of a dead run from another engineer's running lab.
PREFIX = "pcnl"
REPO = Path(__file__).resolve().parents[2]

NatKind = Literal["cone", "symmetric", "udp-blocked", "public"]
NAT_KINDS: tuple[NatKind, ...] = ("cone", "symmetric", "udp-blocked", "public")

# The only addresses the lab uses (SETUP-NOTES): the "internet" and one /24 per LAN.
INTERNET_PREFIX = "198.18.0"
INTERNET_HOST = f"{INTERNET_PREFIX}.1"
LAN_PREFIX = "198.19"
# Relays must be told these are fine peers: their default deny list covers 198.18.0.0/15.
ALLOWED_PEER_RANGES = ("198.18.0.0-198.18.0.255", "198.19.0.0-198.19.255.255")

# The second address of the internet host: with INTERNET_HOST, the two addresses an RFC 5780
# STUN server needs (miniupnpd's check of its reserved WAN address, see Lab.add_lan(upnp=)).
INTERNET_HOST2 = f"{INTERNET_PREFIX}.2"
STUN5780_PORT = 3478
UPNP_TOOLS = ("miniupnpd", "upnpc", "turnserver")

RELAY_USER = "lab"
RELAY_PASSWORD = "lab-secret"
RELAY_REALM = "netlab"

_lab_counter = itertools.count(1)


class LabError(RuntimeError):
    """A lab command failed (the message names the command and its stderr)."""


def _cmd(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=30
    )
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _veth(name: str, ns: str, peer: str, peer_ns: str) -> None:
    """A veth pair created straight inside two namespaces: no name ever exists in the root one."""
    _cmd(["ip", "link", "add", name, "netns", ns, "type", "veth", "peer", "name", peer, "netns",
          peer_ns])  # fmt: skip


def netns_unavailable_reason() -> str | None:
    """Why this machine cannot build the lab, or None when it can (root, ip, nft, netns)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (scripts/install-system-deps.sh)"
    probe = f"{PREFIX}-{os.getpid()}-0-probe"
    try:
        _cmd(["ip", "netns", "add", probe])
    except (LabError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    finally:
        _cmd(["ip", "netns", "del", probe], check=False)
    return None


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def clean_stale() -> list[str]:
    """Delete this lab's namespaces left behind by runs whose process is gone.

    Only names with our prefix whose creator pid no longer exists: a lab another engineer's
    test is running right now is never touched. Processes still inside a stale namespace
    (a relay or call the dead run left) are killed first, or the namespace would live on.
    """
    removed = []
    for line in _cmd(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        if _pid_alive(int(parts[1])):
            continue
        for pid in _cmd(["ip", "netns", "pids", name], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _cmd(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


@dataclass
class Host:
    """One machine of the lab: a namespace with one address (``eth0`` / the inet bridge)."""

    label: str
    ns: str
    address: str
    lan: Lan | None  # None for the internet host

    def __str__(self) -> str:
        return f"{self.label} ({self.address} in netns {self.ns})"


@dataclass
class Lan:
    """A LAN behind one router (``kind`` says which NAT), or the public side for "public".

    ``router_ns``/``wan_address`` are None for "public": its hosts sit on the internet itself.
    """

    lab: Lab
    kind: NatKind
    index: int
    router_ns: str | None
    wan_address: str | None
    hosts: list[Host] = field(default_factory=list)
    # With ``upnp=True``: the port of miniupnpd's HTTP server (UPnP-IGD) on the router.
    upnp_http_port: int | None = None

    @property
    def router_address(self) -> str:
        """The router's address on the LAN (the hosts' gateway)."""
        return f"{LAN_PREFIX}.{self.index}.1"

    @property
    def upnp_location(self) -> str:
        """miniupnpd's root description URL, for ``upnpc -u`` (a LabError without UPnP)."""
        if self.upnp_http_port is None:
            raise LabError(f"LAN {self.index}'s router runs no miniupnpd (add_lan(upnp=True))")
        return f"http://{self.router_address}:{self.upnp_http_port}/rootDesc.xml"

    @property
    def subnet(self) -> str:
        return f"{LAN_PREFIX}.{self.index}.0/24"

    def add_host(self, label: str | None = None) -> Host:
        return self.lab.add_host(self, label)


@dataclass(frozen=True)
class PortEntry:
    """One forwarding of a UPnP router, as ``upnpc -l`` lists it."""

    protocol: str
    external_port: int
    internal_ip: str
    internal_port: int
    description: str


_UPNPC_ENTRY = re.compile(r"^\s*\d+\s+(UDP|TCP)\s+(\d+)->([\d.]+):(\d+)\s+'([^']*)'")


def upnp_unavailable_reason() -> str | None:
    """Why a UPnP router cannot be built here (the lab's reasons, or a missing tool), or None."""
    reason = netns_unavailable_reason()
    if reason is not None:
        return reason
    missing = [t for t in UPNP_TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (scripts/install-system-deps.sh)"
    return None


@dataclass(frozen=True)
class Relay:
    """A STUN/TURN server running on the internet host (``kind`` "peercall" or "coturn")."""

    kind: str
    address: str
    port: int
    user: str = RELAY_USER
    password: str = RELAY_PASSWORD

    @property
    def stun(self) -> str:
        return f"stun:{self.address}:{self.port}"

    def turn(self, transport: str = "udp") -> str:
        """An ``--ice-server`` spec with credentials, e.g. ``lab:pw@turn:…?transport=tcp``."""
        return f"{self.user}:{self.password}@turn:{self.address}:{self.port}?transport={transport}"


class Lab:
    """The topology, built on enter and always deleted on exit (see the package docstring)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.id = f"{PREFIX}-{os.getpid()}-{next(_lab_counter)}"
        self.workdir = workdir
        self.lans: list[Lan] = []
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._logs: list[IO[Any]] = []
        self._next_public = 100  # public hosts: 198.18.0.100+
        self._next_wan = 10  # router WAN addresses: 198.18.0.10+
        self._host_counter = itertools.count(1)
        self.internet = Host("internet", f"{self.id}-inet", INTERNET_HOST, None)
        self._stun5780 = False
        self._tmpdir: Path | None = None

    # --- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        clean_stale()
        try:
            self._build_internet()
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

    def close(self) -> None:
        """Stop every process started here, then delete every namespace (safe to repeat)."""
        for proc in reversed(self._procs):
            self._stop(proc)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        for ns in reversed(self._namespaces):
            # Anything still inside (a grandchild the process left) would keep the netns alive.
            for pid in _cmd(["ip", "netns", "pids", ns], check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _cmd(["ip", "netns", "del", ns], check=False)
        self._namespaces.clear()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    @property
    def dir(self) -> Path:
        """Where lab files go: ``workdir``, or a directory of its own deleted on close."""
        if self.workdir is not None:
            return self.workdir
        if self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        return self._tmpdir

    @staticmethod
    def _stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> int | None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    # --- building --------------------------------------------------------------------------
    def _new_ns(self, name: str) -> str:
        _cmd(["ip", "netns", "add", name])
        self._namespaces.append(name)
        self.ns_run(name, "ip", "link", "set", "lo", "up")
        # IPv4 only: link-local IPv6 host candidates would only add noise to every call.
        self._sysctl(name, "net/ipv6/conf/all/disable_ipv6", 1)
        self._sysctl(name, "net/ipv6/conf/default/disable_ipv6", 1)
        return name

    @classmethod
    def _sysctl(cls, ns: str, key: str, value: int) -> None:
        # /proc/sys inside the namespace, not sysctl(8): procps is not on a minimal Debian.
        cls.ns_run(ns, "sh", "-c", f"echo {value} > /proc/sys/{key}")

    @staticmethod
    def ns_run(ns: str, *argv: str, stdin: str | None = None) -> str:
        return _cmd(["ip", "netns", "exec", ns, *argv], stdin=stdin)

    def _build_internet(self) -> None:
        ns = self._new_ns(self.internet.ns)
        self.ns_run(ns, "ip", "link", "add", "br0", "type", "bridge")
        self.ns_run(ns, "ip", "addr", "add", f"{INTERNET_HOST}/24", "dev", "br0")
        self.ns_run(ns, "ip", "link", "set", "br0", "up")
        # A default route into a veth whose peer stays down (SETUP-NOTES): sends to private
        # candidates must vanish silently, not fail with ENETUNREACH (coturn then drops the
        # allocation).
        self.ns_run(ns, "ip", "link", "add", "void", "type", "veth", "peer", "name", "void1")
        self.ns_run(ns, "ip", "addr", "add", "192.0.2.1/32", "dev", "void")
        self.ns_run(ns, "ip", "link", "set", "void", "up")
        self.ns_run(ns, "ip", "route", "add", "default", "dev", "void")
        self.ns_run(ns, "nft", "-f", "-", stdin=_BRIDGE_RULESET)

    def _plug_into_internet(self, ns: str, inside: str, port: str) -> None:
        """A veth from ``ns`` (named ``inside``) to a port of the internet bridge."""
        inet = self.internet.ns
        _veth(inside, ns, port, inet)
        self.ns_run(inet, "ip", "link", "set", port, "master", "br0")
        self.ns_run(inet, "ip", "link", "set", port, "up")
        self.ns_run(ns, "ip", "link", "set", inside, "up")

    def add_lan(
        self, kind: NatKind = "cone", *, upnp: bool = False, min_lifetime: int = 120
    ) -> Lan:
        """A LAN 198.19.N.0/24 behind a router doing ``kind`` NAT ("public": no router).

        ``upnp``: the router runs miniupnpd (UPnP-IGD, NAT-PMP, PCP; mappings of at least
        ``min_lifetime`` s) for its LAN, and the internet host an RFC 5780 STUN server
        (coturn on INTERNET_HOST and INTERNET_HOST2, port 3478, so no relay may take that
        port there): miniupnpd refuses a reserved WAN address such as the lab's unless its
        STUN check finds the router unfiltered behind it.
        """
        if kind not in NAT_KINDS:
            raise ValueError(f"unknown NAT kind {kind!r}; choose one of {', '.join(NAT_KINDS)}")
        if upnp and kind == "public":
            raise ValueError("a public LAN has no router that could run miniupnpd")
        index = len(self.lans) + 1
        if kind == "public":
            lan = Lan(self, kind, index, None, None)
            self.lans.append(lan)
            return lan
        router = self._new_ns(f"{self.id}-r{index}")
        wan = self._take_wan_address()
        self._plug_into_internet(router, "wan", f"vr{index}")
        self.ns_run(router, "ip", "addr", "add", f"{wan}/24", "dev", "wan")
        self.ns_run(router, "ip", "route", "add", "default", "via", INTERNET_HOST)
        self.ns_run(router, "ip", "link", "add", "lan0", "type", "bridge")
        self.ns_run(router, "ip", "addr", "add", f"{LAN_PREFIX}.{index}.1/24", "dev", "lan0")
        self.ns_run(router, "ip", "link", "set", "lan0", "up")
        self._sysctl(router, "net/ipv4/ip_forward", 1)
        self.ns_run(router, "nft", "-f", "-", stdin=_router_ruleset(kind, upnp=upnp))
        lan = Lan(self, kind, index, router, wan)
        self.lans.append(lan)
        if upnp:
            self._start_stun5780()
            self._start_miniupnpd(lan, min_lifetime)
        return lan

    def _start_stun5780(self) -> None:
        """coturn as a STUN-only RFC 5780 server on the internet host's two addresses (once)."""
        if self._stun5780:
            return
        if shutil.which("turnserver") is None:
            raise LabError("coturn's turnserver is not installed")
        inet = self.internet.ns
        self.ns_run(inet, "ip", "addr", "add", f"{INTERNET_HOST2}/24", "dev", "br0")
        self.popen(
            self.internet,
            ["turnserver", "-n", "--stun-only",
             "--listening-ip", INTERNET_HOST, "--listening-ip", INTERNET_HOST2,
             "--listening-port", str(STUN5780_PORT),
             "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout",
             "--pidfile", str(self.dir / "stun5780.pid")],
            log=self.dir / "stun5780.log",
        )  # fmt: skip
        self._stun5780 = True

    def _wait_stun5780(self, lan: Lan) -> None:
        """Until both addresses answer a Binding request from ``lan``'s router."""
        assert lan.router_ns is not None
        router = Host("router", lan.router_ns, lan.router_address, lan)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(
                self.run(router, [sys.executable, "-c", _STUN_PROBE, ip]).returncode == 0
                for ip in (INTERNET_HOST, INTERNET_HOST2)
            ):
                return
            time.sleep(0.2)
        log = (self.dir / "stun5780.log").read_text(errors="replace")
        raise LabError(f"coturn (RFC 5780 STUN) did not start:\n{log[-2000:]}")

    def _start_miniupnpd(self, lan: Lan, min_lifetime: int) -> None:
        assert lan.router_ns is not None
        self._wait_stun5780(lan)
        conf = self.dir / f"miniupnpd-{lan.index}.conf"
        # The chains are the router's own (_router_ruleset with upnp=True); secure_mode: a
        # host may only map ports to itself.
        conf.write_text(
            f"""ext_ifname=wan
listening_ip=lan0
port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
min_lifetime={min_lifetime}
uuid=392290db-9eb4-437b-8c75-{secrets.token_hex(6)}
upnp_table_name=lab
upnp_nat_table_name=labnat
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
ext_perform_stun=yes
ext_stun_host={INTERNET_HOST}
ext_stun_port={STUN5780_PORT}
allow 1024-65535 {lan.subnet} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""
        )
        log = self.dir / f"miniupnpd-{lan.index}.log"
        router = Host("router", lan.router_ns, lan.router_address, lan)
        pidfile = self.dir / f"miniupnpd-{lan.index}.pid"
        self.popen(router, ["miniupnpd", "-d", "-f", str(conf), "-P", str(pidfile)], log=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Port forwarding is now enabled" in text and "NAT-PMP/PCP traffic" in text:
                match = re.search(r"HTTP listening on port (\d+)", text)
                if match:
                    lan.upnp_http_port = int(match.group(1))
                    return
            if "EXITING" in text or "Performing STUN failed" in text:
                break
            time.sleep(0.2)
        raise LabError(f"miniupnpd did not become ready:\n{log.read_text()[-3000:]}")

    def upnpc_list(self, host: Host) -> list[PortEntry]:
        """The forwardings of ``host``'s router as ``upnpc -l`` shows them from ``host``.

        ``-u`` names the router's description URL: upnpc's own discovery calls an IGD whose
        external address is reserved space (the lab's) "not connected" and gives up.
        """
        if host.lan is None:
            raise LabError(f"{host} is on no LAN")
        result = self.run(host, ["upnpc", "-u", host.lan.upnp_location, "-l"], timeout=30)
        entries = []
        for line in result.stdout.splitlines():
            m = _UPNPC_ENTRY.match(line)
            if m:
                entries.append(
                    PortEntry(m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5))
                )
        return entries

    def add_internet_address(self, address: str) -> None:
        """One more address of the internet host (198.18.0.2-9 are free for this)."""
        self.ns_run(self.internet.ns, "ip", "addr", "add", f"{address}/24", "dev", "br0")

    def _take_wan_address(self) -> str:
        if self._next_wan >= 100:
            raise LabError("out of router WAN addresses (198.18.0.10-99)")
        address = f"{INTERNET_PREFIX}.{self._next_wan}"
        self._next_wan += 1
        return address

    def add_host(self, lan: Lan, label: str | None = None) -> Host:
        """A host on ``lan``: 198.19.N.(10+k) behind its router, or 198.18.0.100+ if public."""
        n = next(self._host_counter)
        ns = self._new_ns(f"{self.id}-h{n}")
        if lan.kind == "public":
            if self._next_public > 250:
                raise LabError("out of public host addresses (198.18.0.100-250)")
            address = f"{INTERNET_PREFIX}.{self._next_public}"
            self._next_public += 1
            self._plug_into_internet(ns, "eth0", f"vh{n}")
            self.ns_run(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            self.ns_run(ns, "ip", "route", "add", "default", "via", INTERNET_HOST)
            self.ns_run(self.internet.ns, "nft", "-f", "-", stdin=_public_port_rules(f"vh{n}"))
        else:
            assert lan.router_ns is not None
            address = f"{LAN_PREFIX}.{lan.index}.{10 + len(lan.hosts)}"
            _veth("eth0", ns, f"h{n}", lan.router_ns)
            self.ns_run(lan.router_ns, "ip", "link", "set", f"h{n}", "master", "lan0")
            self.ns_run(lan.router_ns, "ip", "link", "set", f"h{n}", "up")
            self.ns_run(ns, "ip", "link", "set", "eth0", "up")
            self.ns_run(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            self.ns_run(ns, "ip", "route", "add", "default", "via", f"{LAN_PREFIX}.{lan.index}.1")
        host = Host(label or f"host{n}", ns, address, lan)
        lan.hosts.append(host)
        return host

    # --- network conditions ---------------------------------------------------------------
    def _conditions(self, lan: Lan) -> list[tuple[str, str, str]]:
        """Where ``lan``'s loss/outage rules go: (namespace, table, chain suffix).

        A router's own chains; for a public host, chains on its port of the internet bridge,
        so that its packets vanish on the wire instead of failing in sendto() with EPERM.
        """
        if lan.router_ns is not None:
            return [(lan.router_ns, "inet lab", "")]
        if not lan.hosts:
            raise LabError("a public LAN's conditions apply to its hosts: add a host first")
        return [(self.internet.ns, "bridge lab", f"_{_port_of(h)}") for h in lan.hosts]

    def loss(self, lan: Lan, percent: int) -> None:
        """Drop ``percent`` % of the packets crossing ``lan``'s router, each way (0 clears).

        No netem in this kernel: nftables' ``numgen random mod 100 < N drop``.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"loss must be 0..100 %, got {percent}")
        for ns, table, suffix in self._conditions(lan):
            rules = f"flush chain {table} loss{suffix}\n"
            if percent == 100:
                rules += f"add rule {table} loss{suffix} drop\n"  # numgen's values stop at 99
            elif percent:
                rules += f"add rule {table} loss{suffix} numgen random mod 100 < {percent} drop\n"
            self.ns_run(ns, "nft", "-f", "-", stdin=rules)

    def outage(self, lan: Lan) -> None:
        """Cut ``lan`` off the internet (every packet through or to its router is dropped)."""
        for ns, table, suffix in self._conditions(lan):
            rules = f"flush chain {table} outage{suffix}\nadd rule {table} outage{suffix} drop\n"
            self.ns_run(ns, "nft", "-f", "-", stdin=rules)

    def restore(self, lan: Lan) -> None:
        """End an :meth:`outage` (conntrack state on the router survives, as on a real one)."""
        for ns, table, suffix in self._conditions(lan):
            self.ns_run(ns, "nft", "flush", "chain", *table.split(), f"outage{suffix}")

    def block_between(self, lan: Lan, other: Lan) -> None:
        """Drop every packet between two routers' WAN addresses (relayed paths stay open).

        A direct path that does not work yet (and later does: :meth:`unblock_between`). Rules
        on both routers, before the lab's own chains, for forwarded and router-bound packets.
        """
        for here, there in ((lan, other), (other, lan)):
            ns, _ = self._router_of(here)
            _, far = self._router_of(there)
            rules = (
                f"table inet labblock{there.index} {{\n"
                "  chain forward { type filter hook forward priority -10;"
                f" ip saddr {far} drop; }}\n"
                "  chain input { type filter hook input priority -10;"
                f" ip saddr {far} drop; }}\n"
                "}\n"
            )
            self.ns_run(ns, "nft", "-f", "-", stdin=rules)

    def unblock_between(self, lan: Lan, other: Lan) -> None:
        """End a :meth:`block_between` (a LabError when it is not in place)."""
        for here, there in ((lan, other), (other, lan)):
            ns, _ = self._router_of(here)
            self.ns_run(ns, "nft", "delete", "table", "inet", f"labblock{there.index}")

    def block_udp(self, lan: Lan) -> None:
        """``lan``'s router forwards TCP only from now on (as "udp-blocked" does from the start)."""
        ns, _ = self._router_of(lan)
        rules = (
            "table inet labudpblock {\n"
            "  chain forward { type filter hook forward priority -10;"
            ' iifname "lan0" meta l4proto udp drop; }\n'
            "}\n"
        )
        self.ns_run(ns, "nft", "-f", "-", stdin=rules)

    def unblock_udp(self, lan: Lan) -> None:
        """End a :meth:`block_udp` (a LabError when it is not in place)."""
        ns, _ = self._router_of(lan)
        self.ns_run(ns, "nft", "delete", "table", "inet", "labudpblock")

    @staticmethod
    def _router_of(lan: Lan) -> tuple[str, str]:
        if lan.router_ns is None or lan.wan_address is None:
            raise LabError(f"LAN {lan.index} is public: it has no router to filter on")
        return lan.router_ns, lan.wan_address

    def change_public_address(self, lan: Lan) -> str:
        """Move ``lan``'s router to a new WAN address (as an ISP re-dial does); returns it.

        Deleting the address also makes the kernel forget the masquerade mappings made with it,
        so every flow leaves with the new address and fresh ports.
        """
        if lan.router_ns is None or lan.wan_address is None:
            raise LabError("a public LAN has no router whose address could change")
        new = self._take_wan_address()
        ns = lan.router_ns
        # Delete first: the new address added beside it would be a secondary, and deleting a
        # primary takes its secondaries with it (promote_secondaries is off by default).
        self.ns_run(ns, "ip", "addr", "del", f"{lan.wan_address}/24", "dev", "wan")
        self.ns_run(ns, "ip", "addr", "add", f"{new}/24", "dev", "wan")
        self.ns_run(ns, "ip", "route", "replace", "default", "via", INTERNET_HOST)
        lan.wan_address = new
        return new

    # --- processes -------------------------------------------------------------------------
    def command(self, host: Host, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside ``host``'s namespace."""
        return ["ip", "netns", "exec", host.ns, *argv]

    def popen(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``host``'s namespace; stopped (TERM, then KILL) when the lab closes.

        ``log``: stdout and stderr go to this file (read it while the process runs). Runs
        in the repository root with the same Python environment, so ``sys.executable -m app.cli``
        is the ``peercall`` command. Its own process group, so teardown reaches its children.
        """
        kwargs.setdefault("cwd", REPO)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        if log is not None:
            out = log.open("ab")
            self._logs.append(out)
            kwargs.setdefault("stdout", out)
            kwargs.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(self.command(host, argv), start_new_session=True, **kwargs)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> int | None:
        """SIGTERM ``proc`` (SIGKILL after ``grace`` s); returns its exit code."""
        return self._stop(proc, grace)

    def run(
        self, host: Host, argv: Sequence[str], *, timeout: float = 60, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host``'s namespace to completion; output captured as text."""
        kwargs.setdefault("cwd", REPO)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(
            self.command(host, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def wait_listening(
        self, host: Host, port: int, proto: str = "udp", timeout: float = 30
    ) -> None:
        """Wait until something in ``host``'s namespace listens on ``port`` (udp or tcp)."""
        flag = "-Hlun" if proto == "udp" else "-Hltn"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.ns_run(host.ns, "ss", flag, f"sport = :{port}")
            if out.strip():
                return
            time.sleep(0.05)
        raise LabError(f"nothing listens on {proto} port {port} in {host} after {timeout} s")

    # --- services on the internet host -----------------------------------------------------
    def start_signal(self, port: int = 8765, log: Path | None = None) -> str:
        """``peercall signal`` on the internet host; returns its ``ws://`` URL."""
        self.popen(
            self.internet,
            [
                sys.executable,
                "-m",
                "app.cli",
                "signal",
                "--host",
                INTERNET_HOST,
                "--port",
                str(port),
            ],
            log=log,
        )
        self.wait_listening(self.internet, port, "tcp")
        return f"ws://{INTERNET_HOST}:{port}"

    def start_relay(
        self, kind: str = "peercall", port: int = 3478, log: Path | None = None
    ) -> Relay:
        """A STUN/TURN relay on the internet host: PeerCall's (``peercall relay``) or coturn's.

        Long-term credentials ``lab``/``lab-secret``; UDP and TCP listeners on ``port``; relayed
        ports from a range of their own so two relays can run side by side; the lab ranges are
        allowed peers (their default deny lists cover 198.18.0.0/15).
        """
        if self._stun5780 and port in (STUN5780_PORT, STUN5780_PORT + 1):
            raise LabError(f"port {port} is the UPnP router's RFC 5780 STUN server's: pick another")
        # Relay port ranges apart per listening port, so two relays never race for one.
        low = 20000 + (port % 100) * 400
        relay_range = (str(low), str(low + 399))
        if kind == "peercall":
            argv = [
                sys.executable, "-m", "app.cli", "relay",
                "--listening-ip", INTERNET_HOST, "--listening-port", str(port),
                "--min-port", relay_range[0], "--max-port", relay_range[1],
                "--realm", RELAY_REALM, "--lt-cred-mech",
                "--user", f"{RELAY_USER}:{RELAY_PASSWORD}",
                "--fingerprint",
            ]  # fmt: skip
            for r in ALLOWED_PEER_RANGES:
                argv += ["--allowed-peer-ip", r]
        elif kind == "coturn":
            if shutil.which("turnserver") is None:
                raise LabError("coturn's turnserver is not installed")
            pidfile = f"/tmp/{self.id}-turnserver-{port}.pid"
            argv = [
                "turnserver", "-n",
                f"--listening-ip={INTERNET_HOST}", f"--listening-port={port}",
                f"--relay-ip={INTERNET_HOST}",
                f"--min-port={relay_range[0]}", f"--max-port={relay_range[1]}",
                f"--realm={RELAY_REALM}", "--lt-cred-mech",
                f"--user={RELAY_USER}:{RELAY_PASSWORD}",
                "--fingerprint", "--no-cli", "--no-tls", "--no-dtls", "--no-rfc5780",
                "--log-file=stdout", f"--pidfile={pidfile}",
            ]  # fmt: skip
            argv += [f"--allowed-peer-ip={r}" for r in ALLOWED_PEER_RANGES]
        else:
            raise ValueError(f"unknown relay kind {kind!r}: 'peercall' or 'coturn'")
        self.popen(self.internet, argv, log=log)
        self.wait_listening(self.internet, port, "udp")
        self.wait_listening(self.internet, port, "tcp")
        return Relay(kind, INTERNET_HOST, port)

    def describe(self) -> Iterator[str]:
        """Lines naming every namespace and how to enter it (for people and failure logs)."""
        yield f"internet {INTERNET_HOST}: ip netns exec {self.internet.ns} bash"
        for lan in self.lans:
            if lan.router_ns:
                yield (
                    f"LAN {lan.index} ({lan.kind}, {lan.subnet}) router WAN {lan.wan_address}:"
                    f" ip netns exec {lan.router_ns} bash"
                )
            for h in lan.hosts:
                yield f"  {h.label} {h.address}: ip netns exec {h.ns} bash"


_STUN_PROBE = (
    "import asyncio, sys\n"
    "from nat.portmap.stunaddr import public_address\n"
    "sys.exit(0 if asyncio.run(public_address(sys.argv[1], within=1.0)) else 1)\n"
)


def _router_ruleset(kind: NatKind, *, upnp: bool = False) -> str:
    """nftables for a home router doing ``kind`` NAT on its ``wan`` port.

    - cone: plain masquerade keeps the source port for every destination (endpoint-independent
      mapping, RFC 4787 §4.1), with address- and port-dependent filtering (only conntrack
      replies come in): a "port-restricted cone".
    - symmetric: ``masquerade random`` picks a new port per destination (endpoint-dependent).
    - udp-blocked: cone, but only TCP may leave the LAN.
    Unsolicited WAN packets to the router itself are dropped, as home routers do: otherwise a
    peer's early check leaves a conntrack entry that clashes with the host's later mapping.
    The ``loss`` and ``outage`` chains are filled and flushed by Lab.loss/outage/restore.

    ``upnp``: miniupnpd's chains hooked in (its forwardings pass the WAN filter, its DNAT and
    SNAT rules come before the masquerade), and the answers of its RFC 5780 STUN check let in:
    they come from the server's other address and port, so conntrack does not know them.
    """
    masquerade = "masquerade random" if kind == "symmetric" else "masquerade"
    udp_block = 'oifname "wan" meta l4proto != tcp drop' if kind == "udp-blocked" else ""
    if upnp:
        stun_in = (
            f'iifname "wan" ip saddr {{ {INTERNET_HOST}, {INTERNET_HOST2} }}'
            f" udp sport {{ {STUN5780_PORT}, {STUN5780_PORT + 1} }} accept"
        )
        upnp_forward = 'iifname "wan" jump miniupnpd'
        upnp_chains = "chain miniupnpd { }"
        nat = f"""table inet labnat {{
    chain prerouting {{
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
        oifname "wan" {masquerade}
    }}
    chain prerouting_miniupnpd {{ }}
    chain postrouting_miniupnpd {{ }}
}}"""
    else:
        stun_in = upnp_forward = upnp_chains = ""
        nat = f"""table ip labnat {{
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        oifname "wan" {masquerade}
    }}
}}"""
    return f"""
table inet lab {{
    chain loss {{ }}
    chain outage {{ }}
    {upnp_chains}
    chain input {{
        type filter hook input priority 0; policy accept;
        jump outage
        iifname "wan" ct state established,related accept
        {stun_in}
        iifname "wan" drop
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        jump outage
        jump loss
        iifname "wan" ct state established,related accept
        {upnp_forward}
        iifname "wan" drop
        {udp_block}
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        jump outage
    }}
}}
{nat}
"""


def _port_of(host: Host) -> str:
    """The internet bridge port of a public host (``vh<n>``, n from its namespace name)."""
    return "vh" + host.ns.rsplit("-h", 1)[1]


# Public hosts have no router: their loss and outage act on their port of the internet bridge
# (IPv4 only: ARP keeps working, as it would across a real outage upstream).
_BRIDGE_RULESET = """
table bridge lab {
    chain input { type filter hook input priority 0; policy accept; }
    chain forward { type filter hook forward priority 0; policy accept; }
    chain output { type filter hook output priority 0; policy accept; }
}
"""


def _public_port_rules(port: str) -> str:
    lines = [f"add chain bridge lab outage_{port}", f"add chain bridge lab loss_{port}"]
    for chain in ("input", "forward", "output"):
        for match in ("iifname", "oifname"):
            lines.append(
                f'add rule bridge lab {chain} {match} "{port}" ether type ip jump outage_{port}'
            )
            lines.append(
                f'add rule bridge lab {chain} {match} "{port}" ether type ip jump loss_{port}'
            )
    return "\n".join(lines) + "\n"
