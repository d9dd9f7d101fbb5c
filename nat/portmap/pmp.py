"""The asyncio shell around :mod:`nat.portmap.codec`: one UDP exchange with the gateway.

RFC 6886 §3.1 retransmits after 250 ms, doubling each time; PCP (RFC 6887 §8.1.1) starts at
3 s, which would stall "Host a call" on a router that does not answer. A home gateway is one
hop away, so both use the NAT-PMP schedule, cut off at ``within`` seconds in total.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nat.portmap import codec
from nat.portmap.errors import PortMapCodecError

logger = logging.getLogger(__name__)

INITIAL_RETRANSMIT = 0.25  # RFC 6886 §3.1


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.replies.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: nothing listens on 5351.
        self.error = exc
        self.replies.put_nowait(b"")


async def exchange(
    gateway: str,
    request: bytes,
    accept: Callable[[bytes], bool],
    *,
    within: float,
    port: int = codec.SERVER_PORT,
) -> bytes | None:
    """Send ``request`` to the gateway until a reply passes ``accept``; None on silence.

    A reply from the gateway that ``accept`` rejects (another request's answer, an
    announcement) is skipped; "port unreachable" counts as silence, since both mean the
    router does not speak the protocol.
    """
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Datagrams, remote_addr=(gateway, port))
    try:
        deadline = loop.time() + within
        wait = INITIAL_RETRANSMIT
        while loop.time() < deadline:
            transport.sendto(request)
            resend_at = min(loop.time() + wait, deadline)
            while (left := resend_at - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(proto.replies.get(), left)
                except TimeoutError:
                    break
                if not data:  # ICMP error
                    return None
                try:
                    if accept(data):
                        return data
                except PortMapCodecError as exc:
                    logger.debug("ignoring a malformed reply from %s: %s", gateway, exc)
            wait *= 2
        return None
    finally:
        transport.close()


async def pcp_map(
    gateway: str,
    *,
    nonce: bytes,
    protocol: str,
    internal_port: int,
    external_port: int,
    client_ip: str,
    lifetime: int,
    within: float,
) -> codec.PcpMapping | codec.PmpExternalAddress | codec.PmpMapping | None:
    """One PCP MAP exchange. A NAT-PMP-only gateway answers version 0 (RFC 6887 §9)."""
    request = codec.pcp_map_request(
        nonce=nonce,
        protocol=protocol,
        internal_port=internal_port,
        external_port=external_port,
        client_ip=client_ip,
        lifetime=lifetime,
    )

    def accept(data: bytes) -> bool:
        if codec.reply_version(data) == codec.PMP_VERSION:
            return True
        reply = codec.parse_pcp(data)
        # §11.1: a response is for us if nonce, protocol and internal port match; an error
        # response without payload has nothing to match and is ours (one request in flight).
        return not reply.nonce or (reply.nonce == nonce and reply.internal_port == internal_port)

    data = await exchange(gateway, request, accept, within=within)
    if data is None:
        return None
    if codec.reply_version(data) == codec.PMP_VERSION:
        return codec.parse_pmp(data)
    return codec.parse_pcp(data)


async def pmp_external_address(gateway: str, *, within: float) -> codec.PmpExternalAddress | None:
    """RFC 6886 §3.2: ask the gateway for its external address."""

    def accept(data: bytes) -> bool:
        return isinstance(codec.parse_pmp(data), codec.PmpExternalAddress)

    data = await exchange(gateway, codec.pmp_external_address_request(), accept, within=within)
    if data is None:
        return None
    reply = codec.parse_pmp(data)
    assert isinstance(reply, codec.PmpExternalAddress)
    return reply


async def pmp_map(
    gateway: str,
    *,
    protocol: str,
    internal_port: int,
    external_port: int,
    lifetime: int,
    within: float,
) -> codec.PmpMapping | None:
    """RFC 6886 §3.3: map (or with lifetime 0, §3.4, delete) one port."""
    request = codec.pmp_map_request(protocol, internal_port, external_port, lifetime)

    def accept(data: bytes) -> bool:
        reply = codec.parse_pmp(data)
        return (
            isinstance(reply, codec.PmpMapping)
            and reply.protocol == protocol
            and reply.internal_port in (internal_port, 0)
        )

    data = await exchange(gateway, request, accept, within=within)
    if data is None:
        return None
    reply = codec.parse_pmp(data)
    assert isinstance(reply, codec.PmpMapping)
    return reply
