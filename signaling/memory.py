"""An in-process signaling backend: two linked channels, for embedding and tests."""

from __future__ import annotations

import asyncio

from signaling.errors import ChannelClosed
from signaling.messages import Message

_CLOSED = object()


class MemoryChannel:
    """One end of an in-memory pair made by :func:`memory_pair`."""

    supports_trickle = True

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._peer: MemoryChannel | None = None
        self._closed = False

    async def connect(self) -> None:
        if self._closed:
            raise ChannelClosed("memory channel is closed")

    async def send(self, message: Message) -> None:
        if self._closed or self._peer is None or self._peer._closed:
            raise ChannelClosed("memory channel is closed")
        self._peer._inbox.put_nowait(message)

    async def receive(self) -> Message:
        if self._closed and self._inbox.empty():
            raise ChannelClosed("memory channel is closed")
        item = await self._inbox.get()
        if item is _CLOSED:
            self._closed = True
            raise ChannelClosed("peer closed the memory channel")
        return item  # type: ignore[return-value]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(_CLOSED)
        if self._peer is not None and not self._peer._closed:
            self._peer._inbox.put_nowait(_CLOSED)


def memory_pair() -> tuple[MemoryChannel, MemoryChannel]:
    """Two channels: what one sends, the other receives."""
    a, b = MemoryChannel(), MemoryChannel()
    a._peer, b._peer = b, a
    return a, b
