"""NAT (STUN/TURN) errors. See the module docstrings of ``nat.stun`` and ``nat.server`` for
the specific subclasses; every error the package raises on purpose derives from NatError."""

from __future__ import annotations


class NatError(Exception):
    """Base of every error ``nat`` raises on purpose; str(e) is one line fit for the user."""
