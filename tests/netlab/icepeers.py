"""Two ICE test peers (tests/app/rtcfixes/icepeer.py) in lab hosts, driven over their stdio.

Each peer prints one JSON object a line (its description, its "connected" report, reports on
request) and reads JSON commands; :func:`ice_call` relays the offer and the answer between two.
No pytest dependency: bench/bench_ice.py uses it too.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from tests.netlab.lab import Host, Lab


class Peer:
    """A running :mod:`tests.app.rtcfixes.icepeer` process, read line by line (JSON)."""

    def __init__(self, lab: Lab, host: Host, role: str, stun: str, extra: Sequence[str]) -> None:
        argv = [sys.executable, "-m", "tests.app.rtcfixes.icepeer", "--role", role,
                "--stun", stun, *extra]  # fmt: skip
        self.proc: subprocess.Popen[str] = lab.popen(
            host,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"peer said nothing for {timeout} s") from None
        if line is None:
            assert self.proc.stderr is not None
            raise RuntimeError(f"peer exited: {self.proc.stderr.read()[-3000:]}")
        data: dict[str, Any] = json.loads(line)
        return data

    def send(self, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(fields) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send(cmd="quit")
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump_thread.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@contextlib.contextmanager
def ice_call(
    lab: Lab, offer: Host, answer: Host, stun: str, *extra: str
) -> Iterator[tuple[Peer, Peer, dict[str, Any], dict[str, Any]]]:
    """``offer`` offers, ``answer`` answers; yields both peers and their "connected" reports."""
    offerer = Peer(lab, offer, "offer", stun, extra)
    answerer = Peer(lab, answer, "answer", stun, extra)
    try:
        answerer.send(**offerer.read())
        offerer.send(**answerer.read())
        yield offerer, answerer, offerer.read(), answerer.read()
    finally:
        offerer.stop()
        answerer.stop()
