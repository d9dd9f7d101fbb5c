"""TURN permissions: which peer IPs an allocation may exchange data with (RFC 8656 §9)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class Permission:
    """Permission for one peer IP address (any port, RFC 8656 §9), valid until ``expires``.

    RFC 8656 §9: the lifetime is 300 s and is refreshed by CreatePermission or ChannelBind.
    """

    ip: str
    expires: float

    def valid(self, now: float) -> bool:
        """Whether the permission still lets data through at ``now``."""
        return now < self.expires
