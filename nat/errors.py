"""NAT (STUN/TURN) errors; every error the package raises on purpose derives from NatError.

Hierarchy (str(e) is always one line fit for the user)::

    NatError
    ├── ConfigError          a RelayConfig value is invalid (nat.config, nat.conffile)
    ├── CredentialError      a username or key is malformed (defined in nat.auth)
    ├── StunError            bytes are not a well-formed STUN message (nat.stun)
    │   ├── StunFormatError      header/length/alignment broken: not STUN at all, or truncated
    │   └── StunAttributeError   one attribute's value is malformed (carries its type)
    ├── ChannelDataError     bytes are not a well-formed ChannelData message (nat.stun)
    └── ServiceError         the asyncio service cannot start (e.g. port in use) (nat.service)

Parse errors are *remote* errors (the peer sent garbage, in h11's sense): the server core catches
them and drops the datagram or answers 400; they never escape ``TurnServer.handle``.
"""

from __future__ import annotations


class NatError(Exception):
    """Base of every error ``nat`` raises on purpose; str(e) is one line fit for the user."""


class ConfigError(NatError):
    """A relay configuration value is invalid."""


class StunError(NatError):
    """Bytes that should be a STUN message are not a well-formed one."""


class StunFormatError(StunError):
    """The STUN header, length or attribute framing is broken."""


class StunAttributeError(StunError):
    """One attribute's value is malformed; ``attr_type`` says which."""

    def __init__(self, attr_type: int, message: str) -> None:
        super().__init__(message)
        self.attr_type = attr_type


class ChannelDataError(NatError):
    """Bytes that should be a ChannelData message are not a well-formed one."""


class ServiceError(NatError):
    """The asyncio relay service cannot do what was asked (bind, start)."""
