"""The one interface the call engine needs from a signaling backend."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from signaling.messages import Message


@runtime_checkable
class SignalingChannel(Protocol):
    """A bidirectional, ordered channel of :mod:`signaling.messages` between two peers.

    ``connect`` returns once messages can be sent; ``receive`` waits for the next message
    and raises :class:`signaling.errors.ChannelClosed` once the channel is closed. ``close``
    is idempotent. Backends that cannot trickle (manual copy-paste) say so with
    ``supports_trickle = False``: the engine then waits for complete gathering before
    sending its description.
    """

    supports_trickle: bool

    async def connect(self) -> None: ...

    async def send(self, message: Message) -> None: ...

    async def receive(self) -> Message: ...

    async def close(self) -> None: ...


class Service:
    """A server-like object with async ``start``/``stop`` that also works as ``async with``:
    started on entry, stopped on exit (the signaling server and the LAN helpers)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
