"""A bare two-process aiortc call, the anchor for bench_call_launch.py.

Usage: ``python bench/bare_aiortc_call.py URL ROOM caller|callee``. Joins ROOM on a
``peercall signal`` server with the same WebSocket client PeerCall uses, makes (or answers) a
non-trickle offer with one audio track and a negotiated data channel, as PeerCall does, and
prints ``connected`` when the first RTP packet arrives (PeerCall's meaning of connected), then
exits. The only change to stock aiortc: host candidates on 127.0.0.1 only (aioice never offers
loopback candidates, and benchmarks stay on loopback), like ``peercall call --loopback``.
"""

from __future__ import annotations

import asyncio
import sys

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from signaling.client import WebSocketChannel
from signaling.messages import Answer, Offer

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


async def main(url: str, room: str, role: str) -> None:
    channel = WebSocketChannel(url, room, "bench")
    await channel.connect()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    pc.createDataChannel("chat", negotiated=True, id=0)
    connected = asyncio.get_running_loop().create_future()
    readers: list[asyncio.Future[None]] = []

    @pc.on("track")
    def on_track(track: object) -> None:
        async def first_frame() -> None:
            await track.recv()  # type: ignore[attr-defined]
            if not connected.done():
                connected.set_result(None)

        readers.append(asyncio.ensure_future(first_frame()))

    if role == "caller":
        await pc.setLocalDescription(await pc.createOffer())
        await channel.send(Offer(pc.localDescription.sdp))
        while not isinstance(message := await channel.receive(), Answer):
            pass
        await pc.setRemoteDescription(RTCSessionDescription(message.sdp, "answer"))
    else:
        while not isinstance(message := await channel.receive(), Offer):
            pass
        await pc.setRemoteDescription(RTCSessionDescription(message.sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await channel.send(Answer(pc.localDescription.sdp))
    await asyncio.wait_for(connected, 30)
    print("connected", flush=True)
    await asyncio.sleep(0.5)  # let the peer see its first RTP too
    await pc.close()
    await channel.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
