"""LAN discovery: PeerCalls on one network find each other with mDNS / DNS-SD.

A host advertises "this PeerCall is reachable at ws://host:port, room X" as a DNS-SD service
of type ``_peercall._tcp.local.`` (RFC 6763) over multicast DNS (RFC 6762) with TXT records
``v`` (wire version), ``name``, ``room``, ``auth``, for an open room ``secret``, and ``tls=1``
when the server speaks ``wss://``.
Others browse for that type and dial without typing an address.

The LAN backend is nothing new on the wire: :class:`LanHost` is the embedded
:class:`~signaling.server.SignalingServer` plus a :class:`LanAdvertiser`; the caller uses a
:class:`LanBrowser` to find it and an ordinary
:class:`~signaling.client.WebSocketChannel` (:func:`channel_to`) to talk to it.

Trust: an ``open`` room publishes its secret in TXT, so anyone on the LAN may take the free
seat (the room still holds only two). A ``pin`` room publishes nothing; the caller types the
PIN the host reads out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import zeroconf
from zeroconf import (
    BadTypeInNameException,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from signaling.base import Service
from signaling.client import WebSocketChannel
from signaling.errors import SignalingError
from signaling.server import SignalingServer
from signaling.ws_protocol import ROOM_RE, WIRE_VERSION

logger = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_peercall._tcp.local."
RESOLVE_TIMEOUT_MS: Final = 3000
MAX_INSTANCE_NAME: Final = 63  # RFC 6763 §4.1.1: instance names are at most 63 octets

Interfaces = Sequence[str] | None
"""IP addresses of the interfaces to use (e.g. ``["127.0.0.1"]``); None means all."""


@dataclass(frozen=True)
class LanService:
    """A PeerCall found on the LAN."""

    instance: str  # the DNS-SD service instance name, e.g. "Alice._peercall._tcp.local."
    name: str
    room: str
    url: str
    addresses: tuple[str, ...]
    port: int
    version: str
    secret: str | None  # published for open rooms only

    @property
    def open(self) -> bool:
        return self.secret is not None


@dataclass(frozen=True)
class LanEvent:
    kind: Literal["found", "removed"]
    service: LanService


def _zeroconf(interfaces: Interfaces) -> AsyncZeroconf:
    if interfaces is None:
        return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    version = (
        IPVersion.V4Only
        if all(ipaddress.ip_address(i).version == 4 for i in interfaces)
        else IPVersion.All
    )
    return AsyncZeroconf(interfaces=list(interfaces), ip_version=version)


def _all_ipv4() -> list[str]:
    """This host's IPv4 addresses except loopback (zeroconf's helper, public but not in __all__)."""
    found: list[str] = zeroconf.get_all_addresses()  # type: ignore[attr-defined]
    return found


def _instance_label(name: str) -> str:
    label = "".join(c if c.isprintable() and c != "." else "-" for c in name).strip()
    return (label or "PeerCall").encode()[:MAX_INSTANCE_NAME].decode("utf-8", "ignore")


class LanAdvertiser(Service):
    """Publishes one PeerCall signaling endpoint on the LAN until stopped."""

    def __init__(
        self,
        name: str,
        port: int,
        room: str,
        *,
        secret: str | None = None,
        addresses: Sequence[str] | None = None,
        interfaces: Interfaces = None,
        tls: bool = False,
    ) -> None:
        if not ROOM_RE.fullmatch(room):
            raise SignalingError(f"room {room!r} must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
        self.name = name
        self.port = port
        self.room = room
        self.secret = secret
        self.interfaces = interfaces
        self.tls = tls  # the server speaks wss://: browsers must use that scheme
        if addresses is None:
            addresses = list(interfaces) if interfaces is not None else _all_ipv4() or ["127.0.0.1"]
        self.addresses = list(addresses)
        self.instance: str | None = None
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    def _properties(self) -> dict[str, str]:
        props = {"v": str(WIRE_VERSION), "name": self.name, "room": self.room}
        props["auth"] = "open" if self.secret is not None else "pin"
        if self.secret is not None:
            props["secret"] = self.secret
        if self.tls:
            props["tls"] = "1"
        return props

    async def start(self) -> None:
        if self._zc is not None:
            return
        self._zc = _zeroconf(self.interfaces)
        label = _instance_label(self.name)
        host = f"peercall-{secrets.token_hex(4)}.local."
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            port=self.port,
            properties=self._properties(),
            server=host,
            parsed_addresses=self.addresses,
        )
        try:
            # RFC 6762 §9: probe first; on a name conflict zeroconf picks "name (2)".
            await (await self._zc.async_register_service(info, allow_name_change=True))
        except (BadTypeInNameException, NonUniqueNameException, OSError) as exc:
            await self._zc.async_close()
            self._zc = None
            raise SignalingError(f"cannot advertise {self.name!r} on the LAN: {exc}") from None
        self._info = info
        self.instance = info.name
        logger.info("advertising %s on %s port %d", info.name, self.addresses, self.port)

    async def stop(self) -> None:
        """Send DNS-SD goodbyes (TTL 0, RFC 6762 §10.1) and close."""
        zc, info, self._zc, self._info = self._zc, self._info, None, None
        if zc is None:
            return
        if info is not None:
            with contextlib.suppress(Exception):
                await (await zc.async_unregister_service(info))
        await zc.async_close()


def _text(properties: dict[bytes, bytes | None], key: str) -> str | None:
    value = properties.get(key.encode())
    return None if value is None else value.decode("utf-8", "replace")


def service_from_info(info: AsyncServiceInfo) -> LanService | None:
    """A :class:`LanService` from resolved DNS-SD data; None if it is not a usable PeerCall."""
    props = info.properties
    version = _text(props, "v")
    room = _text(props, "room")
    if version != str(WIRE_VERSION) or room is None or not ROOM_RE.fullmatch(room):
        logger.info("ignoring %s: version %r room %r", info.name, version, room)
        return None
    addresses = tuple(info.parsed_scoped_addresses())
    if not addresses or info.port is None:
        return None
    v4 = [a for a in addresses if ":" not in a]
    host = v4[0] if v4 else f"[{addresses[0]}]"
    secret = _text(props, "secret") if _text(props, "auth") == "open" else None
    return LanService(
        instance=info.name,
        name=_text(props, "name") or info.name.removesuffix("." + SERVICE_TYPE),
        room=room,
        url=f"{'wss' if _text(props, 'tls') == '1' else 'ws'}://{host}:{info.port}",
        addresses=addresses,
        port=info.port,
        version=version,
        secret=secret,
    )


class LanBrowser(Service):
    """Finds PeerCalls on the LAN; ``services`` is the current set, events say what changed."""

    def __init__(
        self,
        *,
        interfaces: Interfaces = None,
        on_change: Callable[[LanEvent], None] | None = None,
    ) -> None:
        self.interfaces = interfaces
        self.on_change = on_change
        self.services: dict[str, LanService] = {}
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._events: asyncio.Queue[LanEvent] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._zc is not None:
            return
        self._zc = _zeroconf(self.interfaces)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_state_change]
        )

    async def stop(self) -> None:
        zc, browser, self._zc, self._browser = self._zc, self._browser, None, None
        for task in list(self._tasks):
            task.cancel()
        if browser is not None:
            await browser.async_cancel()
        if zc is not None:
            await zc.async_close()

    def _on_state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            gone = self.services.pop(name, None)
            if gone is not None:
                self._publish(LanEvent("removed", gone))
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
            logger.info("could not resolve %s", name)
            return
        service = service_from_info(info)
        if service is None or self.services.get(name) == service:
            return
        self.services[name] = service
        self._publish(LanEvent("found", service))

    def _publish(self, event: LanEvent) -> None:
        self._events.put_nowait(event)
        self._changed.set()
        if self.on_change is not None:
            try:
                self.on_change(event)
            except Exception:
                logger.exception("LAN discovery callback failed")

    async def events(self) -> AsyncIterator[LanEvent]:
        """Found/removed events as they happen (one consumer)."""
        while True:
            yield await self._events.get()

    async def wait_for(
        self, *, name: str | None = None, room: str | None = None, exclude: str | None = None
    ) -> LanService:
        """The first service matching ``name`` / ``room`` (any if both None)."""
        while True:
            for service in self.services.values():
                if (
                    (name is None or service.name == name)
                    and (room is None or service.room == room)
                    and service.instance != exclude
                ):
                    return service
            self._changed.clear()
            await self._changed.wait()


class LanHost(Service):
    """The answering side of a LAN call: embedded signaling server + advertiser.

    ``secret=None`` makes an open room (secret generated and published); a string is a PIN
    the caller must type. :meth:`channel` is the host's own end of the room.
    """

    def __init__(
        self,
        name: str,
        *,
        room: str | None = None,
        secret: str | None = None,
        host: str = "0.0.0.0",
        port: int = 0,
        interfaces: Interfaces = None,
        server_options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.room = room or f"lan-{secrets.token_hex(4)}"
        self.published_secret = secret is None
        self.secret = secret if secret is not None else secrets.token_urlsafe(12)
        self.interfaces = interfaces
        self.server = SignalingServer(host, port, **(server_options or {}))
        self.advertiser: LanAdvertiser | None = None

    async def start(self) -> None:
        await self.server.start()
        addresses = None
        if self.server.host not in ("0.0.0.0", "::", ""):
            addresses = [self.server.host]
        self.advertiser = LanAdvertiser(
            self.name,
            self.server.port,
            self.room,
            secret=self.secret if self.published_secret else None,
            addresses=addresses,
            interfaces=self.interfaces,
        )
        try:
            await self.advertiser.start()
        except BaseException:
            await self.server.stop()
            raise

    async def stop(self) -> None:
        if self.advertiser is not None:
            await self.advertiser.stop()
        await self.server.stop()

    def channel(self, **options: Any) -> WebSocketChannel:
        """The host's own end of the room, over loopback to the embedded server."""
        wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}
        local = wildcard.get(self.server.host)
        scheme = self.server.url.split(":", 1)[0]
        url = f"{scheme}://{local}:{self.server.port}" if local else self.server.url
        return WebSocketChannel(url, self.room, self.secret, name=self.name, **options)


def channel_to(
    service: LanService, *, secret: str | None = None, name: str | None = None, **options: Any
) -> WebSocketChannel:
    """A :class:`WebSocketChannel` to a discovered host; ``secret`` is the PIN for pin rooms."""
    key = service.secret if service.secret is not None else secret
    if key is None:
        raise SignalingError(f"{service.name!r} asks for a PIN; pass it as the secret")
    return WebSocketChannel(service.url, service.room, key, name=name, **options)


def hostname() -> str:
    """A default display name for advertising: the machine's short host name."""
    return socket.gethostname().split(".")[0] or "PeerCall"
