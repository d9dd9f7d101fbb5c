"""The anchor for bench_launch.py: a bare aiortc peer, one process, nothing of PeerCall's.

It speaks just enough of the ``peercall signal`` protocol (docs/signaling-protocol.md: ``join``,
``relay``) over ``websockets`` to send an offer or answer, with aiortc's defaults: one audio
track (silence) each way, full gathering before the offer (no trickle), no data channel. It
prints ``connected`` when the first audio frame from the peer is decoded, which is what
PeerCall's "call connected" means (media flows), then exits.

The one change to aiortc's defaults: host candidates on 127.0.0.1 only, as PeerCall's
``--loopback`` offers (aioice never offers loopback, and the bench stays on loopback).

Usage: ``python bench/launch_bare_peer.py ws://127.0.0.1:PORT ROOM offer|answer``
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from typing import Any

import aioice.ice
import websockets
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack


def _loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    return ["127.0.0.1"]


aioice.ice.get_host_addresses = _loopback_only


async def main(url: str, room: str, role: str) -> int:
    pc = RTCPeerConnection()
    pc.addTrack(AudioStreamTrack())
    heard = asyncio.get_running_loop().create_future()
    readers: list[asyncio.Future[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def first_frame() -> None:
            await track.recv()
            if not heard.done():
                heard.set_result(None)

        readers.append(asyncio.ensure_future(first_frame()))

    async with websockets.connect(url) as ws:

        async def send(frame: dict[str, Any]) -> None:
            await ws.send(json.dumps({"v": 1, **frame}))

        async def relay(kind: str) -> None:
            assert pc.localDescription is not None
            data = {"v": 1, "type": kind, "sdp": pc.localDescription.sdp}
            await send({"type": "relay", "seq": 1, "data": data})

        await send({"type": "join", "room": room, "secret": "bench", "peer": secrets.token_hex(8)})
        if role == "offer":
            await pc.setLocalDescription(await pc.createOffer())
            await relay("offer")  # the server queues it if the callee has not joined yet
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "error":
                print(f"error: {frame.get('message')}", file=sys.stderr)
                return 1
            if frame.get("type") != "relay":
                continue
            data = frame["data"]
            await send({"type": "ack", "from": frame["from"], "seq": frame["seq"]})
            if data["type"] in ("offer", "answer"):
                await pc.setRemoteDescription(RTCSessionDescription(data["sdp"], data["type"]))
            if data["type"] == "offer":
                await pc.setLocalDescription(await pc.createAnswer())
                await relay("answer")
            if data["type"] in ("offer", "answer"):
                break
        await heard
        print("connected", flush=True)
        await asyncio.sleep(0.3)  # let the peer hear us too before we close
    await pc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3])))
