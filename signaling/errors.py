"""Signaling errors.

Hierarchy::

    SignalingError            base; str(e) is one line fit for the user
    ├── MessageError          a message failed validation (bad JSON, unknown type, missing field)
    │   └── BlobError         a pasted copy-paste blob cannot be decoded (signaling.manual)
    │       ├── BlobNotFound  the text holds no 'peercall1:' blob
    │       ├── BlobTruncated the blob ends before its declared length
    │       └── BlobCorrupted checksum, length or payload do not agree
    ├── ChannelClosed         the channel is closed; no more messages will arrive
    │   └── GaveUp            the client stopped reconnecting to the server (terminal)
    └── PeerRejected          the server refused us (wrong room secret, room full, ...)
"""

from __future__ import annotations


class SignalingError(Exception):
    """Base of every signaling error."""


class MessageError(SignalingError):
    """A signaling message is malformed or not allowed here."""


class BlobError(MessageError):
    """A copy-paste offer/answer blob could not be decoded (see :mod:`signaling.manual`)."""


class BlobNotFound(BlobError):
    """The pasted text contains no PeerCall blob."""


class BlobTruncated(BlobError):
    """The pasted blob is shorter than its header says: part of it was lost on the way."""


class BlobCorrupted(BlobError):
    """The pasted blob is complete but its checksum, length or payload is wrong."""


class ChannelClosed(SignalingError):
    """The channel was closed by either side."""


class GaveUp(ChannelClosed):
    """The WebSocket client gave up reconnecting (``reconnect_timeout`` passed): terminal, every
    later ``receive``/``send`` raises it again at once; make a new channel to try again."""


class PeerRejected(SignalingError):
    """The signaling server or peer refused this client."""
