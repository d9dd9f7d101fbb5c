"""Host the embedded STUN/TURN relay and signaling server from the settings dialog.

Thin Qt wrappers over ``nat.service.RelayServer`` and ``signaling.server.SignalingServer``:
start/stop on the qasync loop, a one-second status refresh, and every failure reported as one
line through ``errorRaised`` (a port in use, a bad address), never raised into Qt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.errors import ConfigError
from app.ui.presenters import user_message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelaySettings:
    """What the "Host a relay" panel edits (a subset of nat.config.RelayConfig)."""

    listen: str = "127.0.0.1"
    port: int = 3478
    min_port: int = 49152
    max_port: int = 49252  # small enough to forward on a router (README)
    realm: str = "peercall"
    external_ip: str = ""
    users: tuple[tuple[str, str], ...] = ()  # (name, password)
    allow_loopback_peers: bool = False  # tests and same-machine calls
    # Peers allowed although private (the relay's own LAN addresses, so two people who both
    # use this relay can reach each other's allocations; the rest of the LAN stays closed).
    allowed_peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RelayStatus:
    """A snapshot for the panel."""

    running: bool
    addresses: tuple[str, ...] = ()
    allocations: int = 0
    relayed_bytes: int = 0
    relayed_packets: int = 0
    stun_requests: int = 0
    uris: tuple[str, ...] = ()
    users: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    listen: str = ""  # what it was started with ("0.0.0.0": every interface)
    port: int = 0
    min_port: int = 0
    max_port: int = 0


def new_password() -> str:
    """A password for a generated relay user: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def relay_settings(settings: Any, *, allow_loopback_peers: bool = False) -> RelaySettings:
    """The relay as the saved settings describe it; a user is generated (and stored in
    ``settings``, not yet saved) when none is configured, so TURN always has credentials."""
    users = tuple((str(n), str(p)) for n, p in settings["relay.users"])
    if not users:
        users = (("peercall", new_password()),)
        settings.set("relay.users", [list(u) for u in users])
    return relay_settings_from(settings, users, allow_loopback_peers=allow_loopback_peers)


def relay_settings_from(
    values: Any, users: tuple[tuple[str, str], ...], *, allow_loopback_peers: bool = False
) -> RelaySettings:
    """RelaySettings from the ``relay.*`` values (saved settings or the dialog's fields)."""
    listen = values["relay.listen"] or "0.0.0.0"
    return RelaySettings(
        listen=listen,
        port=values["relay.port"],
        min_port=values["relay.min_port"],
        max_port=values["relay.max_port"],
        realm=values["relay.realm"],
        external_ip=values["relay.external_ip"],
        users=users,
        allow_loopback_peers=allow_loopback_peers,
        allowed_peers=own_addresses(listen),
    )


@dataclass(frozen=True)
class HostAddress:
    """One address of this machine a peer may use: where it comes from, and the IP."""

    kind: str  # "LAN (eth0)", "public (STUN)", "this machine only"
    ip: str


def lan_addresses() -> list[HostAddress]:
    """Every usable interface address: IPv4 and global IPv6, no loopback or link-local."""
    import ipaddress

    import ifaddr

    found: list[HostAddress] = []
    for adapter in ifaddr.get_adapters():
        for entry in adapter.ips:
            ip = entry.ip if isinstance(entry.ip, str) else entry.ip[0]
            try:
                parsed = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if parsed.is_loopback or parsed.is_link_local or parsed.is_unspecified:
                continue
            found.append(HostAddress(f"LAN ({adapter.nice_name})", ip))
    # IPv4 first (what most people type), then by address: a stable order between runs.
    found.sort(key=lambda a: (ipaddress.ip_address(a.ip).version, ipaddress.ip_address(a.ip)))
    return found


def own_addresses(listen: str) -> tuple[str, ...]:
    """The addresses a relay listening on ``listen`` is reachable at on this machine's LANs."""
    if listen in ("0.0.0.0", "::", ""):
        return tuple(a.ip for a in lan_addresses())
    return () if listen.startswith("127.") or listen == "::1" else (listen,)


def reachable_addresses(listen: str, external_ip: str = "") -> list[HostAddress]:
    """What to offer the other person for a server listening on ``listen`` (issue 12.2)."""
    if listen.startswith("127.") or listen == "::1":
        return [HostAddress("this machine only", listen)]
    result: list[HostAddress] = []
    if external_ip:
        result.append(HostAddress("public (External IP)", external_ip))
    if listen in ("0.0.0.0", "::", ""):
        result += [a for a in lan_addresses() if a.ip != external_ip]
    else:
        result.append(HostAddress("LAN", listen))
    return result


def uris_at(uris: tuple[str, ...], ip: str) -> tuple[str, ...]:
    """The relay's URIs with the listening host replaced by ``ip`` (what a peer dials)."""
    host = f"[{ip}]" if ":" in ip else ip
    result = []
    for uri in uris:
        scheme, _, rest = uri.partition(":")
        where, query, params = rest.partition("?")
        port = where.rsplit(":", 1)[1]
        result.append(f"{scheme}:{host}:{port}{query}{params}")
    return tuple(result)


async def public_address(servers: Any, time_limit: float = 3.0) -> str | None:
    """This machine's address as a STUN server sees it (RFC 8489 §14.2), or None.

    Asks the configured servers (their STUN/TURN URIs) through app.probe; the first
    server-reflexive answer wins.
    """
    from app.probe import probe_servers

    if not servers:
        return None
    for result in await probe_servers(servers, time_limit):
        for candidate in result.candidates:
            if candidate.type == "srflx":
                return candidate.address
    return None


def share_spec(uri: str, user: str, password: str) -> str:
    """``USER:PASSWORD@URI``: what ``peercall call --ice`` and the ICE editor accept."""
    return f"{user}:{password}@{uri}"


async def autostart(settings: Any, relay_host: RelayHost, signaling_host: SignalingHost) -> None:
    """Start what the settings say to host at start-up ("relay.enabled",
    "signaling_server.enabled"); failures arrive as the hosts' ``errorRaised`` lines."""
    if settings["relay.enabled"]:
        had_users = bool(settings["relay.users"])
        values = relay_settings(settings)
        if not had_users:
            try:
                settings.save()  # keep the generated password stable across restarts
            except OSError as exc:
                relay_host.errorRaised.emit(f"Relay: cannot save settings: {user_message(exc)}")
        await relay_host.start(values)
    if settings["signaling_server.enabled"]:
        await signaling_host.start(
            settings["signaling_server.listen"] or "0.0.0.0", settings["signaling_server.port"]
        )


def build_relay_config(values: RelaySettings) -> Any:
    """A validated nat.config.RelayConfig (raises ConfigError with one line)."""
    import ipaddress

    from nat.auth import long_term_key
    from nat.config import RelayConfig

    if not values.users:
        raise ConfigError("relay: add at least one user (name and password) for TURN")
    return RelayConfig(
        listening_ips=(values.listen,),
        listening_port=values.port,
        min_port=values.min_port,
        max_port=values.max_port,
        realm=values.realm,
        external_ip=values.external_ip or None,
        users=tuple((name, long_term_key(name, values.realm, pw)) for name, pw in values.users),
        allow_loopback_peers=values.allow_loopback_peers,
        allowed_peer_ips=tuple(
            (ipaddress.ip_address(ip), ipaddress.ip_address(ip)) for ip in values.allowed_peers
        ),
    )


def for_others(listen: str) -> bool:
    """Listening where other machines reach it (not loopback only): then the router is asked."""
    return not (listen.startswith("127.") or listen == "::1" or listen == "localhost")


def _routable(ip: str) -> str | None:
    """``ip`` if peers on the internet can reach it: not loopback, private (RFC 1918) or
    carrier-grade NAT (RFC 6598) space, where a router behind another NAT may sit."""
    import ipaddress

    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 4:
        blocked = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
        if any(address in ipaddress.ip_network(net) for net in blocked):
            return None
    elif address.is_loopback or address.is_link_local or address.is_private:
        return None
    return ip


class RouterMapping(QObject):
    """The home router's forwardings for a hosted server, via nat.portmap (PCP, NAT-PMP, IGD).

    The same :class:`nat.portmap.PortMapper` as ``peercall host``; it runs as a task on the
    qasync loop so the window never waits on a router that does not answer. ``stateChanged``
    carries each :class:`nat.portmap.MappingState` (its ``line()`` is what the panel shows).
    """

    stateChanged = Signal(object)  # MappingState

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state: Any = None  # None: not asked (hosting for this machine only)
        self._mapper: Any = None
        self._task: asyncio.Task[Any] | None = None

    def start(self, requests: list[Any]) -> None:
        from nat.portmap import PortMapper

        self._mapper = PortMapper(requests, on_state=self._changed)
        self._task = asyncio.ensure_future(self._mapper.start())
        self._task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("port mapping failed: %s", task.exception())

    def _changed(self, state: Any) -> None:
        self.state = state
        self.stateChanged.emit(state)

    async def stop(self) -> None:
        """Remove the router's forwardings (RFC 6886 §3.4 / RFC 6887 §15: lifetime 0)."""
        mapper, self._mapper = self._mapper, None
        task, self._task = self._task, None
        if task is not None:
            # Let a start in progress finish (bounded by the mapper's timeouts) rather than
            # cancel it: a forwarding the router granted meanwhile must be deleted too.
            with contextlib.suppress(Exception):
                await task
        if mapper is not None:
            try:
                await mapper.stop()
            except Exception as exc:  # a router gone away must not keep hosting from stopping
                logger.warning("removing port mappings failed: %s", exc)
        self.state = None
        self.stateChanged.emit(None)


class RelayHost(QObject):
    """Runs one RelayServer in-process; status refreshes every second while it runs."""

    runningChanged = Signal(bool)
    statusChanged = Signal(object)  # RelayStatus
    errorRaised = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.server: Any = None
        self._users: tuple[tuple[str, str], ...] = ()
        self._settings = RelaySettings()
        self._lock = asyncio.Lock()
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self.refresh)
        self.mapping = RouterMapping(self)
        self.mapping.stateChanged.connect(self._mapping_changed)

    @property
    def running(self) -> bool:
        return self.server is not None

    def _mapping_changed(self, state: Any) -> None:
        """Once the router forwards the relay ports, allocations must be told the router's
        address: behind NAT the relay only sees its LAN address, which an outside peer cannot
        reach (what coturn's ``external-ip`` is for). An External IP the user set wins."""
        server = self.server
        if server is None or self._settings.external_ip:
            return
        public = None
        if state is not None and state.status in ("mapped", "partial"):
            public = _routable(state.external_ip)
        server.core.advertise_as(public)

    @property
    def started_with(self) -> RelaySettings | None:
        """What the running relay was started with (None when stopped)."""
        return self._settings if self.server is not None else None

    async def start(self, values: RelaySettings) -> bool:
        """Start the relay; False (and ``errorRaised``) if it cannot."""
        async with self._lock:
            if self.server is not None:
                return True
            try:
                from nat.service import RelayServer

                server = RelayServer(build_relay_config(values))
                await server.start()
            except Exception as exc:
                self.errorRaised.emit(f"Relay: {user_message(exc)}")
                self.runningChanged.emit(False)
                return False
            self.server, self._users, self._settings = server, values.users, values
            logger.info("relay started on %s", server.addresses)
            if for_others(values.listen):
                from nat.portmap import ports_for_hosting

                port = server.addresses[0][2] if server.addresses else values.port
                self.mapping.start(
                    ports_for_hosting(
                        turn_port=port,
                        relay_ports=range(values.min_port, values.max_port + 1),
                    )
                )
        self._timer.start()
        self.runningChanged.emit(True)
        self.refresh()
        return True

    async def stop(self) -> None:
        """Stop the relay, closing its allocations. Idempotent."""
        async with self._lock:
            server, self.server = self.server, None
            self._timer.stop()
            if server is None:
                return
            await self.mapping.stop()
            try:
                await server.stop()
            except Exception as exc:
                self.errorRaised.emit(f"Relay: stopping failed: {user_message(exc)}")
        self.runningChanged.emit(False)
        self.statusChanged.emit(RelayStatus(False))

    def status(self) -> RelayStatus:
        server = self.server
        if server is None:
            return RelayStatus(False)
        stats = server.stats()
        addresses = tuple(
            f"{t} {h}:{p}" if ":" not in h else f"{t} [{h}]:{p}" for t, h, p in server.addresses
        )
        return RelayStatus(
            True,
            addresses=addresses,
            allocations=stats.allocations,
            relayed_bytes=stats.relayed_bytes,
            relayed_packets=stats.relayed_packets,
            stun_requests=stats.stun_requests,
            uris=tuple(server.turn_uris()),
            users=self._users,
            listen=self._settings.listen,
            port=server.addresses[0][2] if server.addresses else self._settings.port,
            min_port=self._settings.min_port,
            max_port=self._settings.max_port,
        )

    def refresh(self) -> None:
        try:
            self.statusChanged.emit(self.status())
        except Exception as exc:  # a status read must never take the window down
            self.errorRaised.emit(f"Relay: status unavailable: {user_message(exc)}")


class SignalingHost(QObject):
    """Runs one SignalingServer in-process."""

    runningChanged = Signal(bool)
    errorRaised = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.server: Any = None
        self._lock = asyncio.Lock()
        # What the running server was started with, so Settings → Cancel can start it again.
        self.started_with: tuple[str, int, dict[str, Any]] | None = None
        self.mapping = RouterMapping(self)

    @property
    def url(self) -> str | None:
        return str(self.server.url) if self.server is not None else None

    async def start(self, host: str, port: int, **kwargs: Any) -> bool:
        async with self._lock:
            if self.server is not None:
                return True
            try:
                from signaling.server import SignalingServer

                server = SignalingServer(host, port, **kwargs)
                await server.start()
            except Exception as exc:
                self.errorRaised.emit(f"Signaling server: {user_message(exc)}")
                self.runningChanged.emit(False)
                return False
            self.server = server
            self.started_with = (host, port, dict(kwargs))
            if for_others(host):
                from nat.portmap import ports_for_hosting

                self.mapping.start(ports_for_hosting(signaling_port=int(server.port)))
        self.runningChanged.emit(True)
        return True

    async def stop(self) -> None:
        async with self._lock:
            server, self.server = self.server, None
            if server is None:
                return
            await self.mapping.stop()
            try:
                await server.stop()
            except Exception as exc:
                self.errorRaised.emit(f"Signaling server: stopping failed: {user_message(exc)}")
        self.runningChanged.emit(False)
