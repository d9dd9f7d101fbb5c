"""The settings dialog's "Test" button: ask each configured ICE server for candidates.

Like the WebRTC samples' Trickle ICE page, but per URI so the user sees which server answered
what: a ``stun:`` URI gets a Binding request (RFC 8489 §6) and should return our
server-reflexive address; a ``turn:``/``turns:`` URI gets an Allocate (RFC 8656 §7.1) and
should return a relayed address plus the reflexive one; the allocation is deleted at once
(a Refresh with lifetime 0, RFC 8656 §7.2). Every probe is bounded by ``time_limit``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aioice import stun, turn

from app.errors import ConfigError
from app.iceservers import IceServer, IceUri, parse_ice_uri

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class ProbeCandidate:
    """An address a server returned: ``type`` is "srflx" or "relay"."""

    type: str
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.type} {host}:{self.port}"


@dataclass(frozen=True)
class ProbeResult:
    """What one URI returned. ``error`` is a one-line reason when ``ok`` is false."""

    uri: str
    ok: bool
    candidates: tuple[ProbeCandidate, ...] = ()
    error: str | None = None
    elapsed: float = 0.0

    @property
    def summary(self) -> str:
        """One line for the settings dialog."""
        if not self.ok:
            return f"failed: {self.error}"
        found = ", ".join(str(c) for c in self.candidates) or "no candidates"
        return f"{found} ({self.elapsed * 1000:.0f} ms)"


class _StunClient(asyncio.DatagramProtocol):
    """A UDP socket that runs aioice STUN transactions (the Binding request of RFC 8489)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.transactions: dict[bytes, stun.Transaction] = {}
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        transaction = self.transactions.get(message.transaction_id)
        if transaction is not None:
            transaction.response_received(message, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # An ICMP port unreachable arrives here on a connected UDP socket: nothing listens.
        if not self.failed.done():
            self.failed.set_exception(exc)

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(message), addr)

    async def binding(self, server: tuple[str, int]) -> tuple[str, int]:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        transaction = stun.Transaction(request, server, self)
        self.transactions[request.transaction_id] = transaction
        run: asyncio.Future[Any] = asyncio.ensure_future(transaction.run())
        waiters: set[asyncio.Future[Any]] = {run, self.failed}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if self.failed.done():
                self.failed.result()  # raises the socket error
            response, _ = run.result()
        finally:
            run.cancel()
            del self.transactions[request.transaction_id]
        mapped: tuple[str, int] = response.attributes["XOR-MAPPED-ADDRESS"]
        return mapped


class _Discard(asyncio.DatagramProtocol):
    """The relayed transport's receiver during a probe: nothing should arrive."""


async def _resolve(uri: IceUri) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(uri.host, uri.port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve {uri.host}: {exc.strerror}") from None
    host, port = infos[0][4][0], infos[0][4][1]
    return str(host), int(port)


async def _probe_stun(uri: IceUri) -> tuple[ProbeCandidate, ...]:
    if uri.scheme == "stuns":
        raise ConfigError("stuns: (STUN over TLS) cannot be probed here; use turns: or stun:")
    server = await _resolve(uri)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_StunClient, remote_addr=server)
    try:
        host, port = await protocol.binding(server)
    finally:
        transport.close()
    return (ProbeCandidate("srflx", host, port),)


async def _probe_turn(
    uri: IceUri, username: str | None, password: str | None
) -> tuple[ProbeCandidate, ...]:
    server = await _resolve(uri)
    secure = uri.scheme == "turns"
    transport_name = uri.transport or ("tcp" if secure else "udp")
    context: ssl.SSLContext | None = None
    if secure:
        context = ssl.create_default_context()
    relay_transport, _ = await turn.create_turn_endpoint(
        _Discard,
        server_addr=server,
        username=username,
        password=password,
        ssl=context,
        transport=transport_name,
    )
    try:
        relayed = relay_transport.get_extra_info("sockname")
        mapped = relay_transport.get_extra_info("related_address")
    finally:
        relay_transport.close()  # deletes the allocation (Refresh, lifetime 0)
        await asyncio.sleep(0)
    found = [ProbeCandidate("relay", relayed[0], relayed[1])]
    if mapped is not None:
        found.append(ProbeCandidate("srflx", mapped[0], mapped[1]))
    return tuple(found)


def _describe(exc: BaseException) -> str:
    """One line for a probe failure, naming the STUN error code when there is one."""
    if isinstance(exc, stun.TransactionFailed):
        code = exc.response.attributes.get("ERROR-CODE")
        if code is not None:
            number, reason = code
            hint = {401: " (wrong username or credential?)", 441: " (wrong credentials)"}
            return f"server answered {number} {reason}{hint.get(number, '')}"
        return "server refused the request"
    if isinstance(exc, stun.TransactionTimeout | TimeoutError):
        return "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening there?)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


async def probe_uri(
    text: str,
    username: str | None = None,
    credential: str | None = None,
    time_limit: float = DEFAULT_TIMEOUT,
) -> ProbeResult:
    """Ask one STUN/TURN URI for candidates; never raises for a server problem."""
    start = time.monotonic()
    try:
        uri = parse_ice_uri(text)
    except ConfigError as exc:
        return ProbeResult(text, False, error=str(exc))
    try:
        async with asyncio.timeout(time_limit):
            if uri.scheme in ("stun", "stuns"):
                found = await _probe_stun(uri)
            else:
                found = await _probe_turn(uri, username, credential)
    except TimeoutError:
        return ProbeResult(
            text,
            False,
            error=f"no answer within {time_limit:g} s",
            elapsed=time.monotonic() - start,
        )
    except Exception as exc:
        logger.info("probe %s failed: %r", text, exc)
        return ProbeResult(text, False, error=_describe(exc), elapsed=time.monotonic() - start)
    return ProbeResult(text, True, found, elapsed=time.monotonic() - start)


async def probe_servers(
    servers: Iterable[IceServer], time_limit: float = DEFAULT_TIMEOUT
) -> list[ProbeResult]:
    """Probe every URI of every server concurrently, results in configuration order."""
    coros = [
        probe_uri(url, server.username, server.credential, time_limit)
        for server in servers
        for url in server.urls
    ]
    return list(await asyncio.gather(*coros))
