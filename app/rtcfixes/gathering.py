"""Fast, trickling candidate gathering (see the package docstring, item 1).

Also the readers that find aioice connections behind an RTCPeerConnection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import (
    CandidatePair,
    Connection,
    StunProtocol,
    TransportPolicy,
    get_host_addresses,
    relayed_candidate,
    server_reflexive_candidate,
)
from aiortc import RTCIceGatherer, RTCPeerConnection

logger = logging.getLogger(__name__)


LOOPBACK_ADDRESSES = ("127.0.0.1",)


def ice_gatherers(pc: RTCPeerConnection) -> list[RTCIceGatherer]:
    """The ICE gatherers behind ``pc`` (one with max-bundle)."""
    seen: dict[int, RTCIceGatherer] = {}
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        if dtls is not None:
            gatherer = dtls.transport.iceGatherer
            seen[id(gatherer)] = gatherer
    return list(seen.values())


def ice_connections(pc: RTCPeerConnection) -> list[Connection]:
    """The aioice connections behind ``pc``."""
    return [g._connection for g in ice_gatherers(pc)]


class Gathering:
    """Fast, trickling candidate gathering for one aioice connection.

    ``on_candidate(candidate, server)`` is called for every local candidate as soon as it
    exists; ``server`` is the STUN/TURN URI that produced a srflx/relay candidate.
    ``done`` completes when the background STUN/TURN queries have finished or timed out; its
    result is the tuple of servers that did not answer in time.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        on_candidate: Callable[[Candidate, str | None], None],
        timeout: float,
        loopback_only: bool,
    ) -> None:
        self._conn = connection
        self._on_candidate = on_candidate
        self._timeout = timeout
        self._loopback_only = loopback_only
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[tuple[str, ...]] = loop.create_future()
        # aiortc starts ICE only on a transport that has a local candidate when the descriptions
        # are set; with no host candidate (relay policy) the session must wait for this first.
        self.first: asyncio.Future[None] = loop.create_future()
        self._tasks: list[asyncio.Task[Any]] = []

    def _host_addresses(self) -> list[str]:
        conn = self._conn
        if conn._transport_policy != TransportPolicy.ALL:
            return []  # RFC 9429 §3.5.3: the relay policy offers relayed candidates only
        if self._loopback_only:
            return list(LOOPBACK_ADDRESSES)
        return get_host_addresses(use_ipv4=conn._use_ipv4, use_ipv6=conn._use_ipv6)

    async def gather(self) -> None:
        """Replacement for ``Connection.gather_candidates``: returns once host candidates exist."""
        conn = self._conn
        if conn._local_candidates_start:
            return
        conn._local_candidates_start = True
        loop = asyncio.get_running_loop()
        queries: list[tuple[str, asyncio.Task[Any]]] = []
        for component in sorted(conn._components):
            host_protocols: list[StunProtocol] = []
            for address in self._host_addresses():
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        lambda: StunProtocol(conn), local_addr=(address, 0)
                    )
                except OSError as exc:
                    logger.info("cannot bind a host candidate on %s: %s", address, exc)
                    continue
                host, port = protocol.transport.get_extra_info("sockname")[:2]
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", host),
                    component=component,
                    transport="udp",
                    priority=candidate_priority(component, "host"),
                    host=host,
                    port=port,
                    type="host",
                )
                host_protocols.append(protocol)
                self._add(protocol.local_candidate, protocol, None)
            if conn.stun_server:
                stun_uri = "stun:{}:{}".format(*conn.stun_server)
                for protocol in host_protocols:
                    # aioice queries STUN over IPv4 only; so do we.
                    if ipaddress.ip_address(protocol.local_candidate.host).version == 4:
                        srflx = server_reflexive_candidate(protocol, conn.stun_server)
                        queries.append((stun_uri, asyncio.ensure_future(srflx)))
            if conn.turn_server:
                turn_uri = "turn:{}:{}?transport={}".format(*conn.turn_server, conn.turn_transport)
                relay_task: asyncio.Task[Any] = asyncio.ensure_future(
                    relayed_candidate(
                        component=component,
                        hide_related_address=conn._transport_policy == TransportPolicy.RELAY,
                        protocol_factory=lambda: StunProtocol(conn),
                        turn_server=conn.turn_server,
                        turn_username=conn.turn_username,
                        turn_password=conn.turn_password,
                        turn_ssl=conn.turn_ssl,
                        turn_transport=conn.turn_transport,
                    )
                )
                queries.append((turn_uri, relay_task))
        # aioice refuses connect() until gathering "ended"; host candidates are enough to start
        # checks, and later candidates are paired as they arrive (see _add).
        conn._local_candidates_end = True
        self._tasks = [t for _, t in queries]
        waiter = asyncio.ensure_future(self._finish(queries))
        self._tasks.append(waiter)

    async def _finish(self, queries: list[tuple[str, asyncio.Task[Any]]]) -> None:
        failed: list[str] = []
        pending = {task: uri for uri, task in queries}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while pending:
            done, _ = await asyncio.wait(
                pending, timeout=max(0.0, deadline - loop.time()), return_when="FIRST_COMPLETED"
            )
            if not done:
                break
            for task in done:
                uri = pending.pop(task)
                if task.cancelled() or task.exception() is not None:
                    exc = None if task.cancelled() else task.exception()
                    logger.info("ICE server %s gave no candidate: %r", uri, exc)
                    failed.append(uri)
                    continue
                candidate, relay_protocol = task.result()
                self._add(candidate, relay_protocol, uri)
        for task, uri in pending.items():
            task.cancel()
            failed.append(uri)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if not self.done.done():
            self.done.set_result(tuple(failed))
        if not self.first.done():
            self.first.set_result(None)

    def _add(self, candidate: Candidate, protocol: StunProtocol | None, server: str | None) -> None:
        conn = self._conn
        if conn._closing or conn._closed:
            if protocol is not None and protocol.local_candidate.type == "relay":
                self._tasks.append(asyncio.ensure_future(protocol.close()))
            return
        conn._local_candidates.append(candidate)
        if protocol is not None and protocol not in conn._protocols:
            conn._protocols.append(protocol)
            if protocol.local_candidate.type == "relay" and conn._early_checks_done:
                # connect() already formed its pairs: pair the late candidate and check the new
                # pairs at once (RFC 8838 §10), as aioice's pacing loop may have stopped.
                known = {id(p) for p in conn._check_list}
                for remote in conn._remote_candidates:
                    conn._pair_remote_candidate(remote)
                conn.sort_check_list()
                for pair in conn._check_list:
                    if id(pair) not in known and pair.state == CandidatePair.State.FROZEN:
                        conn.check_start_task(pair)
        if not self.first.done():
            self.first.set_result(None)
        self._on_candidate(candidate, server)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.done.done():
            self.done.set_result(())
        if not self.first.done():
            self.first.set_result(None)


def install_gathering(
    pc: RTCPeerConnection,
    *,
    on_candidate: Callable[[Candidate, str | None], None],
    timeout: float,
    loopback_only: bool,
) -> list[Gathering]:
    """Replace gathering on every ICE connection of ``pc`` (call before setLocalDescription)."""
    gatherings = []
    for conn in ice_connections(pc):
        if conn._local_candidates_start:
            continue
        gathering = Gathering(
            conn, on_candidate=on_candidate, timeout=timeout, loopback_only=loopback_only
        )
        # An instance attribute shadows the method: aiortc's RTCIceGatherer.gather() calls it.
        conn.gather_candidates = gathering.gather  # type: ignore[method-assign]
        gatherings.append(gathering)
    return gatherings
