"""``peercall relay --map-ports`` and ``peercall signal --map-ports`` behind miniupnpd."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from tests.portmap.home import WAN_IP, HomeLab

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def run_until(lab: HomeLab, marker: str, *args: str) -> tuple[object, str]:
    log = lab.dir / f"{args[0]}.log"
    proc = lab.popen(lab.host, sys.executable, "-m", "app.cli", *args, log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if marker in text:
            return proc, text
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{args[0]} never printed {marker!r}:\n{log.read_text()}")


def stop(lab: HomeLab, proc, name: str) -> str:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    return (lab.dir / f"{name}.log").read_text()


def test_relay_map_ports_forwards_turn_and_range_and_adopts_the_external_ip(router_lab):
    proc, text = run_until(
        router_lab,
        "relay ready",
        "relay",
        "--listening-ip",
        "0.0.0.0",
        "--min-port",
        "49170",
        "--max-port",
        "49171",
        "--user",
        "a:b",
        "--map-ports",
    )
    try:
        assert f"external address {WAN_IP}" in text
        assert f"external-ip {WAN_IP} (from the router)" in text
        assert f"advertised as {WAN_IP}" in text  # the relay really uses it
        listed = {(e.protocol, e.external_port) for e in router_lab.upnpc_list()}
        assert {("UDP", 3478), ("TCP", 3478), ("UDP", 49170), ("UDP", 49171)} <= listed
    finally:
        text = stop(router_lab, proc, "relay")
    assert "the router's forwardings were removed" in text
    assert router_lab.upnpc_list() == []


def test_signal_map_ports(router_lab):
    proc, text = run_until(
        router_lab,
        "ready (Ctrl-C",
        "signal",
        "--host",
        "0.0.0.0",
        "--port",
        "8766",
        "--map-ports",
    )
    try:
        assert f"reachable from the internet at {WAN_IP}:8766" in text
        assert [(e.protocol, e.external_port) for e in router_lab.upnpc_list()] == [("TCP", 8766)]
    finally:
        stop(router_lab, proc, "signal")
    assert router_lab.upnpc_list() == []


def test_relay_map_ports_without_upnp_says_why(plain_router_lab):
    proc, text = run_until(
        plain_router_lab,
        "relay ready",
        "relay",
        "--listening-ip",
        "0.0.0.0",
        "--user",
        "a:b",
        "--map-ports",
    )
    stop(plain_router_lab, proc, "relay")
    assert "port mapping failed: the router 198.19.1.1 has UPnP turned off" in text
    assert "too many to forward; only TURN is mapped" in text  # default range 49152-65535
