"""UPnP-IGD through async-upnp-client: SSDP discovery, then SOAP actions on the WAN service.

async-upnp-client (Home Assistant's UPnP stack) runs on asyncio, so nothing here blocks the Qt
loop; miniupnpc's Python binding would.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from ipaddress import IPv4Address

from async_upnp_client.aiohttp import AiohttpRequester
from async_upnp_client.client_factory import UpnpFactory
from async_upnp_client.exceptions import UpnpActionResponseError, UpnpError
from async_upnp_client.profiles.igd import IgdDevice
from async_upnp_client.search import SsdpSearchListener
from async_upnp_client.utils import CaseInsensitiveDict

from nat.portmap.errors import PortMapError, RouterRefused

logger = logging.getLogger(__name__)

_WAN_SERVICES = ["WANIPC", "WANPPPC"]
# UPnP IGD WANIPConnection:2 §2.4.16 error 725: the router takes only infinite leases.
ONLY_PERMANENT_LEASES = 725
_ANY_HOST = IPv4Address("0.0.0.0")


async def discover(local_ip: str, within: float) -> str | None:
    """The description URL of the first InternetGatewayDevice answering an M-SEARCH, or None.

    Returns as soon as one answers instead of waiting out the search window.
    """
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_response(headers: CaseInsensitiveDict) -> None:
        location = headers.get("location")
        if location and not found.done():
            found.set_result(str(location))

    listeners = []
    for target in IgdDevice.DEVICE_TYPES:
        listener = SsdpSearchListener(
            async_callback=on_response,
            source=(local_ip, 0),
            timeout=max(1, int(within)),
            search_target=target,
        )
        await listener.async_start()
        listener.async_search()
        listeners.append(listener)
    try:
        return await asyncio.wait_for(found, within)
    except TimeoutError:
        return None
    finally:
        for listener in listeners:
            listener.async_stop()


class Igd:
    """One router's WANIPConnection (or WANPPPConnection) service."""

    def __init__(self, device: IgdDevice, location: str) -> None:
        self.device = device
        self.location = location

    @classmethod
    async def connect(cls, location: str, within: float) -> Igd:
        factory = UpnpFactory(AiohttpRequester(timeout=max(1, int(within))))
        try:
            device = await factory.async_create_device(location)
        except (UpnpError, OSError, TimeoutError) as exc:
            raise PortMapError(
                f"the router's UPnP description {location} is unreadable: {exc}"
            ) from None
        if not IgdDevice.is_profile_device(device):
            raise PortMapError(f"{location} is not an Internet Gateway Device")
        return cls(IgdDevice(device, None), location)

    def _require(self, action: str) -> None:
        for name in _WAN_SERVICES:
            service = self.device._service(name)
            if service is not None and service.has_action(action):
                return
        raise PortMapError(f"the router's UPnP service has no {action} action")

    async def external_ip(self) -> str:
        self._require("GetExternalIPAddress")
        try:
            address = await self.device.async_get_external_ip_address()
        except UpnpError as exc:
            raise PortMapError(f"the router did not say its external address: {exc}") from None
        return address or ""

    async def add(
        self,
        protocol: str,
        internal_port: int,
        external_port: int,
        client_ip: str,
        lifetime: int,
        description: str,
    ) -> int:
        """AddPortMapping; returns the lease granted (0 = until deleted)."""
        self._require("AddPortMapping")
        lease = lifetime
        while True:
            try:
                await self.device.async_add_port_mapping(
                    remote_host=_ANY_HOST,
                    external_port=external_port,
                    protocol=protocol,
                    internal_port=internal_port,
                    internal_client=IPv4Address(client_ip),
                    enabled=True,
                    description=description,
                    lease_duration=timedelta(seconds=lease),
                )
                return lease
            except UpnpActionResponseError as exc:
                if exc.error_code == ONLY_PERMANENT_LEASES and lease:
                    lease = 0  # deleted on stop instead of expiring
                    continue
                raise RouterRefused(
                    f"the router refused to forward {protocol} port {external_port} "
                    f"(UPnP error {exc.error_code} {exc.error_desc})"
                ) from None
            except UpnpError as exc:
                raise PortMapError(f"UPnP AddPortMapping failed: {exc}") from None

    async def delete(self, protocol: str, external_port: int) -> None:
        self._require("DeletePortMapping")
        try:
            await self.device.async_delete_port_mapping(_ANY_HOST, external_port, protocol)
        except UpnpError as exc:
            raise PortMapError(f"UPnP DeletePortMapping failed: {exc}") from None
