"""aiortc/aioice's TURN client through a real relay process: a relay-only call connects.

Two RTCPeerConnections in this process, both with ``iceTransportPolicy=RELAY`` and only our
relay in ``iceServers``: the only way their data channel can open is through allocations,
permissions and channel bindings on the server under test (aioice talks TURN over UDP or TCP).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from nat.auth import rest_credentials
from tests.nat.conftest import TurnServer, start_server

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def nominated_pairs(pc: RTCPeerConnection) -> dict[int, Any]:
    """The selected ICE pair per component; aiortc exposes it only through private attributes."""
    assert pc.sctp is not None
    transport = pc.sctp.transport.transport  # RTCDtlsTransport -> RTCIceTransport
    pairs: dict[int, Any] = transport._connection._nominated
    return pairs


async def relay_only_call(uri: str, username: str, password: str) -> tuple[str, list[str]]:
    """Connect two relay-only peers, echo one data-channel message, return it and pair types."""
    config = RTCConfiguration(
        iceServers=[RTCIceServer(urls=[uri], username=username, credential=password)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
    caller, callee = RTCPeerConnection(config), RTCPeerConnection(config)
    received: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    try:
        channel = caller.createDataChannel("chat")
        opened = asyncio.Event()
        channel.on("open", opened.set)

        @callee.on("datachannel")
        def on_datachannel(remote: Any) -> None:
            @remote.on("message")
            def on_message(message: str) -> None:
                remote.send(f"echo: {message}")

        @channel.on("message")
        def on_reply(message: str) -> None:
            if not received.done():
                received.set_result(message)

        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)
        for sdp in (caller.localDescription.sdp, callee.localDescription.sdp):
            candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate")]
            assert candidates, "no candidates gathered"
            assert all(" typ relay" in line for line in candidates), candidates

        await asyncio.wait_for(opened.wait(), 30)
        channel.send("hello through the relay")
        message = await asyncio.wait_for(received, 15)
        local_types = [
            pair.local_candidate.type
            for pc in (caller, callee)
            for pair in nominated_pairs(pc).values()
        ]
        return message, local_types
    finally:
        await caller.close()
        await callee.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_relay_only_call_with_long_term_credentials(
    turn_server: TurnServer, transport: str
) -> None:
    message, local_types = await relay_only_call(
        turn_server.uri(transport), turn_server.user, turn_server.password
    )
    assert message == "echo: hello through the relay"
    assert local_types
    assert set(local_types) == {"relay"}


async def test_relay_only_call_with_rest_credentials(server_kind: str, tmp_path: Path) -> None:
    server = start_server(server_kind, "rest", tmp_path)
    try:
        username, password = rest_credentials(server.secret, "bob", 600, time.time())
        message, local_types = await relay_only_call(server.uri("udp"), username, password)
    finally:
        server.stop()
    assert message == "echo: hello through the relay"
    assert set(local_types) == {"relay"}
