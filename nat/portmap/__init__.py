"""Ask the home router to forward ports while hosting: UPnP-IGD, NAT-PMP (RFC 6886), PCP (RFC 6887).

:class:`PortMapper` maps a list of ports with whichever protocol the gateway answers, renews
the mappings at half their lifetime and deletes them on :meth:`PortMapper.stop`. Its
:class:`MappingState` is what the window and ``--map-ports`` show: one line with the method,
the router's external address and any refusal.
"""

from __future__ import annotations

from nat.portmap.errors import PortMapCodecError, PortMapError, RouterRefused
from nat.portmap.mapper import Mapping, MappingState, PortMapper, PortRequest, ports_for_hosting

__all__ = [
    "Mapping",
    "MappingState",
    "PortMapCodecError",
    "PortMapError",
    "PortMapper",
    "PortRequest",
    "RouterRefused",
    "ports_for_hosting",
]
