"""Gathering from every STUN and TURN server of the list, in parallel (issue 15, item 1)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiortc import RTCIceServer

from app.rtcfixes import selected_pair, server_uris
from tests.app.rtcfixes.conftest import (
    PASSWORD,
    USER,
    close,
    make_peer,
    negotiate,
    running_relay,
    trusting,
    uri_of,
    wait_connected,
)


def test_server_uris_keeps_every_usable_uri_in_order() -> None:
    servers = [
        RTCIceServer(["stun:127.0.0.1:1", "stun:127.0.0.1:2"]),
        RTCIceServer(
            [
                "turn:127.0.0.1:3?transport=udp",
                "turn:127.0.0.1:3?transport=tcp",
                "turns:localhost:5349?transport=tcp",
                "turns:localhost:5349?transport=udp",  # DTLS: aioice cannot
                "stuns:127.0.0.1:4",  # STUN over TLS maps nothing UDP checks use
            ],
            USER,
            PASSWORD,
        ),
        RTCIceServer("turn:127.0.0.1:3?transport=udp", USER, PASSWORD),  # listed twice
        RTCIceServer("turn:127.0.0.1:5"),  # no credentials
        RTCIceServer("http://127.0.0.1:6"),  # not an ICE URI
    ]
    got = [(u.kind, u.host, u.port, u.transport) for u in server_uris(servers)]
    assert got == [
        ("stun", "127.0.0.1", 1, "udp"),
        ("stun", "127.0.0.1", 2, "udp"),
        ("turn", "127.0.0.1", 3, "udp"),
        ("turn", "127.0.0.1", 3, "tcp"),
        ("turn", "localhost", 5349, "tls"),
    ]


async def test_every_server_answers_and_dead_ones_hold_up_nothing(
    tmp_path: Path, blackhole: int
) -> None:
    dead_turn = f"turn:127.0.0.1:{blackhole}?transport=udp"
    dead_stun = f"stun:127.0.0.1:{blackhole}"
    async with running_relay() as one, running_relay(tmp_path) as two:
        tcp = uri_of(two, "turn:").replace("transport=udp", "transport=tcp")
        live = [uri_of(one, "turn:"), tcp, uri_of(two, "turns:")]
        assert tcp in two.turn_uris()
        stun = "stun:" + uri_of(one, "turn:").removeprefix("turn:").split("?")[0]
        servers = [
            RTCIceServer([dead_turn, *live], USER, PASSWORD),
            RTCIceServer([dead_stun, stun]),
        ]
        peer = make_peer(servers, timeout=2.0, tls=trusting(tmp_path))
        peer.pc.addTransceiver("audio")

        class Into(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                peer.log.append(record.getMessage())

        handler = Into(logging.INFO)
        gathering_logger = logging.getLogger("app.rtcfixes.gathering")
        gathering_logger.addHandler(handler)
        level = gathering_logger.level
        gathering_logger.setLevel(logging.INFO)
        try:
            failed = await peer.gather()
        finally:
            gathering_logger.removeHandler(handler)
            gathering_logger.setLevel(level)
        try:
            assert set(failed) == {dead_turn, dead_stun}
            relays = [(c, s) for c, s in peer.gathered if c.type == "relay"]
            assert sorted(s or "" for _, s in relays) == sorted(live)
            # Each came before the dead TURN server listed first was given up (its own time
            # limit): they were asked at the same time, not after it.
            gave_up = next(
                i for i, line in enumerate(peer.log) if line.startswith(f"ICE server {dead_turn}")
            )
            for uri in live:
                assert peer.log.index(f"candidate {uri}") < gave_up
            (gathering,) = peer.gatherings
            transports = {}
            for candidate, server in relays:
                origin = gathering.origin(candidate)
                assert origin is not None
                assert origin.server == server
                transports[origin.transport] = candidate
                # The Allocate's XOR-MAPPED-ADDRESS: our client socket as the relay saw it.
                assert origin.mapped is not None
                assert origin.mapped[0] == "127.0.0.1"
                assert candidate.related_address == origin.mapped[0]  # policy "all": shown
            assert set(transports) == {"udp", "tcp", "tls"}
            # RFC 8445 §5.1.2.1: distinct local preferences, a relay over UDP ranked first.
            prio = {t: c.priority for t, c in transports.items()}
            assert prio["udp"] > prio["tcp"] > prio["tls"]
            # On loopback the srflx equals its host base: redundant, so not offered (§5.1.3),
            # yet the STUN server answered (it is not in the failed list).
            assert not [c for c, _ in peer.gathered if c.type == "srflx"]
        finally:
            await close(peer)


async def test_udp_blocked_call_connects_through_turn_tcp_whatever_the_order(
    blackhole: int,
) -> None:
    async with running_relay() as relay:
        tcp = uri_of(relay, "turn:").replace("transport=udp", "transport=tcp")
        assert tcp in relay.turn_uris()
        # UDP to the relay is "blocked": its UDP URI leads to a port that never answers.
        udp = f"turn:127.0.0.1:{blackhole}?transport=udp"
        for order in ([udp, tcp], [tcp, udp]):
            servers = [RTCIceServer(order, USER, PASSWORD)]
            caller = make_peer(servers, relay_only=True, timeout=2.0)
            callee = make_peer(servers, relay_only=True, timeout=2.0)
            try:
                await negotiate(caller, callee)
                await wait_connected(caller, callee)
                for peer in (caller, callee):
                    pair = selected_pair(peer.pc)
                    assert pair is not None
                    assert pair.local_candidate.type == "relay"
                    origin = peer.gatherings[0].origin(pair.local_candidate)
                    assert origin is not None
                    assert (origin.server, origin.transport) == (tcp, "tcp")
                    # Relay-only: the SDP hides the mapped address (RFC 9429 §3.5.3), we know it.
                    assert pair.local_candidate.related_address == "0.0.0.0"
                    assert origin.mapped is not None
            finally:
                await close(caller, callee)


async def test_session_shows_the_mapped_address_of_a_hidden_relay() -> None:
    # Through the call engine: relay-only over TURN/TCP listed after a UDP URI. The SDP keeps
    # the mapped address hidden (RFC 9429 §3.5.3) but the candidate the debug panel gets
    # carries it, with the URI that produced it.
    from app.events import CandidateGathered, SdpExchanged
    from app.iceservers import IceServer
    from app.session import CallOptions, CallSession
    from signaling.memory import memory_pair

    async with running_relay() as relay:
        udp = uri_of(relay, "turn:")
        tcp = udp.replace("transport=udp", "transport=tcp")
        options = CallOptions(
            relay_only=True, ice_servers=(IceServer((udp, tcp), USER, PASSWORD),), gather_timeout=5
        )
        caller, callee = CallSession(options), CallSession(options)
        events: list[object] = []
        caller.subscribe(events.append)
        a_ch, b_ch = memory_pair()

        async def answer() -> None:
            await callee.answer(b_ch, await callee.wait_for_offer(b_ch))

        try:
            await asyncio.wait_for(asyncio.gather(caller.dial(a_ch), answer()), 30)
            gathered = [e.candidate for e in events if isinstance(e, CandidateGathered)]
            assert {c.server for c in gathered} == {udp, tcp}
            for candidate in gathered:
                assert candidate.type == "relay"
                assert candidate.related_address == "127.0.0.1"
            offers = [e.sdp for e in events if isinstance(e, SdpExchanged) and e.side == "local"]
            assert "raddr 0.0.0.0" in offers[0]
            assert "raddr 127.0.0.1" not in offers[0]
        finally:
            await caller.hangup()
            await callee.hangup()


async def test_without_a_server_list_aioices_own_pick_is_used(blackhole: int) -> None:
    # The default (no ``servers``): only the first STUN and first TURN URI, as aioice chose.
    first, second = f"stun:127.0.0.1:{blackhole}", "stun:127.0.0.1:9"
    peer = make_peer([RTCIceServer([first, second])], timeout=0.5)
    peer.servers = None
    peer.pc.addTransceiver("audio")
    try:
        assert await peer.gather() == (first,)
    finally:
        await close(peer)
