"""One aiortc peer with PeerCall's ICE fixes, run in a namespace by tests and bench_ice.

Speaks JSON lines on stdio. The offerer prints ``{"type": "offer", "sdp": ...}`` and reads the
answer; the answerer reads the offer and prints the answer. Both gather every candidate first
(no trickle). Then each prints ``{"event": "connected", ...}`` with its timings (event-loop
clock), and answers commands: ``{"cmd": "report"}`` prints the selected pair (and the server and
transport of our end, if relayed), the check counters
and how many chat messages arrived (each side sends one every 50 ms); ``{"cmd": "quit"}`` closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy

from app.rtcfixes import (
    Gathering,
    candidate_origin,
    check_stats,
    ice_connections,
    ice_gatherers,
    install_bundle_fix,
    install_gathering,
    selected_pair,
)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def read_line(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise SystemExit(0)
    data: dict[str, Any] = json.loads(line)
    return data


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    servers = [RTCIceServer(args.stun)]
    if args.turn:
        servers.append(RTCIceServer(args.turn, args.user, args.password))
    gatherings: list[Gathering] = []
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
    install_bundle_fix(pc)
    times: dict[str, float] = {}
    connected = asyncio.Event()

    @pc.on("iceconnectionstatechange")
    def on_ice() -> None:
        times.setdefault(f"ice_{pc.iceConnectionState}", loop.time())

    @pc.on("connectionstatechange")
    def on_state() -> None:
        times.setdefault(f"pc_{pc.connectionState}", loop.time())
        if pc.connectionState == "connected":
            connected.set()

    received = 0
    switch_calls = 0

    def on_switch() -> None:
        nonlocal switch_calls
        switch_calls += 1

    async def gather() -> None:
        gatherings[:] = install_gathering(
            pc,
            on_candidate=lambda c, s: None,
            timeout=args.gather_timeout,
            loopback_only=False,
            servers=servers,
            triggered_checks=not args.no_triggered,
            best_pair=not args.no_best_pair,
        )
        for each in ice_connections(pc):
            check_stats(each).on_switch = on_switch
        await asyncio.gather(*(g.gather() for g in ice_gatherers(pc)))
        await asyncio.gather(*(g.done for g in gatherings))

    if args.role == "offer":
        pc.addTransceiver("audio", direction="sendrecv")
        chat = pc.createDataChannel("chat", negotiated=True, id=0)
        await gather()
        await pc.setLocalDescription(await pc.createOffer())
        emit(type="offer", sdp=pc.localDescription.sdp)
        answer = await read_line(reader)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    else:
        offer = await read_line(reader)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        chat = pc.createDataChannel("chat", negotiated=True, id=0)
        await gather()
        await pc.setLocalDescription(await pc.createAnswer())
        emit(type="answer", sdp=pc.localDescription.sdp)

    @chat.on("message")
    def on_message(message: object) -> None:
        nonlocal received
        received += 1

    await asyncio.wait_for(connected.wait(), args.limit)
    (conn,) = ice_connections(pc)

    def counters() -> dict[str, Any]:
        fields = dict(vars(check_stats(conn)), switch_calls=switch_calls)
        del fields["on_switch"]
        return fields

    def pair_fields() -> dict[str, Any]:
        pair = selected_pair(pc)
        assert pair is not None
        origin = candidate_origin(gatherings, pair.local_candidate)
        return {
            "local": [pair.local_candidate.type, *pair.local_addr],
            "remote": [pair.remote_candidate.type, *pair.remote_addr],
            "via": None if origin is None else [origin.server, origin.transport],
        }

    emit(
        event="connected",
        checking_to_ice=times["ice_completed"] - times["ice_checking"],
        checking_to_connected=times["pc_connected"] - times["ice_checking"],
        controlling=conn.ice_controlling,
        stats=counters(),
        **pair_fields(),
    )

    async def chatter() -> None:
        while True:
            if chat.readyState == "open":
                chat.send("tick")
            await asyncio.sleep(0.05)

    ticker = asyncio.ensure_future(chatter())
    try:
        while True:
            command = await read_line(reader)
            if command["cmd"] == "report":
                emit(event="report", received=received, stats=counters(),
                     state=pc.connectionState, **pair_fields())  # fmt: skip
            elif command["cmd"] == "quit":
                break
    finally:
        ticker.cancel()
        await pc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["offer", "answer"], required=True)
    parser.add_argument("--stun", required=True)
    parser.add_argument("--turn", action="append", help="a TURN URI (repeatable, in order)")
    parser.add_argument("--gather-timeout", type=float, default=5.0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--no-triggered", action="store_true")
    parser.add_argument("--no-best-pair", action="store_true")
    parser.add_argument("--limit", type=float, default=30.0)
    asyncio.run(main(parser.parse_args()))
