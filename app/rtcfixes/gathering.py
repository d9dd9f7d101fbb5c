"""Fast, trickling candidate gathering from every ICE server (see the package docstring, item 1).

Also the readers that find aioice connections behind an RTCPeerConnection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
from aiortc import RTCIceGatherer, RTCIceServer, RTCPeerConnection

from app.errors import ConfigError
from app.iceservers import parse_ice_uri
from app.rtcfixes.icechecks import CheckProtocol, install_check_fixes

logger = logging.getLogger(__name__)


LOOPBACK_ADDRESSES = ("127.0.0.1",)

ServerTransport = Literal["udp", "tcp", "tls"]

# RFC 8445 §5.1.2.1: relayed candidates of one component need distinct local preferences; a
# relay reached over UDP beats one over TCP, which beats TLS (as browsers rank them), and within
# a transport the list order decides.
_RELAY_PREFERENCE: dict[str, int] = {"udp": 0xFFFF, "tcp": 0xBFFF, "tls": 0x7FFF}


@dataclass(frozen=True)
class ServerUri:
    """One STUN or TURN URI of the configuration, with the credentials of its entry."""

    uri: str  # as configured: what the debug panel and the failure list show
    kind: Literal["stun", "turn"]
    host: str
    port: int
    transport: ServerTransport  # how we reach the server (TLS for turns:)
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class CandidateOrigin:
    """Where a local srflx/relay candidate came from (for the debug panel).

    ``mapped`` is our address as the server saw it: the XOR-MAPPED-ADDRESS of the Binding or
    TURN Allocate response (RFC 8489 §14.2, RFC 8656 §7.3). A relayed candidate offered under
    the relay-only policy hides it in the SDP (``raddr 0.0.0.0 rport 9``, RFC 9429 §3.5.3), but
    the user may still want to see it.
    """

    server: str
    transport: ServerTransport
    mapped: tuple[str, int] | None


def server_uris(servers: Sequence[RTCIceServer]) -> list[ServerUri]:
    """Every usable STUN/TURN URI of ``servers``, in order; unusable ones are logged and skipped.

    aioice itself takes only the first STUN and the first TURN URI of the whole list.
    """
    out: list[ServerUri] = []
    for server in servers:
        urls = server.urls if isinstance(server.urls, list) else [server.urls]
        for url in urls:
            try:
                parsed = parse_ice_uri(url)
            except ConfigError as exc:
                logger.info("ICE server skipped: %s", exc)
                continue
            if parsed.scheme == "stuns":
                # A srflx candidate found over TLS/TCP maps nothing our UDP checks use.
                logger.info("ICE server %s skipped: STUN over TLS gives no UDP candidate", url)
                continue
            if parsed.scheme == "stun":
                out.append(ServerUri(url, "stun", parsed.host, parsed.port, "udp"))
                continue
            if parsed.scheme == "turns" and parsed.transport == "udp":
                logger.info("ICE server %s skipped: TURN over DTLS is not supported", url)
                continue
            if not server.username or server.credential is None:
                logger.info("ICE server %s skipped: TURN needs a username and a credential", url)
                continue
            transport: ServerTransport = (
                "tls" if parsed.scheme == "turns" else (parsed.transport or "udp")
            )
            out.append(
                ServerUri(
                    url,
                    "turn",
                    parsed.host,
                    parsed.port,
                    transport,
                    server.username,
                    str(server.credential),
                )
            )
    # The same URI and credentials listed twice (the user's list merged with the signaling
    # server's) would only allocate twice on one relay.
    return list(dict.fromkeys(out))


def _legacy_uris(conn: Connection) -> list[ServerUri]:
    """The one STUN and one TURN server aioice was configured with (no ``servers`` given)."""
    out: list[ServerUri] = []
    if conn.stun_server:
        host, port = conn.stun_server
        out.append(ServerUri(f"stun:{host}:{port}", "stun", host, port, "udp"))
    if conn.turn_server:
        host, port = conn.turn_server
        transport: ServerTransport = "tls" if conn.turn_ssl else conn.turn_transport  # type: ignore[assignment]
        uri = f"turn:{host}:{port}?transport={conn.turn_transport}"
        out.append(
            ServerUri(uri, "turn", host, port, transport, conn.turn_username, conn.turn_password)
        )
    return out


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
    """Fast, trickling candidate gathering for one aioice connection, from every server.

    ``on_candidate(candidate, server)`` is called for every local candidate as soon as it
    exists; ``server`` is the STUN/TURN URI that produced a srflx/relay candidate, and
    :meth:`origin` tells more about it. Every server is queried at once, each under its own
    time limit, so a dead server listed first holds up nothing. ``done`` completes when every
    query has answered or timed out; its result is the tuple of servers that gave nothing.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        on_candidate: Callable[[Candidate, str | None], None],
        timeout: float,
        loopback_only: bool,
        servers: Sequence[ServerUri] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._conn = connection
        self._on_candidate = on_candidate
        self._timeout = timeout
        self._loopback_only = loopback_only
        self._servers = list(servers) if servers is not None else _legacy_uris(connection)
        self._tls_context = tls_context
        self._origins: dict[tuple[str, int], CandidateOrigin] = {}
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[tuple[str, ...]] = loop.create_future()
        # aiortc starts ICE only on a transport that has a local candidate when the descriptions
        # are set; with no host candidate (relay policy) the session must wait for this first.
        self.first: asyncio.Future[None] = loop.create_future()
        self._tasks: list[asyncio.Task[Any]] = []

    def origin(self, candidate: Candidate) -> CandidateOrigin | None:
        """The server, transport and mapped address behind a local srflx/relay candidate."""
        return self._origins.get((candidate.host, candidate.port))

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
        queries: list[tuple[ServerUri, Coroutine[Any, Any, None]]] = []
        for component in sorted(conn._components):
            host_protocols: list[StunProtocol] = []
            for address in self._host_addresses():
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        lambda: CheckProtocol(conn), local_addr=(address, 0)
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
            relays = 0
            for server in self._servers:
                if server.kind == "stun":
                    for base in host_protocols:
                        # aioice queries STUN over IPv4 only; so do we.
                        if ipaddress.ip_address(base.local_candidate.host).version == 4:
                            queries.append((server, self._srflx(base, server)))
                else:
                    preference = _RELAY_PREFERENCE[server.transport] - relays
                    relays += 1
                    queries.append((server, self._relay(component, server, preference)))
        # aioice refuses connect() until gathering "ended"; host candidates are enough to start
        # checks, and later candidates are paired as they arrive (see _add).
        conn._local_candidates_end = True
        tasks = [(server, asyncio.ensure_future(self._limited(coro))) for server, coro in queries]
        self._tasks = [t for _, t in tasks]
        self._tasks.append(asyncio.ensure_future(self._finish(tasks)))

    async def _limited(self, query: Coroutine[Any, Any, None]) -> None:
        # Each server gets its own time limit, counted from when it was asked.
        await asyncio.wait_for(query, self._timeout)

    async def _srflx(self, protocol: StunProtocol, server: ServerUri) -> None:
        candidate, _ = await server_reflexive_candidate(protocol, (server.host, server.port))
        base = protocol.local_candidate
        known = {(c.host, c.port) for c in self._conn._local_candidates}
        if (candidate.host, candidate.port) in known or (candidate.host, candidate.port) == (
            base.host,
            base.port,
        ):
            # RFC 8445 §5.1.3: a srflx equal to its base (a public host) or one another server
            # already reported is redundant.
            logger.debug(
                "srflx %s:%s from %s is redundant", candidate.host, candidate.port, server.uri
            )
            return
        self._origins[(candidate.host, candidate.port)] = CandidateOrigin(
            server.uri, server.transport, (candidate.host, candidate.port)
        )
        self._add(candidate, None, server.uri)

    async def _relay(self, component: int, server: ServerUri, preference: int) -> None:
        conn = self._conn
        tls: ssl.SSLContext | bool = False
        if server.transport == "tls":
            tls = self._tls_context if self._tls_context is not None else True
        candidate, protocol = await relayed_candidate(
            component=component,
            hide_related_address=conn._transport_policy == TransportPolicy.RELAY,
            protocol_factory=lambda: CheckProtocol(conn),
            turn_server=(server.host, server.port),
            turn_username=server.username,
            turn_password=server.password,
            turn_ssl=tls,  # type: ignore[arg-type]  # aioice passes it to create_connection(ssl=)
            turn_transport="udp" if server.transport == "udp" else "tcp",
        )
        candidate.priority = candidate_priority(component, "relay", preference)
        mapped = protocol.transport.get_extra_info("related_address")
        self._origins[(candidate.host, candidate.port)] = CandidateOrigin(
            server.uri, server.transport, tuple(mapped) if mapped else None
        )
        self._add(candidate, protocol, server.uri)

    async def _finish(self, tasks: list[tuple[ServerUri, asyncio.Task[None]]]) -> None:
        ok: set[str] = set()
        asked: list[str] = []
        for server, task in tasks:
            if server.uri not in asked:
                asked.append(server.uri)
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # we are being cancelled ourselves (close)
                logger.info("ICE server %s gave no candidate: cancelled", server.uri)
            except Exception as exc:  # TimeoutError included: the server did not answer in time
                logger.info("ICE server %s gave no candidate: %r", server.uri, exc)
            else:
                ok.add(server.uri)
        if not self.done.done():
            self.done.set_result(tuple(uri for uri in asked if uri not in ok))
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


def candidate_origin(
    gatherings: Sequence[Gathering], candidate: Candidate
) -> CandidateOrigin | None:
    """Where a local srflx/relay candidate came from, whichever gathering produced it."""
    for gathering in gatherings:
        origin = gathering.origin(candidate)
        if origin is not None:
            return origin
    return None


def install_gathering(
    pc: RTCPeerConnection,
    *,
    on_candidate: Callable[[Candidate, str | None], None],
    timeout: float,
    loopback_only: bool,
    servers: Sequence[RTCIceServer] | None = None,
    tls_context: ssl.SSLContext | None = None,
    triggered_checks: bool = True,
    best_pair: bool = True,
) -> list[Gathering]:
    """Replace gathering on every ICE connection of ``pc`` (call before setLocalDescription).

    With ``servers`` (the configuration's full list), every STUN and TURN URI in it is queried;
    without, only the one STUN and one TURN server aioice picked. ``tls_context`` verifies
    ``turns:`` servers (default: the system's trusted certificates). The connectivity-check
    fixes of :mod:`app.rtcfixes.icechecks` are installed too (both on unless turned off, which
    only benchmarks do, to measure them).
    """
    uris = server_uris(servers) if servers is not None else None
    gatherings = []
    for conn in ice_connections(pc):
        if conn._local_candidates_start:
            continue
        gathering = Gathering(
            conn,
            on_candidate=on_candidate,
            timeout=timeout,
            loopback_only=loopback_only,
            servers=uris,
            tls_context=tls_context,
        )
        # An instance attribute shadows the method: aiortc's RTCIceGatherer.gather() calls it.
        conn.gather_candidates = gathering.gather  # type: ignore[method-assign]
        install_check_fixes(conn, triggered_checks=triggered_checks, best_pair=best_pair)
        gatherings.append(gathering)
    return gatherings
