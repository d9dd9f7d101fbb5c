"""`peercall call` through a real `peercall signal` process (and a real `peercall relay`):
losing the server mid-call, a Bye before connecting, and relay credentials from the server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from app.media.analysis import tone_power
from signaling.client import WebSocketChannel
from signaling.messages import Bye, Offer
from tests.signaling.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Call:
    """One `peercall call` child process whose stderr lines the test can wait for."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str, stdin: int = subprocess.DEVNULL) -> Call:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "call", *args,
            stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        return cls(proc)

    async def wait_for(self, text: str, limit: float = 60) -> str:
        assert self.proc.stderr is not None
        async with asyncio.timeout(limit):
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError(f"exited before {text!r}; saw {self.lines}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if text in line:
                    return line

    async def finish(self, limit: float = 60) -> int:
        """Wait for the exit (reading the rest of stderr); kill it if it hangs."""
        assert self.proc.stderr is not None
        try:
            async with asyncio.timeout(limit):
                rest = (await self.proc.stderr.read()).decode()
                self.lines.extend(rest.splitlines())
                return await self.proc.wait()
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


async def kill_all(*calls: Call) -> None:
    for call in calls:
        if call.proc.returncode is None:
            call.proc.kill()
            await call.proc.wait()


def tone_at_end(path: Path, freq: float) -> float:
    """Tone power over the part of a recording between 60 % and 90 % of its length."""
    with wave.open(str(path)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert len(samples) > 48000, f"only {len(samples)} samples recorded"
    return tone_power(samples[len(samples) * 6 // 10 : len(samples) * 9 // 10], freq)


async def test_signaling_server_gone_for_good_mid_call(tmp_path: Path) -> None:
    """The client gives up on the server (shortened to 0.5 s); the call goes on over its media
    path, the process still obeys SIGTERM, and the hang-up reaches the peer anyway."""
    server = ServerProcess()
    url = await server.start()
    wav = tmp_path / "callee.wav"
    common = ["--server", url, "--room", "gone", "--secret", "pw", "--loopback", "--no-devices",
              "--duration", "120", "--reconnect-timeout", "0.5"]  # fmt: skip
    callee = await Call.start(*common, "--answer", "--record", str(wav))
    caller = await Call.start(*common, "--send-tone", "700")
    try:
        await callee.wait_for("call connected")
        await caller.wait_for("call connected")
        await server.kill()
        for side in (caller, callee):
            await side.wait_for("signaling lost")
        await asyncio.sleep(2.0)  # the call carries on: media keeps arriving
        assert caller.proc.returncode is None
        caller.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(caller.finish(30), callee.finish(30))
    finally:
        await kill_all(caller, callee)
    assert list(codes) == [0, 0], f"caller:\n{caller.text}\ncallee:\n{callee.text}"
    assert "call ended (the other person hung up)" in callee.text
    assert tone_at_end(wav, 700.0) > 0.005  # still hearing the caller after the loss
    for side in (caller, callee):
        assert "Traceback" not in side.text


async def test_a_caller_that_never_connected_exits_1_when_the_peer_hangs_up_first() -> None:
    server = ServerProcess()
    url = await server.start()
    peer = WebSocketChannel(url, "bye-first", "pw")
    caller = await Call.start(
        "--server", url, "--room", "bye-first", "--secret", "pw", "--loopback", "--no-devices"
    )
    try:
        await peer.connect()
        async with asyncio.timeout(60):
            while not isinstance(await peer.receive(), Offer):
                pass
        await peer.send(Bye("hangup"))
        code = await caller.finish(60)
    finally:
        await kill_all(caller)
        await peer.close()
        await server.kill()
    assert code == 1, caller.text
    assert "call ended (the other person hung up)" in caller.text
    assert "Traceback" not in caller.text


async def test_relay_only_call_with_credentials_from_the_signaling_server(tmp_path: Path) -> None:
    """No typed credentials: `peercall signal --turn-secret` hands out TURN REST credentials
    for a real `peercall relay`, and both callers go through it."""
    from tests.nat.conftest import SECRET, start_server

    relay = start_server("peercall", "rest", tmp_path / "relay")
    uri = f"turn:{relay.host}:{relay.port}?transport=udp"
    server = ServerProcess("--turn-secret", SECRET, "--turn-uri", uri)
    url = await server.start()
    common = ["--server", url, "--room", "relayed", "--secret", "pw", "--relay-only",
              "--no-devices", "--duration", "2"]  # fmt: skip
    try:
        callee = await Call.start(*common, "--answer")
        caller = await Call.start(*common)
        codes = await asyncio.gather(caller.finish(90), callee.finish(90))
    finally:
        await server.kill()
        relay.stop()
    assert list(codes) == [0, 0], f"caller:\n{caller.text}\ncallee:\n{callee.text}"
    for side in (caller, callee):
        assert f"ICE servers from the signaling server: {uri}" in side.text
        assert f"path via relay {uri} (ours) over UDP" in side.text
        assert "call connected" in side.text


async def test_answer_on_a_terminal_rings_and_asks_and_a_decline_is_recorded() -> None:
    import os
    import pty

    from app.history import History
    from app.settings import config_dir

    server = ServerProcess()
    url = await server.start()
    common = ["--server", url, "--room", "ring", "--secret", "pw", "--loopback", "--no-devices"]
    master, slave = pty.openpty()
    callee = await Call.start(*common, "--answer", stdin=slave)
    os.close(slave)
    caller = await Call.start(*common)
    try:
        await callee.wait_for("accept? [Y/n]")
        os.write(master, b"n\n")
        codes = await asyncio.gather(caller.finish(60), callee.finish(60))
    finally:
        await kill_all(caller, callee)
        os.close(master)
        await server.kill()
    assert list(codes) == [1, 0], f"caller:\n{caller.text}\ncallee:\n{callee.text}"
    assert "call ended (the other person declined)" in caller.text
    assert "call declined" in callee.text
    records = History.load(config_dir() / "history.json").records
    mine = [r for r in records if r.peer == f"ring on {url}"]
    assert sorted((r.direction, r.outcome) for r in mine) == [
        ("incoming", "declined"),
        ("outgoing", "declined"),
    ]
