"""Gateway lookup and the "is this address public" check behind the one-line refusals."""

from __future__ import annotations

import pytest

from nat.portmap.address import default_gateway, not_public_reason
from nat.portmap.mapper import Mapping, MappingState, PortRequest, ports_for_hosting

ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000113C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t010113C6\t0003\t0\t0\t0\t00000000\t0\t0\t0
"""


def test_default_gateway_from_the_routing_table(tmp_path):
    route = tmp_path / "route"
    route.write_text(ROUTE)
    assert default_gateway(route) == "198.19.1.1"


def test_no_default_route(tmp_path):
    route = tmp_path / "route"
    route.write_text(ROUTE.splitlines()[0] + "\n" + ROUTE.splitlines()[1] + "\n")
    assert default_gateway(route) is None
    assert default_gateway(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("address", "start"),
    [
        (
            "100.64.3.4",
            "behind carrier-grade NAT: the router's external address 100.64.3.4 is not public",
        ),
        ("10.1.2.3", "behind a second router: this router's external address 10.1.2.3 is private"),
        ("192.168.1.1", "behind a second router"),
        ("0.0.0.0", "the router reports no usable external address (0.0.0.0)"),
        ("garbage", "the router's external address 'garbage' is not an IP address"),
    ],
)
def test_not_public(address, start):
    reason = not_public_reason(address)
    assert reason is not None
    assert reason.startswith(start)
    assert "\n" not in reason


@pytest.mark.parametrize("address", ["198.18.0.2", "203.0.113.9", "2001:db8::1", "8.8.8.8"])
def test_public_enough(address):
    assert not_public_reason(address) is None


def test_ports_for_hosting():
    requests = ports_for_hosting(
        turn_port=3478, relay_ports=range(49160, 49162), signaling_port=8765
    )
    assert [(r.protocol, r.port, r.purpose) for r in requests] == [
        ("UDP", 3478, "TURN"),
        ("TCP", 3478, "TURN"),
        ("UDP", 49160, "relay"),
        ("UDP", 49161, "relay"),
        ("TCP", 8765, "signaling"),
    ]


def test_state_lines():
    udp = PortRequest("UDP", 3478, "TURN")
    mapped = MappingState(
        "mapped",
        "UPnP-IGD",
        "198.19.1.1",
        "198.18.0.2",
        (Mapping(udp, 3478, 3600), Mapping(PortRequest("TCP", 8765, "signaling"), 18765, 3600)),
    )
    assert mapped.line() == (
        "port mapping: 2 port(s) forwarded by UPnP-IGD on router 198.19.1.1, external address "
        "198.18.0.2 (TURN: UDP 3478; signaling: TCP 8765->18765)"
    )
    assert mapped.external_port("TCP", 8765) == 18765
    assert mapped.external_port("UDP", 1) is None
    failed = MappingState(
        "failed", gateway="198.19.1.1", external_ip="100.64.0.9", refusal="behind carrier-grade NAT"
    )
    assert failed.line() == (
        "port mapping failed: behind carrier-grade NAT (router's external address 100.64.0.9)"
    )
    assert MappingState().line() == "port mapping: off"


def test_bad_requests():
    with pytest.raises(ValueError, match="UDP or TCP"):
        PortRequest("SCTP", 1)
    with pytest.raises(ValueError, match="out of range"):
        PortRequest("UDP", 70000)
