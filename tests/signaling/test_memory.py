from __future__ import annotations

import pytest

from signaling.base import SignalingChannel
from signaling.errors import ChannelClosed
from signaling.memory import memory_pair
from signaling.messages import Bye, Offer


async def test_pair_delivers_in_order_and_closes_both_ends() -> None:
    a, b = memory_pair()
    assert isinstance(a, SignalingChannel)
    await a.connect()
    await b.connect()
    await a.send(Offer("v=0\r\n"))
    await a.send(Bye())
    assert await b.receive() == Offer("v=0\r\n")
    assert await b.receive() == Bye()
    await a.close()
    await a.close()  # idempotent
    with pytest.raises(ChannelClosed):
        await b.receive()
    with pytest.raises(ChannelClosed):
        await b.send(Bye())
    with pytest.raises(ChannelClosed):
        await a.receive()
