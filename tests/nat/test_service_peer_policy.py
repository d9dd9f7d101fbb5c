"""The default peer deny list against real listeners on IPv6 addresses that embed 127.0.0.1.

Issue 14 found ``peercall relay`` delivering to ``::127.0.0.1`` and ``2002:7f00:1::1``. Here the
relay (the real ``peercall relay`` process, default deny list, no ``--allow-loopback-peers``)
runs in a network namespace this test creates, whose loopback carries every IPv4-embedding form
of 127.0.0.1 plus one ordinary address as the control. A listener on each must receive nothing,
while the control receives what was sent to it after them (loopback keeps the order, so the
control's datagram arriving means the earlier ones would have arrived too).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nat import stun
from tests.nat.conftest import REPO, relay_port_range
from tests.nat.test_policy import embeddings
from tests.nat.turn_helpers import key_for, new_tid, sign

REALM, USER, PASSWORD = "peercall", "alice", "wonderland"
CLONE_NEWNET = 0x40000000
CONTROL = "2001:db8::5"
FORMS = {name: address for name, address in embeddings("127.0.0.1").items() if name != "mapped"}
# (The IPv4-mapped form cannot be a separate IPv6 listener: it is the IPv4 socket itself.)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A fresh network namespace (unique name: tests run in parallel), always deleted."""
    name = f"pc14pol-{os.getpid()}-{secrets.token_hex(3)}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        for address in [*FORMS.values(), CONTROL]:
            _run("ip", "-n", name, "addr", "add", f"{address}/128", "dev", "lo", "nodad")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def udp_socket_in(ns: str, host: str) -> socket.socket:
    """A UDP socket bound to ``host`` inside ``ns``: made by a thread that entered ``ns``
    (setns changes only the calling thread; the socket stays in the namespace it was made in)."""
    made: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.bind((host, 0))
            made.append(sock)
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=enter_and_make)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class Client:
    """A blocking TURN client (requests signed independently by turn_helpers.sign)."""

    def __init__(self, sock: socket.socket, server: tuple[str, int]) -> None:
        self.sock = sock
        self.server = server
        self.key = key_for(USER, REALM, PASSWORD)
        self.nonce = b""

    def _exchange(self, data: bytes, timeout: float) -> stun.Message:
        self.sock.settimeout(timeout)
        self.sock.sendto(data, self.server)
        while True:
            reply, _ = self.sock.recvfrom(4096)
            if reply[8:20] == data[8:20]:
                return stun.parse_message(reply)

    def wait_ready(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, new_tid())
            with contextlib.suppress(TimeoutError):
                self._exchange(request.encode(), 0.2)
                return
        raise AssertionError(f"relay did not answer:\n{log.read_text()}")

    def request(self, method: int, attrs: list[tuple[stun.Attr[Any], Any]]) -> stun.Message:
        for _ in range(2):
            msg = stun.Message(method, stun.MsgClass.REQUEST, new_tid())
            for attr, value in attrs:
                msg.add(attr, value)
            data = msg.encode()
            if self.nonce:
                msg.add(stun.USERNAME, USER)
                msg.add(stun.REALM, REALM)
                msg.add(stun.NONCE, self.nonce)
                data = sign(msg.encode(), self.key)
            response = self._exchange(data, 5.0)
            err = response.get(stun.ERROR_CODE)
            nonce = response.get(stun.NONCE)
            if err is not None and err.code in (401, 438) and nonce is not None:
                self.nonce = nonce
                continue
            return response
        return response

    def indicate(self, peer: tuple[str, int], data: bytes) -> None:
        msg = stun.Message(stun.Method.SEND, stun.MsgClass.INDICATION, new_tid())
        msg.add(stun.XOR_PEER_ADDRESS, peer)
        msg.add(stun.DATA, data)
        self.sock.sendto(msg.encode(), self.server)

    def channel_data(self, number: int, data: bytes) -> None:
        self.sock.sendto(stun.encode_channel_data(number, data), self.server)


def code(msg: stun.Message) -> int | None:
    err = msg.get(stun.ERROR_CODE)
    return None if err is None else err.code


def received(sock: socket.socket, wait: float) -> list[bytes]:
    sock.settimeout(wait)
    got = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(sock.recv(4096))
            sock.settimeout(0.05)
    return got


@pytest.mark.parametrize("workers", ["1", "2"])
def test_default_deny_list_relays_nothing_to_ipv6_forms_of_loopback(
    tmp_path: Path, workers: str
) -> None:
    with contextlib.ExitStack() as stack, namespace() as ns:
        listeners = {name: udp_socket_in(ns, address) for name, address in FORMS.items()}
        control = udp_socket_in(ns, CONTROL)
        client_sock = udp_socket_in(ns, "::1")
        for sock in [*listeners.values(), control, client_sock]:
            stack.callback(sock.close)
        probe = udp_socket_in(ns, "::1")
        port = probe.getsockname()[1]  # a port free in the fresh namespace
        probe.close()
        low, high = relay_port_range()
        log = tmp_path / "relay.log"
        cmd = [
            *("ip", "netns", "exec", ns, sys.executable, "-m", "app.cli", "relay"),
            *("--listening-ip", "::1", "--listening-port", str(port)),
            *("--min-port", str(low), "--max-port", str(high), "--realm", REALM),
            *("--user", f"{USER}:{PASSWORD}", "--no-tcp"),
        ]
        if workers != "1":
            cmd += ["--workers", workers]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        stack.callback(proc.wait, 15)
        stack.callback(proc.terminate)
        client = Client(client_sock, ("::1", port))
        client.wait_ready(proc, log)

        answer = client.request(
            stun.Method.ALLOCATE,
            [(stun.REQUESTED_TRANSPORT, 17), (stun.REQUESTED_ADDRESS_FAMILY, 2)],
        )
        assert code(answer) is None, answer
        for number, (name, sock) in enumerate(listeners.items(), start=0x4000):
            peer = sock.getsockname()[:2]
            permission = client.request(
                stun.Method.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, peer)]
            )
            assert code(permission) == 403, f"{name} {peer[0]}: CreatePermission not refused"
            bind = client.request(
                stun.Method.CHANNEL_BIND,
                [(stun.CHANNEL_NUMBER, number), (stun.XOR_PEER_ADDRESS, peer)],
            )
            assert code(bind) == 403, f"{name} {peer[0]}: ChannelBind not refused"
            client.indicate(peer, b"must not arrive")
            client.channel_data(number, b"must not arrive either")

        control_peer = control.getsockname()[:2]
        ok = client.request(stun.Method.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, control_peer)])
        assert code(ok) is None, ok
        client.indicate(control_peer, b"control")
        assert received(control, 5.0) == [b"control"]
        for name, sock in listeners.items():
            assert received(sock, 0.2) == [], f"{name} {sock.getsockname()[0]} got relayed data"
