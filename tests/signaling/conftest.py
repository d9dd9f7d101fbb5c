"""Fixtures for the signaling tests: a real server on 127.0.0.1 and a raw protocol client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from signaling.server import SignalingServer
from signaling.ws_protocol import (
    ClientFrame,
    Ping,
    Pong,
    ServerFrame,
    encode_frame,
    parse_server_frame,
)


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
