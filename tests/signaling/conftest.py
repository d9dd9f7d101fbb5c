"""Fixtures for the signaling tests: a real server on 127.0.0.1 and a raw protocol client."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from signaling.manual import ManualChannel
from signaling.server import SignalingServer
from signaling.ws_protocol import (
    ClientFrame,
    Ping,
    Pong,
    ServerFrame,
    encode_frame,
    parse_server_frame,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with SignalingServer(
        "127.0.0.1", 0, max_message_bytes=4096, resume_grace=5.0, ping_interval=None
    ) as srv:
        yield srv


class RawClient:
    """A protocol-level client: sends any bytes, reads parsed server frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> RawClient:
        return cls(await connect(url, compression=None, max_size=None))

    async def send(self, frame: ClientFrame | dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        elif not isinstance(frame, str | bytes):
            frame = encode_frame(frame)
        await self.ws.send(frame)

    async def recv(self) -> ServerFrame:
        """The next frame; a 5 s guard turns a missing frame into a failure, not a hang."""
        async with asyncio.timeout(5.0):
            return parse_server_frame(await self.ws.recv())

    async def until_pong(self) -> list[ServerFrame]:
        """Ping, and return every frame that arrived before the pong (a barrier, no sleeps)."""
        await self.send(Ping())
        frames: list[ServerFrame] = []
        while not isinstance(frame := await self.recv(), Pong):
            frames.append(frame)
        return frames

    async def close(self) -> None:
        await self.ws.close()


class ServerProcess:
    """`python -m app.cli signal` as a real child process on 127.0.0.1."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.port = 0
        self.lines: list[str] = []

    async def start(self, port: int = 0) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "signal",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    assert self.proc.stderr is not None
                    err = (await self.proc.stderr.read()).decode()
                    raise RuntimeError(f"signal server exited: {err.strip()}")
                self.lines.append(line.rstrip("\n"))
                if line.startswith("listening on "):
                    self.url = line.split()[-1]
                    self.port = int(self.url.rsplit(":", 1)[1])
                if line.startswith("ready"):
                    return self.url

    async def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to anyone."""
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def terminate(self) -> tuple[int, str]:
        """SIGTERM and the rest of stdout; returns (exit code, remaining output)."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        self.proc.terminate()
        rest = await self.proc.stdout.read()
        return await self.proc.wait(), rest.decode()


@pytest.fixture
async def server_process() -> AsyncIterator[ServerProcess]:
    proc = ServerProcess("--resume-grace", "30")
    await proc.start()
    yield proc
    if proc.proc is not None and proc.proc.returncode is None:
        await proc.kill()


def wired_manual_pair() -> tuple[ManualChannel, ManualChannel]:
    """Two copy-paste channels whose "pastes" are each other's output, through queues."""
    a_to_b: asyncio.Queue[str | None] = asyncio.Queue()
    b_to_a: asyncio.Queue[str | None] = asyncio.Queue()

    async def a_write(text: str) -> None:
        a_to_b.put_nowait(text)

    async def b_write(text: str) -> None:
        b_to_a.put_nowait(text)

    return ManualChannel(b_to_a.get, a_write), ManualChannel(a_to_b.get, b_write)


class RedisProcess:
    """A private ``redis-server`` on a free loopback port (never the system one): no disk
    persistence, gone when the test ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (scripts/install-system-deps.sh)")
        for _ in range(5):  # another process may take the free port before redis binds it
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            self.proc = subprocess.Popen(
                [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FailoverProxy:
    """A minimal TCP load balancer on 127.0.0.1: each connection goes to the first backend
    port that accepts it (what a real balancer does once its health check marks one dead)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.backends:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
