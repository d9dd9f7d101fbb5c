"""A private network namespace with only loopback: where the browser tests run their peers.

Chromium pairs every interface it has (here also the machine's own LAN address) with the
peer's 127.0.0.1 candidates, and aiortc then learns and answers that address as peer
reflexive. Inside a namespace whose only interface is ``lo``, everything (the signaling
server, the relay, Chromium and ``peercall call``) talks over that namespace's 127.0.0.1 and
nothing else. The test process reaches a port in it (Chromium's DevTools) with a socket
created by a thread that entered the namespace (setns(2) affects only the calling thread).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence

CLONE_NEWNET = 0x40000000


def can_create() -> bool:
    """Root and ``ip`` are needed (CI runs as root)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


class LoopbackNamespace:
    """``with LoopbackNamespace() as ns``: a fresh namespace with ``lo`` up, always deleted."""

    def __init__(self) -> None:
        # Unique: other engineers' tests create namespaces on this machine at the same time.
        self.name = f"pcbrowser-{os.getpid()}-{secrets.token_hex(3)}"
        self.path = f"/var/run/netns/{self.name}"

    def __enter__(self) -> LoopbackNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False)

    @property
    def prefix(self) -> Sequence[str]:
        """Prepend to a command line to run it inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    def run(self, *command: str) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True)

    def connect_tcp(self, port: int, host: str = "127.0.0.1") -> socket.socket:
        """A TCP connection to ``host:port`` inside the namespace."""
        result: list[socket.socket | BaseException] = []

        def inside() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            target = os.open(self.path, os.O_RDONLY)
            try:
                if libc.setns(target, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
                try:
                    result.append(socket.create_connection((host, port), timeout=10))
                except BaseException as exc:
                    result.append(exc)
                finally:
                    # This thread ends next, but never leave it in the namespace regardless.
                    libc.setns(own, CLONE_NEWNET)
            except BaseException as exc:
                result.append(exc)
            finally:
                os.close(own)
                os.close(target)

        thread = threading.Thread(target=inside, name=f"connect in {self.name}")
        thread.start()
        thread.join()
        outcome = result[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
