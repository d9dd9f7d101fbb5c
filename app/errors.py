"""Errors raised by the call engine.

Hierarchy::

    PeerCallError                 base; str(e) is a one-line message fit for the user
    ├── ConfigError               a setting, option or URI is invalid
    ├── MediaError                audio/video device problems
    │   ├── DeviceNotFound        no device matches the requested name or index
    │   └── DeviceConfigError     the device refused the format (rate, channels)
    ├── SignalingBlobError        a pasted offer/answer blob is truncated or corrupted
    └── CallError                 the call itself failed
        ├── IllegalTransition     the state machine was asked for a move it forbids (our bug)
        └── ConnectionFailed      ICE/DTLS could not establish or lost the path

The CLI prints ``peercall: error: <message>`` for any of these and exits 2, with no traceback.
"""

from __future__ import annotations


class PeerCallError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(PeerCallError):
    """A setting, command-line option or URI is invalid."""


class MediaError(PeerCallError):
    """An audio or video device could not be used."""


class DeviceNotFound(MediaError):
    """No device matches the requested name or index."""


class DeviceConfigError(MediaError):
    """The device exists but refused the requested format."""


class SignalingBlobError(PeerCallError):
    """A copy-paste offer/answer blob could not be decoded."""


class CallError(PeerCallError):
    """The call failed."""


class IllegalTransition(CallError):
    """The call state machine was asked to make a transition it does not allow."""


class ConnectionFailed(CallError):
    """ICE or DTLS could not establish a path, or the path was lost for good."""
