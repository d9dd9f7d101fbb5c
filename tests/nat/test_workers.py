"""``peercall relay --workers N``: ports cut per worker, and quotas exact across workers with
real clients on many five-tuples (which the kernel spreads over the workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nat import stun
from nat.errors import ConfigError
from nat.workers import port_slices
from tests.nat.conftest import (
    LOOPBACK,
    REALM,
    REPO,
    free_udp_tcp_port,
    relay_port_range,
    wait_until_serving,
)
from tests.nat.turn_helpers import key_for, new_tid, sign


def test_port_slices_are_disjoint_and_cover_the_range() -> None:
    assert port_slices(100, 199, 2) == [(100, 149), (150, 199)]
    assert port_slices(100, 102, 3) == [(100, 100), (101, 101), (102, 102)]
    with pytest.raises(ConfigError, match="2 relay port\\(s\\) cannot be shared by 3 workers"):
        port_slices(100, 101, 3)


class Client:
    """A blocking TURN client on its own UDP socket (its own five-tuple)."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)
        self.sock.connect((LOOPBACK, port))
        self.user = user
        self.key = key_for(user, REALM, password)
        self.nonce = b""

    def request(self, method: int, attrs: list[tuple[stun.Attr[Any], Any]]) -> stun.Message:
        for _ in range(2):
            msg = stun.Message(method, stun.MsgClass.REQUEST, new_tid())
            for attr, value in attrs:
                msg.add(attr, value)
            data = msg.encode()
            if self.nonce:
                msg.add(stun.USERNAME, self.user)
                msg.add(stun.REALM, REALM)
                msg.add(stun.NONCE, self.nonce)
                data = sign(msg.encode(), self.key)
            self.sock.send(data)
            while True:
                answer = stun.parse_message(self.sock.recv(4096))
                if answer.transaction_id == msg.transaction_id:
                    break
            err = answer.get(stun.ERROR_CODE)
            nonce = answer.get(stun.NONCE)
            if err is not None and err.code in (401, 438) and nonce:
                self.nonce = nonce
                continue
            return answer
        return answer

    def allocate(self) -> stun.Message:
        return self.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])


def code(msg: stun.Message) -> int | None:
    err = msg.get(stun.ERROR_CODE)
    return None if err is None else err.code


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, tuple[int, int]]]:
    port = free_udp_tcp_port()
    relay_ports = relay_port_range(200)
    log = tmp_path / "relay.log"
    cmd = [
        *(sys.executable, "-m", "app.cli", "relay", "--listening-ip", LOOPBACK),
        *("--listening-port", str(port), "--realm", REALM),
        *("--min-port", str(relay_ports[0]), "--max-port", str(relay_ports[1])),
        *("--user", "alice:wonderland", "--user", "bob:builder"),
        *("--user-quota", "10", "--total-quota", "16", "--workers", "2"),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_until_serving(LOOPBACK, port, proc, log)
        yield port, relay_ports
    finally:
        proc.terminate()
        proc.wait(15)
    assert "2 relay worker processes" in log.read_text()


def test_quotas_are_exact_across_two_workers(relay: tuple[int, tuple[int, int]]) -> None:
    port, (low, high) = relay
    clients: list[Client] = []
    try:
        alice = [Client(port, "alice", "wonderland") for _ in range(30)]
        bob = [Client(port, "bob", "builder") for _ in range(30)]
        clients += alice + bob
        alice_answers = [c.allocate() for c in alice]
        bob_answers = [c.allocate() for c in bob]
        alice_ok = [a for a in alice_answers if code(a) is None]
        bob_ok = [a for a in bob_answers if code(a) is None]
        assert len(alice_ok) == 10  # user-quota, counted over both workers
        assert {code(a) for a in alice_answers} == {None, 486}
        assert len(bob_ok) == 6  # what total-quota 16 leaves
        assert {code(a) for a in bob_answers} == {None, 486}
        # The allocations really are spread over both workers (each owns half the ports).
        middle = low + (high - low + 1) // 2
        ports = [a.get(stun.XOR_RELAYED_ADDRESS)[1] for a in alice_ok + bob_ok]  # type: ignore[index]
        assert any(p < middle for p in ports)
        assert any(p >= middle for p in ports)
        # Deleting one frees exactly one, whichever worker the next request reaches.
        holder = next(c for c, a in zip(alice, alice_answers, strict=True) if code(a) is None)
        assert code(holder.request(stun.Method.REFRESH, [(stun.LIFETIME, 0)])) is None
        more = [Client(port, "alice", "wonderland") for _ in range(4)]
        clients += more
        assert sorted(code(c.allocate()) or 0 for c in more) == [0, 486, 486, 486]
    finally:
        for client in clients:
            client.sock.close()


@contextlib.contextmanager
def two_worker_relay(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``peercall relay --workers 2`` in its own process group, serving; (process, log file).
    Its stderr is a pipe for the test to read; whatever is left running is killed after."""
    port = free_udp_tcp_port()
    low, high = relay_port_range(50)
    log = tmp_path / "relay.log"
    cmd = [
        *(sys.executable, "-m", "app.cli", "relay", "--listening-ip", LOOPBACK),
        *("--listening-port", str(port), "--min-port", str(low), "--max-port", str(high)),
        *("--user", "alice:wonderland", "--workers", "2"),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.PIPE, cwd=REPO, start_new_session=True
        )
    try:
        wait_until_serving(LOOPBACK, port, proc, log)
        yield proc, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_dead_worker_stops_the_relay_with_one_line(tmp_path: Path) -> None:
    with two_worker_relay(tmp_path) as (proc, log):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("peercall: error: relay worker peercall-relay-worker-")
    assert lines[0].endswith("exited with -9")
    assert "relay stopped:" in log.read_text()


def test_sigterm_to_the_whole_process_group_is_a_clean_stop(tmp_path: Path) -> None:
    # As `timeout` or a service manager does: the workers get the signal too.
    with two_worker_relay(tmp_path) as (proc, log):
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stderr == b""
    assert "relay stopped: 1 STUN requests" in log.read_text()


# A relay whose every process gets SIGTERM during start-up, as `timeout` or a service manager
# stopping it right after starting it does. The run_loop given to serve_workers signals the
# whole process group (parent and workers) from a worker before (or right after) its event loop
# starts, the window in which a worker used to die of the signal or exit before it was ready,
# which the parent printed as "relay worker failed to start: exited with ...".
_STOP_DURING_START_UP = """
import asyncio, os, signal, sys
from nat.config import RelayConfig
from nat.workers import serve_workers

when = sys.argv[1]
config = RelayConfig(
    listening_ips=("127.0.0.1",), listening_port=0, min_port=int(sys.argv[2]),
    max_port=int(sys.argv[3]), users=(("alice", b"0" * 16),),
)

def run_loop(main):
    if when == "before-loop":
        os.killpg(0, signal.SIGTERM)
        return asyncio.run(main)

    async def first_thing_on_the_loop():
        os.killpg(0, signal.SIGTERM)
        return await main

    return asyncio.run(first_thing_on_the_loop())

sys.exit(serve_workers(config, 2, sys.stdout, run_loop, lambda config: []))
"""


@pytest.mark.parametrize("when", ["before-loop", "on-the-loop"])
def test_a_stop_during_start_up_is_a_clean_stop(when: str) -> None:
    low, high = relay_port_range(50)
    proc = subprocess.run(
        [sys.executable, "-c", _STOP_DURING_START_UP, when, str(low), str(high)],
        capture_output=True,
        cwd=REPO,
        start_new_session=True,  # the process group signalled is the relay's alone
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    out = proc.stdout.decode()
    assert "relay ready" not in out
    assert "relay stopped: 0 STUN requests" in out
