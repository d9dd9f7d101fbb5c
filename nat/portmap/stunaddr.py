"""The public address from a STUN server, when the router will not say it (RFC 8489 §6)."""

from __future__ import annotations

import asyncio
import os

from nat import stun
from nat.errors import StunError
from nat.portmap.pmp import exchange


async def public_address(host: str, port: int = 3478, *, within: float = 2.0) -> str | None:
    """Our server-reflexive address as ``host:port`` sees it (XOR-MAPPED-ADDRESS), or None.

    Retransmits on the NAT-PMP schedule (the caller bounds the total); RFC 8489 §6.2.1's
    500 ms RTO would work too, but the answer is wanted within a couple of seconds anyway.
    """
    tid = os.urandom(12)
    request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, tid).encode(
        add_fingerprint=True
    )

    def accept(data: bytes) -> bool:
        try:
            reply = stun.parse_message(data)
        except StunError:
            return False
        return reply.transaction_id == tid and reply.cls == stun.MsgClass.SUCCESS

    try:
        data = await exchange(host, request, accept, within=within, port=port)
    except OSError:
        return None
    if data is None:
        return None
    reply = stun.parse_message(data)
    mapped = reply.get(stun.XOR_MAPPED_ADDRESS) or reply.get(stun.MAPPED_ADDRESS)
    return mapped[0] if mapped else None


async def first_public_address(
    servers: list[tuple[str, int]], *, within: float = 2.0
) -> str | None:
    """The first answer of ``servers``, asked together (one dead server must not cost 2 s)."""
    if not servers:
        return None
    tasks = [asyncio.ensure_future(public_address(h, p, within=within)) for h, p in servers]
    try:
        for next_done in asyncio.as_completed(tasks):
            address = await next_done
            if address:
                return address
        return None
    finally:
        for task in tasks:
            task.cancel()
