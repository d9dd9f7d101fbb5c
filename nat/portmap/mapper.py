"""PortMapper: map the hosting ports with PCP, NAT-PMP or UPnP-IGD, renew, delete on stop.

The methods are tried in order (PCP, NAT-PMP, UPnP-IGD by default): PCP and NAT-PMP are one
UDP round trip to the gateway, UPnP needs an SSDP search and HTTP. A router silent to PCP is
not asked NAT-PMP (same port 5351: RFC 6887 §9 has NAT-PMP-only routers answer version 2 with
"unsupported version"). Failures never raise out of :meth:`PortMapper.start`: they become
:attr:`MappingState.refusal`, the one line the window and ``--map-ports`` print.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from nat.portmap import codec, pmp
from nat.portmap.address import default_gateway, local_address_towards, not_public_reason
from nat.portmap.errors import PortMapError, RouterRefused

logger = logging.getLogger(__name__)

METHODS = ("pcp", "natpmp", "upnp")
METHOD_NAMES = {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP-IGD"}
DEFAULT_LIFETIME = 3600  # asked for; routers may grant less (RFC 6886 §3.3, RFC 6887 §15)
MIN_RENEW = 1.0
MAPPING_PATIENCE = 6.0  # seconds per request once the router has answered the first one


@dataclass(frozen=True)
class PortRequest:
    """One port to forward from the router's external address to this computer."""

    protocol: str  # "UDP" or "TCP"
    port: int
    purpose: str = ""  # "TURN", "relay", "signaling": for the description and the status

    def __post_init__(self) -> None:
        if self.protocol not in ("UDP", "TCP"):
            raise ValueError(f"protocol must be UDP or TCP, not {self.protocol!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")


@dataclass(frozen=True)
class Mapping:
    """A forwarding the router granted; ``lifetime`` 0 means "until deleted"."""

    request: PortRequest
    external_port: int
    lifetime: int


@dataclass(frozen=True)
class MappingState:
    """What the window and the CLI show about port mapping."""

    status: str = "off"  # off | mapping | mapped | partial | failed | stopped
    method: str = ""
    gateway: str = ""
    external_ip: str = ""
    mappings: tuple[Mapping, ...] = ()
    refusal: str = ""

    def external_port(self, protocol: str, port: int) -> int | None:
        """The router's port for our ``protocol``/``port``, if mapped."""
        for m in self.mappings:
            if m.request.protocol == protocol and m.request.port == port:
                return m.external_port
        return None

    def line(self) -> str:
        """One line: the state, the method and router, the external address, any refusal."""
        if self.status == "off":
            return "port mapping: off"
        if self.status == "mapping":
            return f"port mapping: asking the router {self.gateway or ''} to forward ports".strip()
        if self.status == "stopped":
            return "port mapping: stopped, the router's forwardings were removed"
        if self.status == "failed":
            ext = f" (router's external address {self.external_ip})" if self.external_ip else ""
            reason = self.refusal if self.refusal else "unknown reason"
            return f"port mapping failed: {reason}{ext}"
        text = (
            f"port mapping: {len(self.mappings)} port(s) forwarded by {self.method} on router "
            f"{self.gateway}, external address {self.external_ip or 'unknown'}"
            f" ({_summary(self.mappings)})"
        )
        if self.refusal:
            text += f"; {self.refusal}"
        return text


def _summary(mappings: Sequence[Mapping]) -> str:
    by_purpose: dict[str, list[str]] = {}
    for m in mappings:
        label = f"{m.request.protocol} {m.request.port}"
        if m.external_port != m.request.port:
            label += f"->{m.external_port}"
        by_purpose.setdefault(m.request.purpose or "port", []).append(label)
    parts = []
    for purpose, labels in by_purpose.items():
        shown = ", ".join(labels[:3]) + (f" +{len(labels) - 3} more" if len(labels) > 3 else "")
        parts.append(f"{purpose}: {shown}")
    return "; ".join(parts)


def ports_for_hosting(
    *,
    turn_port: int | None = None,
    relay_ports: range | Sequence[int] = (),
    signaling_port: int | None = None,
    turn_tcp: bool = True,
) -> list[PortRequest]:
    """The forwardings hosting needs: TURN (UDP+TCP), each relay port (UDP), signaling (TCP)."""
    requests: list[PortRequest] = []
    if turn_port:
        requests.append(PortRequest("UDP", turn_port, "TURN"))
        if turn_tcp:
            requests.append(PortRequest("TCP", turn_port, "TURN"))
    requests += [PortRequest("UDP", p, "relay") for p in relay_ports]
    if signaling_port:
        requests.append(PortRequest("TCP", signaling_port, "signaling"))
    return requests


class _Silent(Exception):
    """The gateway did not answer this protocol at all."""


class _Backend(Protocol):
    name: str
    timeout: float

    async def open(self) -> None: ...
    async def external_ip(self) -> str: ...
    async def add(self, request: PortRequest, lifetime: int) -> Mapping: ...
    async def delete(self, mapping: Mapping) -> None: ...


class _PcpBackend:
    name = "PCP"

    def __init__(self, gateway: str, client_ip: str, within: float) -> None:
        self.gateway, self.client_ip, self.timeout = gateway, client_ip, within
        self._nonces: dict[tuple[str, int], bytes] = {}
        self._external_ip = ""
        self.speaks_natpmp = False

    async def open(self) -> None:
        pass  # the first MAP is the probe

    async def external_ip(self) -> str:
        return self._external_ip

    async def _map(self, request: PortRequest, external_port: int, lifetime: int) -> Mapping:
        # RFC 6887 §11.2: renewals and the delete reuse the mapping's nonce.
        nonce = self._nonces.setdefault((request.protocol, request.port), os.urandom(12))
        reply = await pmp.pcp_map(
            self.gateway,
            nonce=nonce,
            protocol=request.protocol,
            internal_port=request.port,
            external_port=external_port,
            client_ip=self.client_ip,
            lifetime=lifetime,
            within=self.timeout,
        )
        if reply is None:
            raise _Silent
        if not isinstance(reply, codec.PcpMapping):
            self.speaks_natpmp = True  # a version 0 answer: RFC 6887 §9
            raise _Silent
        if reply.result != codec.PcpResult.SUCCESS:
            raise RouterRefused(f"the router {codec.pcp_reason(reply.result)} (PCP)")
        self._external_ip = self._external_ip or reply.external_ip
        return Mapping(request, reply.external_port, reply.lifetime)

    async def add(self, request: PortRequest, lifetime: int) -> Mapping:
        return await self._map(request, request.port, lifetime)

    async def delete(self, mapping: Mapping) -> None:
        # §15: lifetime 0 deletes; the suggested external port is ignored for deletes.
        await self._map(mapping.request, mapping.external_port, 0)


class _PmpBackend:
    name = "NAT-PMP"

    def __init__(self, gateway: str, within: float) -> None:
        self.gateway, self.timeout = gateway, within
        self._external_ip = ""

    async def open(self) -> None:
        reply = await pmp.pmp_external_address(self.gateway, within=self.timeout)
        if reply is None:
            raise _Silent
        if reply.result != codec.PmpResult.SUCCESS:
            raise RouterRefused(f"the router {codec.pmp_reason(reply.result)} (NAT-PMP)")
        self._external_ip = reply.external_ip

    async def external_ip(self) -> str:
        return self._external_ip

    async def _map(self, request: PortRequest, external_port: int, lifetime: int) -> Mapping:
        reply = await pmp.pmp_map(
            self.gateway,
            protocol=request.protocol,
            internal_port=request.port,
            external_port=external_port,
            lifetime=lifetime,
            within=self.timeout,
        )
        if reply is None:
            raise PortMapError(f"the router stopped answering NAT-PMP for port {request.port}")
        if reply.result != codec.PmpResult.SUCCESS:
            raise RouterRefused(f"the router {codec.pmp_reason(reply.result)} (NAT-PMP)")
        return Mapping(request, reply.external_port, reply.lifetime)

    async def add(self, request: PortRequest, lifetime: int) -> Mapping:
        return await self._map(request, request.port, lifetime)

    async def delete(self, mapping: Mapping) -> None:
        # RFC 6886 §3.4: lifetime 0 and suggested external port 0 delete the mapping.
        await self._map(mapping.request, 0, 0)


class _IgdBackend:
    name = "UPnP-IGD"

    def __init__(
        self, client_ip: str, within: float, description: str, location: str | None
    ) -> None:
        self.client_ip, self.timeout, self.description = client_ip, within, description
        self.location = location
        self._igd: object = None

    async def open(self) -> None:
        from nat.portmap import igd

        location = self.location or await igd.discover(self.client_ip, self.timeout)
        if location is None:
            raise _Silent
        self._igd = await igd.Igd.connect(location, self.timeout)

    @property
    def igd(self) -> object:
        assert self._igd is not None
        return self._igd

    async def external_ip(self) -> str:
        from nat.portmap.igd import Igd

        assert isinstance(self._igd, Igd)
        return await self._igd.external_ip()

    async def add(self, request: PortRequest, lifetime: int) -> Mapping:
        from nat.portmap.igd import Igd

        assert isinstance(self._igd, Igd)
        granted = await self._igd.add(
            request.protocol,
            request.port,
            request.port,
            self.client_ip,
            lifetime,
            f"{self.description} {request.purpose} {request.port}/{request.protocol}".strip(),
        )
        return Mapping(request, request.port, granted)

    async def delete(self, mapping: Mapping) -> None:
        from nat.portmap.igd import Igd

        assert isinstance(self._igd, Igd)
        await self._igd.delete(mapping.request.protocol, mapping.external_port)


@dataclass
class PortMapper:
    """Maps ``requests`` on the router while hosting; :meth:`stop` removes them.

    ``methods`` picks and orders the protocols (a subset of :data:`METHODS`); ``gateway``
    defaults to the IPv4 default route's gateway; ``upnp_location`` skips SSDP discovery.
    ``on_state`` is called with every new :class:`MappingState`.
    """

    requests: Sequence[PortRequest]
    methods: Sequence[str] = METHODS
    gateway: str | None = None
    lifetime: int = DEFAULT_LIFETIME
    timeout: float = 2.0
    description: str = "PeerCall"
    upnp_location: str | None = None
    on_state: Callable[[MappingState], None] | None = None
    state: MappingState = field(default_factory=MappingState)
    _backend: _Backend | None = None
    _renewer: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise PortMapError(
                f"port mapping methods must be some of {', '.join(METHODS)}, not "
                f"{', '.join(unknown) or 'none'}"
            )
        if not self.requests:
            raise PortMapError("no ports to map")
        if self.lifetime < 0:
            raise PortMapError("port mapping lifetime must not be negative")

    def _set(self, state: MappingState) -> None:
        self.state = state
        logger.info("%s", state.line())
        if self.on_state is not None:
            self.on_state(state)

    async def start(self) -> MappingState:
        """Map every request; the result (mapped, partial or failed) is also :attr:`state`."""
        gateway = self.gateway or default_gateway()
        if gateway is None:
            self._set(
                MappingState(
                    "failed", refusal="no router found: this computer has no IPv4 default route"
                )
            )
            return self.state
        self._set(MappingState("mapping", gateway=gateway))
        try:
            client_ip = local_address_towards(gateway)
        except OSError as exc:
            self._set(
                MappingState(
                    "failed",
                    gateway=gateway,
                    refusal=f"the router {gateway} is unreachable: {exc.strerror or exc}",
                )
            )
            return self.state
        refusals: list[str] = []
        silent: list[str] = []
        pcp_silent = False
        for method in self.methods:
            if method == "natpmp" and pcp_silent:
                silent.append("NAT-PMP")  # same daemon, same port: it would be silent too
                continue
            backend = self._backend_for(method, gateway, client_ip)
            try:
                await backend.open()
                first = await backend.add(self.requests[0], self.lifetime)
            except _Silent:
                if method == "pcp" and not getattr(backend, "speaks_natpmp", False):
                    pcp_silent = True
                silent.append(backend.name)
                continue
            except PortMapError as exc:
                refusals.append(str(exc))
                continue
            await self._map_rest(backend, gateway, first)
            return self.state
        if refusals:
            reason = refusals[0]
        elif "UPnP-IGD" in silent:
            reason = f"the router {gateway} has UPnP turned off (no answer to {', '.join(silent)})"
        else:
            reason = f"the router {gateway} does not answer {', '.join(silent)}"
        self._set(MappingState("failed", gateway=gateway, refusal=reason))
        return self.state

    def _backend_for(self, method: str, gateway: str, client_ip: str) -> _Backend:
        if method == "pcp":
            return _PcpBackend(gateway, client_ip, self.timeout)
        if method == "natpmp":
            return _PmpBackend(gateway, self.timeout)
        return _IgdBackend(client_ip, self.timeout, self.description, self.upnp_location)

    async def _map_rest(self, backend: _Backend, gateway: str, first: Mapping) -> None:
        limit = asyncio.Semaphore(4)  # a home router is small; do not flood it
        # The router has answered: from now on a slow answer is load, not absence (miniupnpd
        # rewrites its nftables set per request, ~50 ms each here), so wait longer for it.
        backend.timeout = max(self.timeout, MAPPING_PATIENCE)

        async def one(request: PortRequest) -> Mapping | PortMapError:
            async with limit:
                try:
                    return await backend.add(request, self.lifetime)
                except _Silent:
                    return PortMapError(f"the router stopped answering for port {request.port}")
                except PortMapError as exc:
                    return exc

        results = await asyncio.gather(*(one(r) for r in self.requests[1:]))
        mappings = [first, *(r for r in results if isinstance(r, Mapping))]
        errors = [r for r in results if isinstance(r, PortMapError)]
        try:
            external_ip = await backend.external_ip()
        except PortMapError as exc:
            external_ip, errors = "", [*errors, exc]
        self._backend = backend
        state = MappingState(
            "partial" if errors else "mapped",
            method=backend.name,
            gateway=gateway,
            external_ip=external_ip,
            mappings=tuple(mappings),
            refusal=f"{len(errors)} port(s) not mapped: {errors[0]}" if errors else "",
        )
        not_public = not_public_reason(external_ip) if external_ip else None
        if not_public:
            # Forwarding on a router that is itself behind NAT reaches nobody outside.
            self.state = state
            await self._delete_all()
            self._backend = None
            self._set(replace(state, status="failed", mappings=(), refusal=not_public))
            return
        self._set(state)
        self._renewer = asyncio.create_task(self._renew_loop())

    async def _renew_loop(self) -> None:
        """Re-request every mapping at half its lifetime (RFC 6886 §3.3, RFC 6887 §11.2.1)."""
        while True:
            lifetimes = [m.lifetime for m in self.state.mappings if m.lifetime > 0]
            if not lifetimes:
                return  # permanent leases: deleted on stop
            await asyncio.sleep(max(min(lifetimes) / 2, MIN_RENEW))
            backend = self._backend
            if backend is None:
                return
            renewed: list[Mapping] = []
            failures: list[str] = []
            for m in self.state.mappings:
                try:
                    renewed.append(await backend.add(m.request, self.lifetime))
                except (PortMapError, _Silent) as exc:
                    renewed.append(m)
                    failures.append(str(exc) or f"no answer renewing port {m.request.port}")
            self._set(
                replace(
                    self.state,
                    mappings=tuple(renewed),
                    status="partial" if failures else self.state.status,
                    refusal=f"renewal failed: {failures[0]}" if failures else self.state.refusal,
                )
            )

    async def _delete_all(self) -> list[str]:
        backend = self._backend
        failures: list[str] = []
        if backend is None:
            return failures
        for m in self.state.mappings:
            try:
                await backend.delete(m)
            except (PortMapError, _Silent) as exc:
                failures.append(str(exc) or f"no answer deleting port {m.request.port}")
        return failures

    async def stop(self) -> None:
        """Cancel renewals and delete every mapping. Idempotent; errors are only logged."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._backend is None:
            return
        failures = await self._delete_all()
        self._backend = None
        for failure in failures:
            logger.warning("removing a port mapping failed: %s", failure)
        self._set(replace(self.state, status="stopped", mappings=()))
