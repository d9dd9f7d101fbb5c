"""``peercall open LINK`` on one machine: the link alone gets the friend into the host's room.

Loopback only (``--loopback`` host candidates on both ends); the NAT-crossing variants are in
test_lab_call.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.nat.conftest import free_udp_tcp_port
from tests.netlab.lab import REPO
from tests.portmap.test_lab_call import FRIEND_TONE, HOST_TONE, heard

pytestmark = pytest.mark.slow


def peercall(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=str(REPO),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_the_friend_opens_the_link_and_both_hear_each_other(tmp_path):
    host_log = tmp_path / "host.log"
    host = peercall(
        host_log,
        "host",
        "--no-map-ports",
        "--listen",
        "127.0.0.1",
        "--port",
        "0",
        "--turn-port",
        str(free_udp_tcp_port()),
        "--relay-ports",
        "50020-50023",
        "--no-qr",
    )
    callers: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while "ready (Ctrl-C" not in host_log.read_text() and time.monotonic() < deadline:
            assert host.poll() is None, host_log.read_text()
            time.sleep(0.1)
        text = host_log.read_text()
        link = text.split("link: ", 1)[1].split()[0]
        join = text.split("join it yourself: peercall ", 1)[1].splitlines()[0].split()
        common = ["--loopback", "--no-devices", "--duration", "3"]
        answering = peercall(
            tmp_path / "answer.log",
            *join,
            "--send-tone",
            str(HOST_TONE),
            "--record",
            str(tmp_path / "host.wav"),
            *common,
        )
        callers.append(answering)
        time.sleep(1.0)
        friend = peercall(
            tmp_path / "friend.log",
            "open",
            link,
            "--send-tone",
            str(FRIEND_TONE),
            "--record",
            str(tmp_path / "friend.wav"),
            *common,
        )
        callers.append(friend)
        assert friend.wait(timeout=90) == 0, (tmp_path / "friend.log").read_text()
        assert answering.wait(timeout=90) == 0, (tmp_path / "answer.log").read_text()
    finally:
        for proc in callers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        host.send_signal(signal.SIGINT)
        assert host.wait(timeout=30) == 0
    assert "call connected" in (tmp_path / "friend.log").read_text()
    assert heard(tmp_path / "host.wav", FRIEND_TONE, HOST_TONE)
    assert heard(tmp_path / "friend.wav", HOST_TONE, FRIEND_TONE)
