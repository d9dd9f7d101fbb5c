"""Port mapping errors; str(e) is one line fit for the user.

NatError (nat.errors)
└── PortMapError           no mapping could be made; the message says why
    ├── PortMapCodecError  a gateway's NAT-PMP/PCP reply is malformed (a remote error)
    └── RouterRefused      the router answered but said no (result code, UPnP fault)
"""

from __future__ import annotations

from nat.errors import NatError


class PortMapError(NatError):
    """Port mapping failed; the message is the one line the window and the CLI show."""


class PortMapCodecError(PortMapError):
    """A NAT-PMP/PCP reply is not well formed."""


class RouterRefused(PortMapError):
    """The router understood the request and refused it."""
