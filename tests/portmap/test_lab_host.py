"""``peercall host`` behind a miniupnpd router: one link that works from the internet.

The host runs in the LAN namespace; the friend is on the "internet" namespace and reaches
the host only through the router's forwardings: joining the room over the forwarded
signaling port and getting TURN credentials proves the link, a STUN answer through the
forwarded TURN port proves the relay is reachable. Ctrl-C must remove every forwarding.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.netlab.lab import REPO, Host
from tests.portmap.home import FRIEND_IP, HOST_IP, ROUTER_LAN_IP, WAN_IP, HomeLab

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def start_host(lab: HomeLab, *extra: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    log = lab.dir / "host.log"
    proc = lab.popen(
        lab.host,
        sys.executable,
        "-m",
        "app.cli",
        "host",
        "--relay-ports",
        "49160-49163",
        "--allowed-peer-ip",
        "198.18.0.0-198.19.255.255",
        *extra,
        log=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "ready (Ctrl-C to stop hosting)" in text:
            break
        if proc.poll() is not None:
            raise AssertionError(f"peercall host exited {proc.returncode}:\n{text}")
        time.sleep(0.1)
    else:
        raise AssertionError(f"peercall host never became ready:\n{log.read_text()}")
    lines = dict(
        (m.group(1), m.group(2))
        for m in re.finditer(
            r"^(link|browser link|public address|port mapping[^:]*): (.*)$", text, re.M
        )
    )
    lines["_all"] = text
    return proc, lines


def stop_host(proc: subprocess.Popen[bytes], lab: HomeLab) -> str:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    return (lab.dir / "host.log").read_text()


def join(lab: HomeLab, host: Host, link: str) -> dict[str, object]:
    result = subprocess.run(
        ["ip", "netns", "exec", host.ns, sys.executable, "-m", "tests.portmap.run_join", link],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    joined: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return joined


def test_host_maps_ports_and_the_link_works_from_the_internet(router_lab):
    proc, out = start_host(router_lab)
    try:
        assert out["public address"] == f"{WAN_IP} (router)"
        assert out["link"].startswith(f"peercall://{WAN_IP}:8765/")
        assert "#secret=" in out["link"]
        assert out["browser link"].startswith(f"http://{WAN_IP}:8765/#room=")
        mapping = next(v for k, v in out.items() if k.startswith("port mapping"))
        assert f"external address {WAN_IP}" in mapping
        assert f"your public IP address {WAN_IP}" in out["_all"]
        listed = {(e.protocol, e.external_port) for e in router_lab.upnpc_list()}
        wanted = {("UDP", 3478), ("TCP", 3478), ("TCP", 8765)} | {
            ("UDP", p) for p in range(49160, 49164)
        }
        assert wanted <= listed
        # The friend on the internet: only the forwardings lead to the host.
        joined = join(router_lab, router_lab.inet, out["link"])
        servers = joined["ice_servers"]
        assert isinstance(servers, list)
        assert servers
        urls = json.dumps(servers)
        assert f"turn:{WAN_IP}:3478?transport=udp" in urls
        assert all(":" in s["username"] and s["credential"] for s in servers)  # TURN REST
        assert joined["reflexive"] == "198.18.0.1"  # the STUN answer came back through 3478
    finally:
        text = stop_host(proc, router_lab)
    assert "the router's forwardings were removed" in text
    assert router_lab.upnpc_list() == []


def test_router_without_upnp_link_still_works_on_the_lan(plain_router_lab):
    proc, out = start_host(plain_router_lab, "--no-qr")
    try:
        mapping = next(v for k, v in out.items() if k.startswith("port mapping"))
        assert mapping == (
            f"the router {ROUTER_LAN_IP} has UPnP turned off (no answer to PCP, NAT-PMP, UPnP-IGD)"
        )
        assert out["public address"] == f"{HOST_IP} (LAN only)"
        assert out["link"].startswith(f"peercall://{HOST_IP}:8765/")
        joined = join(plain_router_lab, plain_router_lab.friend, out["link"])
        assert joined["ice_servers"]
        assert joined["reflexive"] == FRIEND_IP
    finally:
        stop_host(proc, plain_router_lab)


def dialog(lab: HomeLab) -> list[dict[str, object]]:
    result = subprocess.run(
        ["ip", "netns", "exec", lab.host.ns, sys.executable, "-m", "tests.portmap.run_dialog"],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_window_shows_the_mapping_and_the_link(router_lab):
    shown, stopped = dialog(router_lab)
    assert str(shown["status"]).startswith("port mapping: 7 port(s) forwarded by PCP")
    assert shown["address"] == f"Public address: {WAN_IP} (router)"
    assert str(shown["link"]).startswith(f"peercall://{WAN_IP}:8765/")
    assert "Your friend will see your public IP address" in str(shown["warning"])
    assert shown["qr"] is True
    assert stopped["status"] == "Not hosting: the router's forwardings were removed."
    assert router_lab.upnpc_list() == []


def test_window_shows_the_one_line_reason_without_upnp(plain_router_lab):
    shown, _ = dialog(plain_router_lab)
    assert shown["status"] == (
        f"port mapping failed: the router {ROUTER_LAN_IP} has UPnP turned off (no answer to "
        "PCP, NAT-PMP, UPnP-IGD)"
    )
    assert shown["address"] == f"Public address: {HOST_IP} (LAN only)"
    assert "Only computers on your network can use this link" in str(shown["warning"])
