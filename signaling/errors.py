"""Signaling errors.

Hierarchy::

    SignalingError            base; str(e) is one line fit for the user
    ├── MessageError          a message failed validation (bad JSON, unknown type, missing field)
    ├── ChannelClosed         the channel is closed; no more messages will arrive
    └── PeerRejected          the server refused us (wrong room secret, room full, ...)
"""

from __future__ import annotations


class SignalingError(Exception):
    """Base of every signaling error."""


class MessageError(SignalingError):
    """A signaling message is malformed or not allowed here."""


class ChannelClosed(SignalingError):
    """The channel was closed by either side."""


class PeerRejected(SignalingError):
    """The signaling server or peer refused this client."""
