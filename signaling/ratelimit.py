"""The two small pure limiters of the signaling room core: a token bucket and a back-off.

No clocks inside: every call takes ``now`` (seconds, any monotonic origin), so the rules are
tested without sleeping. The token bucket is the relay's own (:mod:`nat.ratelimit`, a neutral
helper like :mod:`nat.auth`): one implementation for a connection's frame rate and a TURN
session's ``max-bps``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nat.ratelimit import TokenBucket

__all__ = ["Backoff", "TokenBucket"]


@dataclass(slots=True)
class Backoff:
    """Lock-out with a growing delay after repeated failures (wrong room secrets).

    The first ``free`` failures cost nothing (typos); each failure after that locks for
    ``base * 2**(n - free - 1)`` seconds, at most ``cap``. A success, or ``forget`` seconds
    without a failure, starts over. While locked, attempts are refused without being checked,
    so the guessing rate is bounded by the lock, not by how many links a guesser opens.
    """

    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0

    def locked(self, now: float, forget: float) -> float:
        """Seconds left of the lock-out (0 when attempts may go ahead)."""
        if self.failures and now - self.last_failure > forget:
            self.failures = 0
            self.locked_until = 0.0
        return max(0.0, self.locked_until - now)

    def fail(self, now: float, free: int, base: float, cap: float) -> float:
        """Count a failure; returns the lock-out it starts (0 while still within ``free``)."""
        self.failures += 1
        self.last_failure = now
        over = self.failures - free
        if over <= 0:
            return 0.0
        delay = min(cap, base * 2.0 ** min(over - 1, 30))
        self.locked_until = now + delay
        return delay

    def idle(self, now: float, forget: float) -> bool:
        """True when this record holds nothing worth keeping (it may be dropped)."""
        return self.locked(now, forget) == 0.0 and self.failures == 0
