"""Real relays and real aiortc peers on loopback for the rtcfixes tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aioice import Candidate
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcicetransport import candidate_from_aioice

from app.rtcfixes import (
    Gathering,
    candidate_pairs,
    ice_gatherers,
    install_bundle_fix,
    install_gathering,
    strip_end_of_candidates,
)
from nat.auth import long_term_key
from nat.config import RelayConfig
from nat.service import RelayServer
from tests.certs import make_cert
from tests.nat.conftest import relay_port_range

USER, PASSWORD, REALM = "alice", "wonderland", "peercall"


@contextlib.asynccontextmanager
async def running_relay(
    tls_dir: Path | None = None, port: int = 0, **overrides: Any
) -> AsyncIterator[RelayServer]:
    """The project's own relay in-process on loopback (UDP + TCP, and TLS with ``tls_dir``)."""
    low, high = relay_port_range()
    extra: dict[str, Any] = {}
    if tls_dir is not None:
        cert, key = make_cert(tls_dir)
        extra = {"cert": str(cert), "pkey": str(key), "tls_listening_port": 0}
    config = RelayConfig(
        listening_port=port,
        min_port=low,
        max_port=high,
        realm=REALM,
        users=((USER, long_term_key(USER, REALM, PASSWORD)),),
        allow_loopback_peers=True,  # both peers' relayed addresses are on 127.0.0.1
        **extra,
        **overrides,
    )
    async with RelayServer(config) as relay:
        yield relay


def uri_of(relay: RelayServer, kind: str) -> str:
    return next(u for u in relay.turn_uris() if u.startswith(kind))


def trusting(cert_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_dir / "server.pem"))


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A bound UDP port on loopback that never answers: a server behind a firewall."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@dataclass
class Peer:
    """One aiortc peer connection with PeerCall's gathering and bundle fixes installed."""

    pc: RTCPeerConnection
    servers: list[RTCIceServer] | None
    timeout: float = 3.0
    tls: ssl.SSLContext | None = None
    best_pair: bool = True
    triggered_checks: bool = True
    gatherings: list[Gathering] = field(default_factory=list)
    gathered: list[tuple[Candidate, str | None]] = field(default_factory=list)
    # What happened in order: "candidate URI" per gathered candidate, tests may add more.
    log: list[str] = field(default_factory=list)

    # Trickle (RFC 8838): candidates found after the description went out are sent on here.
    trickle_to: Peer | None = None
    trickled: list[Candidate] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def _on_candidate(self, candidate: Candidate, server: str | None) -> None:
        self.gathered.append((candidate, server))
        self.log.append(f"candidate {server}")
        if self.trickle_to is not None:
            self.trickled.append(candidate)
            self.tasks.append(asyncio.ensure_future(self.trickle_to.add_remote(candidate)))

    async def add_remote(self, candidate: Candidate) -> None:
        rtc = candidate_from_aioice(candidate)
        rtc.sdpMid, rtc.sdpMLineIndex = "0", 0
        await self.pc.addIceCandidate(rtc)

    async def start_gathering(self) -> None:
        """Install the gathering and return with host candidates (the rest trickles)."""
        self.gatherings = install_gathering(
            self.pc,
            on_candidate=self._on_candidate,
            timeout=self.timeout,
            loopback_only=True,
            servers=self.servers,
            tls_context=self.tls,
            best_pair=self.best_pair,
            triggered_checks=self.triggered_checks,
        )
        await asyncio.gather(*(g.gather() for g in ice_gatherers(self.pc)))

    async def gather(self) -> tuple[str, ...]:
        """Gather from every server (all of them answered or timed out); the failed ones."""
        await self.start_gathering()
        failed = await asyncio.gather(*(g.done for g in self.gatherings))
        return tuple(uri for f in failed for uri in f)


def make_peer(servers: list[RTCIceServer], *, relay_only: bool = False, **kwargs: Any) -> Peer:
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    pc = RTCPeerConnection(
        RTCConfiguration(
            iceServers=servers, iceTransportPolicy=policy, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
    )
    install_bundle_fix(pc)
    return Peer(pc, servers, **kwargs)


async def negotiate(caller: Peer, callee: Peer, *, trickle: bool = False) -> None:
    """Offer/answer, chat channel as PeerCall's. Without ``trickle`` every candidate is in the
    SDP; with it the SDPs carry host candidates and the rest is trickled as it is found."""

    def edit(description: RTCSessionDescription) -> RTCSessionDescription:
        if trickle:
            # More candidates follow: the peer must not take the SDP as the last word.
            sdp = strip_end_of_candidates(description.sdp)
            description = RTCSessionDescription(sdp=sdp, type=description.type)
        return description

    caller.pc.addTransceiver("audio", direction="sendrecv")
    caller.pc.createDataChannel("chat", negotiated=True, id=0)
    await (caller.start_gathering() if trickle else caller.gather())
    await caller.pc.setLocalDescription(await caller.pc.createOffer())
    await callee.pc.setRemoteDescription(edit(caller.pc.localDescription))
    callee.pc.createDataChannel("chat", negotiated=True, id=0)
    await (callee.start_gathering() if trickle else callee.gather())
    await callee.pc.setLocalDescription(await callee.pc.createAnswer())
    answer = callee.pc.localDescription
    if trickle:
        callee.trickle_to = caller
    await caller.pc.setRemoteDescription(edit(answer))
    if trickle:
        caller.trickle_to = callee
        # What the caller found before the callee had its offer: sent now, as a queue would.
        sent = {id(c) for c in caller.trickled}
        offered = caller.pc.localDescription.sdp
        for candidate, _ in caller.gathered:
            if id(candidate) not in sent and candidate.to_sdp() not in offered:
                caller.tasks.append(asyncio.ensure_future(callee.add_remote(candidate)))


async def wait_connected(*peers: Peer, limit: float = 30.0) -> None:
    async def one(peer: Peer) -> None:
        while peer.pc.connectionState != "connected":
            if peer.pc.connectionState == "failed":
                raise AssertionError("the peer connection failed")
            await asyncio.sleep(0.02)

    await asyncio.wait_for(asyncio.gather(*(one(p) for p in peers)), limit)


async def close(*peers: Peer) -> None:
    for peer in peers:
        peer.trickle_to = None
        for task in peer.tasks:
            task.cancel()
        for gathering in peer.gatherings:
            await gathering.close()
        await peer.pc.close()


async def settled(*peers: Peer, limit: float = 20.0) -> None:
    """Wait until no candidate pair of any peer is still waiting for its check to end."""

    def busy(peer: Peer) -> bool:
        return any(p.task is not None and not p.task.done() for p in candidate_pairs(peer.pc))

    async def wait() -> None:
        while any(busy(p) for p in peers):  # noqa: ASYNC110 (aioice offers no event for this)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), limit)
