"""The token bucket: the one rate limiter of the relay and of the signaling server.

A TURN session's ``max-bps`` (bytes per second, both directions, like coturn's per-session
limit) and a signaling connection's frame rate are the same rule: ``rate`` tokens per second
sustained, ``burst`` at once. No clock inside: every call takes ``now`` (seconds, any monotonic
origin), so the rule is tested without sleeping. A neutral helper like :mod:`nat.auth`:
``signaling`` may import it (DESIGN.md), and ``nat`` imports nothing from ``signaling``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second sustained, ``burst`` at once; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are that many; False (and nothing spent) if not."""
        if self.tokens < 0:  # first use: a full bucket
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True
