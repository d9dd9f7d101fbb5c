"""ICE check fixes through real NATs: two port-restricted cone routers of the NAT lab."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.netlab import Host, Lab, LabError, Lan, Relay
from tests.netlab.conftest import require_netns
from tests.netlab.icepeers import Peer, ice_call
from tests.netlab.lab import RELAY_PASSWORD, RELAY_USER

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@dataclass
class NatPair:
    """Host 1 and host 2, each behind its own cone router, and ``peercall relay`` between."""

    lab: Lab
    lan1: Lan
    lan2: Lan
    host1: Host
    host2: Host
    relay: Relay

    @property
    def stun_uri(self) -> str:
        return self.relay.stun

    @property
    def turn_uri(self) -> str:
        return f"turn:{self.relay.address}:{self.relay.port}?transport=udp"

    @property
    def turn_tcp_uri(self) -> str:
        return f"turn:{self.relay.address}:{self.relay.port}?transport=tcp"

    def block_direct(self, blocked: bool) -> None:
        """Drop (or stop dropping) packets between the two routers, the relay untouched."""
        if blocked:
            self.lab.block_between(self.lan1, self.lan2)
        else:
            self.lab.unblock_between(self.lan1, self.lan2)

    def block_udp(self, blocked: bool) -> None:
        """Router 1 forwards TCP only (outbound UDP blocked, as some networks do), or all again."""
        if blocked:
            self.lab.block_udp(self.lan1)
        else:
            self.lab.unblock_udp(self.lan1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatPair]:
    require_netns()
    workdir = tmp_path_factory.mktemp("natpair")
    with Lab(workdir=workdir) as built:
        lan1, lan2 = built.add_lan("cone"), built.add_lan("cone")
        host1, host2 = lan1.add_host("h1"), lan2.add_host("h2")
        relay = built.start_relay("peercall", log=workdir / "relay.log")
        yield NatPair(built, lan1, lan2, host1, host2, relay)


@contextlib.contextmanager
def call(lab: NatPair, *extra: str) -> Iterator[tuple[Peer, Peer, dict[str, Any], dict[str, Any]]]:
    """h1 offers, h2 answers; yields both peers and their "connected" reports."""
    with ice_call(lab.lab, lab.host1, lab.host2, lab.stun_uri, *extra) as peers:
        yield peers


def is_direct(report: dict[str, Any]) -> bool:
    return "relay" not in (report["local"][0], report["remote"][0])


def test_cone_to_cone_uses_a_triggered_check(lab: NatPair) -> None:
    # The answerer starts checking first, and its first check to the offerer's srflx is dropped
    # by the offerer's router (nothing went out that way yet). The offerer's check then arrives
    # while that pair is still in progress: one side sends its check again at once.
    with call(lab) as (_, _, offerer, answerer):
        assert is_direct(offerer)
        assert is_direct(answerer)
        assert offerer["remote"][0] in ("srflx", "prflx")
        assert offerer["stats"]["triggered"] + answerer["stats"]["triggered"] >= 1


def test_without_triggered_checks_nothing_is_triggered(lab: NatPair) -> None:
    # The counter counts only what the fix sends: off, it stays at zero (the call still
    # connects, on aioice's 500 ms retransmission).
    with call(lab, "--no-triggered") as (_, _, offerer, answerer):
        assert is_direct(offerer)
        assert offerer["stats"]["triggered"] == answerer["stats"]["triggered"] == 0


def reports(*peers: Peer) -> list[dict[str, Any]]:
    for peer in peers:
        peer.send(cmd="report")
    return [peer.read() for peer in peers]


def test_relay_gives_way_to_a_direct_path_that_answers_late(lab: NatPair) -> None:
    turn = ["--turn", lab.turn_uri, "--user", RELAY_USER, "--password", RELAY_PASSWORD]
    lab.block_direct(True)
    try:
        with call(lab, *turn) as (offerer, answerer, first_o, first_a):
            assert not is_direct(first_o)
            assert not is_direct(first_a)
            before = reports(offerer, answerer)
            lab.block_direct(False)
            deadline = time.monotonic() + 40
            while True:
                now = reports(offerer, answerer)
                if all(is_direct(r) for r in now) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert [is_direct(r) for r in now] == [True, True]
            assert all(r["state"] == "connected" for r in now)
            # The same DTLS/SCTP session carried on over the new path: chat kept arriving.
            time.sleep(0.5)
            after = reports(offerer, answerer)
            for b, n, a in zip(before, now, after, strict=True):
                assert b["received"] < n["received"] < a["received"]
            # Each side moved its selected pair itself (not only learned it from the peer).
            assert all(r["stats"]["switched"] >= 1 for r in after)
            # ... and said so at once (the session reports the new path from this hook).
            assert all(r["stats"]["switch_calls"] == r["stats"]["switched"] for r in after)
    finally:
        with contextlib.suppress(LabError):
            lab.block_direct(False)  # already lifted unless the test failed early


@pytest.mark.parametrize("tcp_first", [False, True], ids=["udp-listed-first", "tcp-listed-first"])
def test_udp_blocked_side_connects_through_turn_tcp(lab: NatPair, tcp_first: bool) -> None:
    uris = [lab.turn_uri, lab.turn_tcp_uri]
    if tcp_first:
        uris.reverse()
    args = [a for uri in uris for a in ("--turn", uri)]
    args += ["--user", RELAY_USER, "--password", RELAY_PASSWORD, "--gather-timeout", "2"]
    lab.block_udp(True)
    try:
        with call(lab, *args) as (offerer, answerer, first_o, _):
            # Everything UDP from host 1 is dropped at its router: only TURN over TCP is left.
            assert first_o["local"][0] == "relay"
            assert first_o["via"] == [lab.turn_tcp_uri, "tcp"]
            time.sleep(0.5)
            o, a = reports(offerer, answerer)
            assert o["received"] > 0
            assert a["received"] > 0
    finally:
        lab.block_udp(False)
