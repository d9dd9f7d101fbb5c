"""Port mapping against a real router daemon: miniupnpd in a namespace (UPnP-IGD, NAT-PMP, PCP).

A host on the router's LAN maps ports with each protocol; the forwardings must show up in
``upnpc -l`` run from the LAN, and be gone once mapping stops.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.netlab.lab import REPO, Lab
from tests.portmap.conftest import skip_unless_lab
from tests.portmap.home import HOST_IP, WAN_IP, HomeLab, build_home

pytestmark = [pytest.mark.netns, pytest.mark.slow]


class MapperProcess:
    """``run_mapper`` in the host namespace; its JSON state lines, read as they come."""

    def __init__(self, lab: HomeLab, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lab.host.ns,
                sys.executable,
                "-m",
                "tests.portmap.run_mapper",
                *args,
            ],
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def next_state(self, *statuses: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"run_mapper ended without a state: {err[-2000:]}")
            state: dict[str, Any] = json.loads(line)
            if not statuses or state["status"] in statuses:
                return state

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        state = self.next_state("stopped")
        assert self.proc.wait(timeout=30) == 0
        return state

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


PORTS = "UDP:3478,TCP:3478,UDP:49160,UDP:49161,TCP:8765"


@pytest.mark.parametrize(
    ("method", "name"), [("upnp", "UPnP-IGD"), ("natpmp", "NAT-PMP"), ("pcp", "PCP")]
)
def test_mappings_appear_in_upnpc_and_are_gone_after_stop(router_lab, method, name):
    mapper = MapperProcess(router_lab, "--methods", method, "--ports", PORTS)
    try:
        state = mapper.next_state("mapped", "partial", "failed")
        assert state["status"] == "mapped", state["line"]
        assert state["method"] == name
        assert state["external_ip"] == WAN_IP
        assert WAN_IP in state["line"]
        assert name in state["line"]
        listed = {
            (e.protocol, e.external_port, e.internal_ip, e.internal_port)
            for e in router_lab.upnpc_list()
        }
        wanted = {
            (p.split(":")[0], int(p.split(":")[1]), HOST_IP, int(p.split(":")[1]))
            for p in PORTS.split(",")
        }
        assert wanted <= listed, f"upnpc -l shows {sorted(listed)}"
        stopped = mapper.stop()
        assert stopped["mappings"] == []
        assert router_lab.upnpc_list() == []
    finally:
        mapper.kill()


def test_pcp_first_by_default(router_lab):
    mapper = MapperProcess(router_lab, "--ports", "UDP:40000")
    try:
        state = mapper.next_state("mapped", "partial", "failed")
        assert state["method"] == "PCP", state["line"]
        mapper.stop()
    finally:
        mapper.kill()


def test_mappings_are_renewed_before_they_expire(tmp_path):
    skip_unless_lab()
    with Lab(workdir=tmp_path) as built:
        lab = build_home(built, min_lifetime=4)
        mapper = MapperProcess(lab, "--methods", "pcp", "--lifetime", "4", "--ports", "UDP:40001")
        try:
            state = mapper.next_state("mapped", "partial", "failed")
            assert state["mappings"][0][3] == 4, state
            # Three lifetimes later the mapping must still be there: only renewals keep it.
            renewals = [mapper.next_state("mapped") for _ in range(5)]
            assert all(r["mappings"][0][2] == 40001 for r in renewals)
            assert [(e.protocol, e.external_port) for e in lab.upnpc_list()] == [("UDP", 40001)]
            mapper.stop()
            assert lab.upnpc_list() == []
        finally:
            mapper.kill()


def test_router_without_upnp_gives_the_one_line_reason(plain_router_lab):
    mapper = MapperProcess(plain_router_lab, "--ports", "UDP:3478")
    try:
        state = mapper.next_state("mapped", "partial", "failed")
        assert state["status"] == "failed"
        assert state["line"] == (
            "port mapping failed: the router 198.19.1.1 has UPnP turned off "
            "(no answer to PCP, NAT-PMP, UPnP-IGD)"
        )
        assert "\n" not in state["line"]
        mapper.proc.stdin.write("stop\n")  # type: ignore[union-attr]
        mapper.proc.stdin.flush()  # type: ignore[union-attr]
        assert mapper.proc.wait(timeout=30) == 0
    finally:
        mapper.kill()
