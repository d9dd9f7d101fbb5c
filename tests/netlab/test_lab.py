"""The lab itself: each NAT kind maps and filters as its name says, conditions bite, cleanup works.

Mapping is read the RFC 4787 way: one LAN port sends to several internet destinations and a
reflector on the internet host reports the source it saw.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.netlab.conftest import require_netns
from tests.netlab.lab import (
    INTERNET_HOST,
    PREFIX,
    Host,
    Lab,
    LabError,
    PortEntry,
    clean_stale,
    upnp_unavailable_reason,
)

pytestmark = [pytest.mark.netns]

PORTS = (4001, 4002, 4003)
DESTS = [f"{INTERNET_HOST}:{p}" for p in PORTS]
LAN_PORT = 40000


@pytest.fixture
def reflector(lab: Lab) -> Lab:
    lab.popen(lab.internet, [sys.executable, "-m", "tests.netlab.probe", "serve", *map(str, PORTS)])
    for port in PORTS:
        lab.wait_listening(lab.internet, port, "udp")
        lab.wait_listening(lab.internet, port, "tcp")
    return lab


def probe_udp(lab: Lab, host: Host, dests: list[str] = DESTS) -> dict[str, str | None]:
    out = lab.run(host, [sys.executable, "-m", "tests.netlab.probe", "udp", str(LAN_PORT), *dests])
    assert out.returncode == 0, out.stderr
    seen: dict[str, str | None] = json.loads(out.stdout)
    return seen


def probe_tcp(lab: Lab, host: Host) -> str | None:
    out = lab.run(host, [sys.executable, "-m", "tests.netlab.probe", "tcp", DESTS[0]])
    assert out.returncode == 0, out.stderr
    seen: str | None = json.loads(out.stdout)[DESTS[0]]
    return seen


def test_cone_keeps_one_mapping_for_every_destination(reflector: Lab) -> None:
    lan = reflector.add_lan("cone")
    host = lan.add_host()
    seen = probe_udp(reflector, host)
    # Endpoint-independent mapping: the same public address and port towards all three.
    assert set(seen.values()) == {f"{lan.wan_address}:{LAN_PORT}"}, seen


def test_symmetric_maps_each_destination_to_a_new_port(reflector: Lab) -> None:
    lan = reflector.add_lan("symmetric")
    host = lan.add_host()
    seen = probe_udp(reflector, host)
    mapped = [v for v in seen.values() if v is not None]
    assert len(mapped) == 3, seen
    assert {m.split(":")[0] for m in mapped} == {lan.wan_address}
    # Endpoint-dependent mapping: three destinations, three different public ports.
    assert len({m.split(":")[1] for m in mapped}) == 3, seen


def test_udp_blocked_lets_only_tcp_out(reflector: Lab) -> None:
    lan = reflector.add_lan("udp-blocked")
    host = lan.add_host()
    assert probe_udp(reflector, host, DESTS[:1]) == {DESTS[0]: None}
    seen = probe_tcp(reflector, host)
    assert seen is not None
    assert seen.split(":")[0] == lan.wan_address


def test_public_host_is_seen_as_itself(reflector: Lab) -> None:
    lan = reflector.add_lan("public")
    host = lan.add_host()
    assert set(probe_udp(reflector, host).values()) == {f"{host.address}:{LAN_PORT}"}


def test_router_drops_unsolicited_packets_from_the_internet(reflector: Lab) -> None:
    """Filtering: only replies to what the LAN sent get in (to the host or the router)."""
    lan = reflector.add_lan("cone")
    host = lan.add_host()
    assert probe_udp(reflector, host, DESTS[:1])[DESTS[0]] is not None
    # Now the other way round: the internet host probes the router's mapped port directly.
    assert lan.wan_address is not None
    seen = probe_udp(reflector, reflector.internet, [f"{lan.wan_address}:{LAN_PORT}"])
    assert set(seen.values()) == {None}


def test_same_lan_hosts_reach_each_other_directly(reflector: Lab) -> None:
    lan = reflector.add_lan("symmetric")
    a, b = lan.add_host(), lan.add_host()
    reflector.popen(b, [sys.executable, "-m", "tests.netlab.probe", "serve", "5000"])
    reflector.wait_listening(b, 5000)
    assert probe_udp(reflector, a, [f"{b.address}:5000"]) == {
        f"{b.address}:5000": f"{a.address}:{LAN_PORT}"
    }


@pytest.mark.parametrize("kind", ["cone", "public"])
def test_outage_and_full_loss_cut_the_lan_off_until_restored(reflector: Lab, kind: str) -> None:
    lan = reflector.add_lan(kind)  # type: ignore[arg-type]
    host = lan.add_host()
    reflector.outage(lan)
    assert set(probe_udp(reflector, host, DESTS[:1]).values()) == {None}
    reflector.restore(lan)
    assert None not in probe_udp(reflector, host).values()
    reflector.loss(lan, 100)
    assert set(probe_udp(reflector, host, DESTS[:1]).values()) == {None}
    reflector.loss(lan, 0)
    assert None not in probe_udp(reflector, host).values()


def test_partial_loss_drops_some_packets(reflector: Lab) -> None:
    lan = reflector.add_lan("cone")
    host = lan.add_host()
    reflector.loss(lan, 50)
    # 30 probes each crossing the router twice: all surviving has odds 0.75**30 (≈ 2e-4),
    # none surviving 0.25**30.
    out = reflector.run(
        host, [sys.executable, "-c", _COUNT_REPLIES, INTERNET_HOST, *map(str, PORTS)]
    )
    assert out.returncode == 0, out.stderr
    replies = int(out.stdout)
    assert 0 < replies < 30


_COUNT_REPLIES = """
import socket, sys
host, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
got = 0
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(0.2)
    for _ in range(10):
        for p in ports:
            s.sendto(b"x", (host, p))
            try:
                s.recvfrom(100)
                got += 1
            except TimeoutError:
                pass
print(got)
"""


def test_address_change_moves_the_mapping(reflector: Lab) -> None:
    lan = reflector.add_lan("cone")
    host = lan.add_host()
    before = lan.wan_address
    assert set(probe_udp(reflector, host).values()) == {f"{before}:{LAN_PORT}"}
    after = reflector.change_public_address(lan)
    assert after != before
    seen = probe_udp(reflector, host)
    assert {v.split(":")[0] if v else None for v in seen.values()} == {after}, seen


def test_block_udp_stops_udp_until_unblocked_and_leaves_tcp(reflector: Lab) -> None:
    lan = reflector.add_lan("cone")
    host = lan.add_host()
    reflector.block_udp(lan)
    assert probe_udp(reflector, host, DESTS[:1]) == {DESTS[0]: None}
    tcp = probe_tcp(reflector, host)
    assert tcp is not None
    assert tcp.split(":")[0] == lan.wan_address
    reflector.unblock_udp(lan)
    assert set(probe_udp(reflector, host).values()) == {f"{lan.wan_address}:{LAN_PORT}"}
    with pytest.raises(LabError, match="labudpblock"):
        reflector.unblock_udp(lan)  # nothing left to lift


# Both sides send to the other's router at once from LAN_PORT (a hole punch through two cones)
# and print how many datagrams arrived.
_PUNCH = """
import socket, sys, time
peer = (sys.argv[1], int(sys.argv[2]))
got = 0
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.bind(("0.0.0.0", int(sys.argv[2])))
    s.settimeout(0.05)
    for _ in range(40):
        s.sendto(b"x", peer)
        try:
            s.recvfrom(100)
            got += 1
        except TimeoutError:
            pass
print(got)
"""


def punch(lab: Lab, a: Host, b: Host) -> tuple[int, int]:
    procs = []
    for host, other in ((a, b), (b, a)):
        assert other.lan is not None
        assert other.lan.wan_address is not None
        argv = [sys.executable, "-c", _PUNCH, other.lan.wan_address, str(LAN_PORT)]
        procs.append(lab.popen(host, argv, stdout=subprocess.PIPE, text=True))
    got = []
    for proc in procs:
        out, _ = proc.communicate(timeout=30)
        got.append(int(out))
    return got[0], got[1]


def test_block_between_cuts_the_direct_path_but_not_the_internet(reflector: Lab) -> None:
    lan1, lan2 = reflector.add_lan("cone"), reflector.add_lan("cone")
    a, b = lan1.add_host(), lan2.add_host()
    reflector.block_between(lan1, lan2)
    assert punch(reflector, a, b) == (0, 0)
    assert None not in probe_udp(reflector, a).values()  # the relay's side stays open
    assert None not in probe_udp(reflector, b).values()
    reflector.unblock_between(lan1, lan2)
    got_a, got_b = punch(reflector, a, b)
    assert got_a > 0
    assert got_b > 0


def test_filters_need_a_router(lab: Lab) -> None:
    public, cone = lab.add_lan("public"), lab.add_lan("cone")
    with pytest.raises(LabError, match="is public"):
        lab.block_udp(public)
    with pytest.raises(LabError, match="is public"):
        lab.block_between(cone, public)


def test_upnp_router_forwards_what_a_host_maps(reflector: Lab) -> None:
    reason = upnp_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    lan = reflector.add_lan("cone", upnp=True)
    host = lan.add_host()
    assert reflector.upnpc_list(host) == []
    add = ["upnpc", "-u", lan.upnp_location, "-e", "lab", "-a", host.address, "5000", "6000", "UDP"]
    out = reflector.run(host, add)
    assert out.returncode == 0, out.stdout + out.stderr
    assert reflector.upnpc_list(host) == [PortEntry("UDP", 6000, host.address, 5000, "lab")]
    # The forwarding works: the internet reaches the host's port through the router's.
    reflector.popen(host, [sys.executable, "-m", "tests.netlab.probe", "serve", "5000"])
    reflector.wait_listening(host, 5000)
    assert lan.wan_address is not None
    seen = probe_udp(reflector, reflector.internet, [f"{lan.wan_address}:6000"])
    assert list(seen.values()) == [f"{INTERNET_HOST}:{LAN_PORT}"]
    with pytest.raises(LabError, match="port 3478 is the UPnP router's RFC 5780 STUN server's"):
        reflector.start_relay()


def test_bad_kind_is_refused(lab: Lab) -> None:
    with pytest.raises(ValueError, match="unknown NAT kind 'full-cone'"):
        lab.add_lan("full-cone")  # type: ignore[arg-type]
    with pytest.raises(LabError, match="public LAN has no router"):
        lab.change_public_address(lab.add_lan("public"))
    with pytest.raises(ValueError, match="no router that could run miniupnpd"):
        lab.add_lan("public", upnp=True)
    with pytest.raises(LabError, match="runs no miniupnpd"):
        _ = lab.add_lan("cone").upnp_location


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_everything_is_deleted_on_exit_even_after_an_error() -> None:
    require_netns()
    seen: dict[str, object] = {}

    def build_and_fail() -> None:
        with Lab() as lab:
            host = lab.add_lan("cone").add_host()
            seen["proc"] = lab.popen(host, ["sleep", "60"])
            seen["names"] = {n for n in _namespaces() if n.startswith(lab.id + "-")}
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_and_fail()
    names = seen["names"]
    proc = seen["proc"]
    assert isinstance(names, set)
    assert isinstance(proc, subprocess.Popen)
    assert len(names) == 3  # internet, router, host
    assert proc.poll() is not None
    assert not names & _namespaces()


def test_stale_namespaces_of_dead_runs_are_cleaned() -> None:
    require_netns()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{PREFIX}-{dead.pid}-1-h1"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in clean_stale()
        assert stale not in _namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", stale], check=False, capture_output=True)


def test_without_root_the_lab_skips_with_the_reason_but_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tests.netlab.lab.os.geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="network namespaces need root"):
        require_netns()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="unavailable in CI: network namespaces need"):
        require_netns()
