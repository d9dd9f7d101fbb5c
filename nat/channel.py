"""TURN channel bindings: a 2-byte channel number standing for one peer transport address."""

from __future__ import annotations

from dataclasses import dataclass

from nat.five_tuple import Address

CHANNEL_COOLDOWN = 300.0
"""Seconds after expiry during which a channel number or peer may not be bound to anything
else (RFC 8656 §12: "MUST NOT ... for 5 minutes after the binding expires")."""


@dataclass(slots=True, eq=False)
class ChannelBinding:
    """Channel ``number`` <-> ``peer``, valid until ``expires`` (RFC 8656 §12, 10 minutes)."""

    number: int
    peer: Address
    expires: float

    def valid(self, now: float) -> bool:
        """Whether data may flow over the channel at ``now``."""
        return now < self.expires

    def reclaimable(self, now: float) -> bool:
        """Whether the number and peer may be forgotten (expired and past the cooldown)."""
        return now >= self.expires + CHANNEL_COOLDOWN
