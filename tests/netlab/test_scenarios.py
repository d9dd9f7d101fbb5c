"""Calls between real ``peercall call`` processes through the lab's NATs (issue 15's scenarios).

Every scenario runs ``peercall signal`` and ``peercall relay`` on the internet host and one
``peercall call`` in each LAN host; each side sends a tone and records the other's. A scenario
passes when both sides say "call connected", the selected path is of the kind the NATs call for
(read from the path lines and from ``--export``), and each side heard the other's tone,
including after the network recovered. Deadlines below only bound how long a test waits; how
fast things happen is measured by bench/bench_netlab.py, not asserted.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.netlab.calls import Caller, heard, start_pair, wait_both
from tests.netlab.lab import Lab, Lan, NatKind, Relay

pytestmark = [pytest.mark.netns, pytest.mark.slow]

MEDIA_WAIT = 30.0  # longest wait for first media: Python start-up on a loaded 2-core machine
RECOVERY_WAIT = 15.0  # longest wait for media after the network came back
PEER_HANGUP_WAIT = 20.0  # the peer learns of the hang-up through signaling
TONE = 1.0  # seconds of the peer's tone each side must record (before and after recovery)
# A relay pair may be nominated a moment before the direct one succeeds (aggressive
# nomination); the call must then move to the direct path. How long we give it on a busy machine.
SWITCH_WAIT = 15.0


@dataclass
class Call:
    lab: Lab
    lans: tuple[Lan, Lan]
    a: Caller  # answers, on the first LAN
    b: Caller  # dials, on the second LAN
    relay: Relay

    def marks(self) -> tuple[int, int]:
        """How much each side has recorded now: media after this point is media "after"."""
        return len(self.a.samples()), len(self.b.samples())

    def end(self) -> tuple[int | None, int | None]:
        """``a`` hangs up (SIGTERM, as Ctrl-C); ``b`` must then end by itself, told by ``a``."""
        code_a = self.a.stop()
        try:
            self.b.proc.wait(PEER_HANGUP_WAIT)
        except subprocess.TimeoutExpired:
            self.b.stop()
            return code_a, None
        return code_a, self.b.proc.returncode


def place_call(
    lab: Lab,
    tmp_path: Path,
    kinds: tuple[NatKind, NatKind | None],
    *,
    ice: list[str] | None = None,
    ice_order: tuple[str, ...] = ("stun", "turn-udp"),
    loss: int = 0,
) -> Call:
    """Two hosts on LANs of ``kinds`` (None: the same LAN as the first) calling each other.

    ``loss``: percent dropped each way through the first LAN's router from the start.
    """
    lan_a = lab.add_lan(kinds[0])
    if loss:
        lab.loss(lan_a, loss)
    lan_b = lan_a if kinds[1] is None else lab.add_lan(kinds[1])
    a, b = lan_a.add_host("a"), lan_b.add_host("b")
    server = lab.start_signal(log=tmp_path / "signal.log")
    relay = lab.start_relay(log=tmp_path / "relay.log")
    if ice is None:
        specs = {"stun": relay.stun, "turn-udp": relay.turn("udp"), "turn-tcp": relay.turn("tcp")}
        ice = [specs[name] for name in ice_order]
    caller_a, caller_b = start_pair(lab, a, b, tmp_path, server=server, ice_a=ice, ice_b=ice)
    return Call(lab, (lan_a, lan_b), caller_a, caller_b, relay)


def assert_connected_with_media(call: Call) -> None:
    both = wait_both(call.a, call.b, seconds=TONE, timeout=MEDIA_WAIT)
    for side in (call.a, call.b):
        assert "peercall: call connected" in side.output(), side.output()[-3000:]
    assert both, (
        f"media did not flow both ways: a heard {heard(call.a, call.b):.2f} s of b's tone,"
        f" b heard {heard(call.b, call.a):.2f} s of a's tone"
    )


def selected(side: Caller) -> tuple[str, str, str]:
    """(local type, remote type, local candidate's server URI) of the final selected pair."""
    pair = side.exported()["selected"]["pair"]
    return pair["local"]["type"], pair["remote"]["type"], pair["local"]["server"] or ""


def wait_for_last_path(call: Call, kind: str, timeout: float = SWITCH_WAIT) -> None:
    """Wait until both sides' latest path line starts with ``kind`` (the test then asserts it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(side.paths() and side.paths()[-1].startswith(kind) for side in (call.a, call.b)):
            return
        time.sleep(0.1)


def end_cleanly(call: Call) -> None:
    codes = call.end()
    # (x, None): b was still running PEER_HANGUP_WAIT s after a hung up.
    assert codes == (0, 0), f"exit codes {codes}\n{call.b.output()[-2000:]}"


# --- which path each NAT pairing must take ------------------------------------------------
# First kind answers, second dials (the dialer is ICE-controlling): both orders are run.
DIRECT_CASES = [
    pytest.param(("cone", None), ("host", "host"), id="same-lan-host"),
    pytest.param(("cone", "cone"), None, id="cone-cone"),
    pytest.param(("symmetric", "public"), None, id="symmetric-public"),
    pytest.param(("public", "symmetric"), None, id="public-symmetric"),
    pytest.param(("public", "cone"), None, id="public-cone"),
    pytest.param(("cone", "public"), None, id="cone-public"),
]


@pytest.mark.parametrize(("kinds", "types"), DIRECT_CASES)
def test_direct_path(
    lab: Lab,
    tmp_path: Path,
    kinds: tuple[NatKind, NatKind | None],
    types: tuple[str, str] | None,
) -> None:
    call = place_call(lab, tmp_path, kinds)
    assert_connected_with_media(call)
    wait_for_last_path(call, "direct")
    end_cleanly(call)
    for side in (call.a, call.b):
        assert side.paths(), side.output()
        assert side.paths()[-1].startswith("direct"), side.paths()
        local, remote, _ = selected(side)
        assert "relay" not in (local, remote), selected(side)
        if types is not None:
            assert (local, remote) == types


def test_symmetric_to_symmetric_goes_through_the_relay(lab: Lab, tmp_path: Path) -> None:
    call = place_call(lab, tmp_path, ("symmetric", "symmetric"))
    assert_connected_with_media(call)
    end_cleanly(call)
    for side in (call.a, call.b):
        assert side.paths()[-1].startswith("via "), side.paths()
        assert "relay" in selected(side)[:2]


def test_udp_blocked_reaches_the_relay_over_tcp(lab: Lab, tmp_path: Path) -> None:
    call = place_call(
        lab, tmp_path, ("udp-blocked", "cone"), ice_order=("stun", "turn-udp", "turn-tcp")
    )
    assert_connected_with_media(call)
    end_cleanly(call)
    assert call.a.paths()[-1].startswith("via relay"), call.a.paths()
    assert "over TCP" in call.a.paths()[-1], call.a.paths()
    local, _, server = selected(call.a)
    assert local == "relay"
    assert server.endswith("transport=tcp"), server


def test_five_percent_loss_keeps_the_call_up(lab: Lab, tmp_path: Path) -> None:
    call = place_call(lab, tmp_path, ("cone", "cone"), loss=5)
    assert_connected_with_media(call)
    since = call.marks()
    # Media keeps flowing for several seconds of 5 % loss and nobody reports a failure.
    assert wait_both(call.a, call.b, since=since, seconds=4 * TONE, timeout=MEDIA_WAIT)
    for side in (call.a, call.b):
        assert "call failed" not in side.output()
        assert side.proc.poll() is None
    end_cleanly(call)


def assert_same_sas(call: Call) -> None:
    """Recovery keeps the call: one security code, the same on both sides, before and after."""
    codes = {
        m for side in (call.a, call.b) for m in re.findall(r"\(SAS\) ([\d ]+):", side.output())
    }
    assert len(codes) == 1, codes


def test_six_second_outage_recovers(lab: Lab, tmp_path: Path) -> None:
    call = place_call(lab, tmp_path, ("cone", "cone"))
    assert_connected_with_media(call)
    lab.outage(call.lans[0])
    time.sleep(6)
    since = call.marks()
    lab.restore(call.lans[0])
    assert wait_both(call.a, call.b, since=since, seconds=TONE, timeout=RECOVERY_WAIT), (
        f"no media after the outage: a heard {heard(call.a, call.b, since[0]):.2f} s,"
        f" b heard {heard(call.b, call.a, since[1]):.2f} s"
    )
    end_cleanly(call)
    assert_same_sas(call)


def test_address_change_recovers(lab: Lab, tmp_path: Path) -> None:
    call = place_call(lab, tmp_path, ("cone", "cone"))
    assert_connected_with_media(call)
    since = call.marks()
    lab.change_public_address(call.lans[0])
    assert wait_both(call.a, call.b, since=since, seconds=TONE, timeout=RECOVERY_WAIT), (
        f"no media after the address change: a heard {heard(call.a, call.b, since[0]):.2f} s,"
        f" b heard {heard(call.b, call.a, since[1]):.2f} s"
    )
    end_cleanly(call)
    assert_same_sas(call)


_STAMP = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) app\.[\w.]*session INFO call (\S+) -> (\S+)"
)


def _state_times(side: Caller) -> dict[str, datetime]:
    """When the process logged entering each call state (its own clock, from -v logging)."""
    times: dict[str, datetime] = {}
    for line in side.output().splitlines():
        m = _STAMP.match(line)
        if m:
            times.setdefault(m.group(3), datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"))
    return times


def test_no_ice_servers_across_nats_fails_with_a_reason(lab: Lab, tmp_path: Path) -> None:
    call = place_call(lab, tmp_path, ("cone", "cone"), ice=[])
    for side in (call.a, call.b):
        side.proc.wait(60)
    for side in (call.a, call.b):
        out = side.output()
        assert side.proc.returncode != 0, out[-2000:]
        failed = [line for line in out.splitlines() if line.startswith("peercall: call failed")]
        assert failed, out[-2000:]
        assert any(re.search(r"STUN|TURN", line) for line in failed), failed
        assert "Traceback" not in out
        # The engine's own deadline (its log clock): failed within 10 s of starting to gather.
        times = _state_times(side)
        assert (times["failed"] - times["gathering"]).total_seconds() <= 10, times
