"""A private network namespace for GUI tests that need a non-loopback address.

The test's main thread (where Qt and the qasync loop run, and so where every socket of the
windows, the relay and aioice is created) enters the namespace and leaves it at the end;
sockets keep the namespace they were made in. Only addresses from the lab range 198.19.N.0/24
are used, inside a namespace with a unique name, always deleted (COMMON rules).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """The calling thread in the existing namespace ``ns`` until the block ends (sockets made
    meanwhile keep it)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@contextlib.contextmanager
def inside_namespace(lan: int = 77) -> Iterator[tuple[str, str]]:
    """Run the calling thread in a new namespace with two veth addresses 198.19.<lan>.1/.2."""
    name = f"pc-ui12-{os.getpid()}-{secrets.token_hex(3)}"
    first, second = f"198.19.{lan}.1", f"198.19.{lan}.2"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
        _ip("-n", name, "addr", "add", f"{first}/24", "dev", "lan0")
        _ip("-n", name, "addr", "add", f"{second}/24", "dev", "lan1")
        _ip("-n", name, "link", "set", "lan0", "up")
        _ip("-n", name, "link", "set", "lan1", "up")
        with entered(name):
            yield first, second
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
