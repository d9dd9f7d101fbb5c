"""coturn's own clients (turnutils_stunclient, turnutils_uclient) against a real relay process.

Every test runs against ``peercall relay`` and against coturn's ``turnserver`` as the reference.
turnutils_uclient relays RTP-like traffic to coturn's ``turnutils_peer`` echo server (or between
its own clients with -y) and reports losses: we require 0 %.

uclient runs take seconds of mostly idle waiting, so all variants for one server run at once in
a module-scoped fixture and each test then checks its own variant's report.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.nat.conftest import (
    LOOPBACK,
    EchoPeer,
    TurnServer,
    UclientResult,
    has_ipv6_loopback,
    parse_uclient,
    server_kinds,
    start_server,
    stun_binding,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("turnutils_uclient") is None, reason="coturn not installed"),
]

MESSAGES = 10
LENGTH = 120

# variant -> (which server: long-term or REST credentials, uclient flags)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "udp-channels": ("lt", ()),
    "udp-send-indications": ("lt", ("-s",)),
    "tcp-channels": ("lt", ("-t",)),
    "tcp-send-indications": ("lt", ("-t", "-s")),
    "client-to-client-udp": ("lt", ("-y",)),
    "client-to-client-tcp-send": ("lt", ("-y", "-t", "-s")),
    "rest-udp-channels": ("rest", ()),
    "rest-tcp-send-indications": ("rest", ("-t", "-s")),
}


def uclient_command(server: TurnServer, peer: EchoPeer, flags: tuple[str, ...]) -> list[str]:
    cmd = ["turnutils_uclient", "-p", str(server.port), "-e", peer.host, "-r", str(peer.port)]
    cmd += ["-n", str(MESSAGES), "-l", str(LENGTH), "-m", "2", "-u", server.user]
    # -W makes uclient build a TURN REST username '<expiry>:alice' and sign it with the secret.
    cmd += ["-W", server.secret] if server.auth == "rest" else ["-w", server.password]
    return [*cmd, *flags, server.host]


@dataclass
class Round:
    """One server kind's run of every variant."""

    kind: str
    results: dict[str, UclientResult]
    still_serving: tuple[str, int] | None
    exit_codes: dict[str, int]
    logs: dict[str, str]


@pytest.fixture(scope="module", params=server_kinds())
def uclient_round(
    request: pytest.FixtureRequest,
    echo_peer: EchoPeer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Round:
    kind: str = request.param
    workdir = tmp_path_factory.mktemp(f"uclient-{kind}")
    servers = {auth: start_server(kind, auth, workdir / auth) for auth in ("lt", "rest")}
    try:
        procs = {}
        for name, (auth, flags) in VARIANTS.items():
            log = workdir / f"{name}.log"
            with log.open("wb") as out:
                procs[name] = (
                    subprocess.Popen(
                        uclient_command(servers[auth], echo_peer, flags),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    ),
                    log,
                )
        results = {}
        for name, (proc, log) in procs.items():
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            results[name] = parse_uclient(proc.returncode, log.read_text(errors="replace"))
        # The servers must still answer after all that (nothing crashed or wedged).
        try:
            still = stun_binding(LOOPBACK, servers["lt"].port, timeout=2)
        except OSError:
            still = None
    finally:
        exit_codes = {auth: server.stop(signal.SIGTERM) for auth, server in servers.items()}
    return Round(kind, results, still, exit_codes, {a: s.output() for a, s in servers.items()})


@pytest.mark.parametrize("variant", VARIANTS)
def test_uclient_relays_with_zero_loss(uclient_round: Round, variant: str) -> None:
    result = uclient_round.results[variant]
    assert result.returncode == 0, result.summary()
    assert result.lost_percent == 0.0, result.summary()
    assert result.sent >= MESSAGES, result.summary()
    assert result.received == result.sent, result.summary()


def test_server_survives_the_load_and_stops_cleanly(uclient_round: Round) -> None:
    assert uclient_round.still_serving is not None
    assert uclient_round.still_serving[0] == LOOPBACK
    if uclient_round.kind == "peercall":  # coturn exits nonzero on SIGTERM by design
        assert uclient_round.exit_codes == {"lt": 0, "rest": 0}, uclient_round.logs


@pytest.mark.parametrize("kind", server_kinds())
def test_stunclient_gets_its_mapped_address(kind: str, tmp_path: Path) -> None:
    server = start_server(kind, "lt", tmp_path)
    try:
        proc = subprocess.run(
            ["turnutils_stunclient", "-p", str(server.port), server.host],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mapped = re.findall(r"UDP reflexive addr: ([\d.]+):(\d+)", proc.stdout)
    assert mapped, proc.stdout
    assert mapped[0][0] == LOOPBACK
    assert 0 < int(mapped[0][1]) < 65536


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_uclient_dual_allocation(echo_peer: EchoPeer, tmp_path: Path) -> None:
    # -Z: ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.2, coturn sends the draft code point 0x8032);
    # its Refreshes randomly carry REQUESTED-ADDRESS-FAMILY IPv4 or IPv6, which only succeed
    # when the allocation really holds both relayed addresses. 6 clients: both cases occur.
    server = start_server("peercall", "lt", tmp_path, "--listening-ip", "::1")
    try:
        flags = ("-Z",)
        cmd = uclient_command(server, echo_peer, flags)
        cmd[cmd.index("-m") + 1] = "6"
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    finally:
        server.stop()
    result = parse_uclient(proc.returncode, proc.stdout + proc.stderr)
    assert result.returncode == 0, result.summary()
    assert result.lost_percent == 0.0, result.summary()
    assert result.sent >= MESSAGES, result.summary()
    assert result.received == result.sent, result.summary()


@pytest.mark.parametrize("kind", server_kinds())
def test_user_quota_is_exact_for_uclients(kind: str, echo_peer: EchoPeer, tmp_path: Path) -> None:
    """``user-quota 5`` against turnutils_uclient -m 1 -c clients started one after another
    (each holds 2 allocations, on both servers): two fit, the third gets one and is refused
    486 for its second, the fourth at once. PeerCall runs 2 workers (see conftest), so the
    clients' five-tuples land on both and only a shared count gives coturn's answer."""
    quota = ["--user-quota=5"] if kind == "coturn" else ["--user-quota", "5"]
    server = start_server(kind, "lt", tmp_path, *quota)
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(4):
            log = tmp_path / f"uclient-{index}.log"
            cmd = uclient_command(server, echo_peer, ("-c",))
            cmd[cmd.index("-n") + 1] = "400"  # ~8 s of traffic at -z 20: all four overlap
            cmd[cmd.index("-m") + 1] = "1"
            cmd[cmd.index("-n") : cmd.index("-n")] = ["-z", "20"]
            with log.open("wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            procs.append((proc, log))
            deadline = time.monotonic() + 30  # until this one allocated (or gave up)
            while proc.poll() is None and "start_mclient: msz=" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        outcomes = []
        for proc, log in procs:
            proc.wait(60)
            text = log.read_text(errors="replace")
            outcomes.append("ok" if proc.returncode == 0 else ("486" if " 486 " in text else text))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()
    assert outcomes == ["ok", "ok", "486", "486"]
