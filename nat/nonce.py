"""NONCE values for the long-term credential mechanism (RFC 8489 §9.2), stateless.

A nonce is ``<expiry as 8 hex digits><HMAC-SHA1(secret, expiry | client IP) truncated, hex>``.
The server keeps no per-client state for it, so memory stays bounded however many clients (or
spoofed sources) ask; validity is checked by recomputing the MAC. Binding it to the client's IP
keeps a nonce seen on the wire from being replayed from elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

_MAC_HEX = 24  # 96 bits of the HMAC, as hex
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Nonce:
    """A nonce issued to ``client_ip`` that expires at ``expires`` (whole Unix seconds)."""

    value: bytes
    client_ip: str
    expires: int


class NonceManager:
    """Issues nonces that live ``lifetime`` seconds (coturn's ``stale-nonce``) and checks them."""

    def __init__(self, secret: bytes, lifetime: int) -> None:
        self._secret = secret
        self.lifetime = lifetime
        # The nonce of a client IP is the same all through one second: remember the last one
        # per IP so a burst of challenges (a flood of unauthenticated requests) computes one
        # HMAC per IP per second. Bounded: cleared when it grows past _CACHE_MAX.
        self._issued: dict[str, Nonce] = {}

    def _mac(self, expires: int, client_ip: str) -> bytes:
        msg = b"%08x|%s" % (expires, client_ip.encode())
        return hmac.new(self._secret, msg, hashlib.sha1).hexdigest()[:_MAC_HEX].encode()

    def issue(self, client_ip: str, now: float) -> Nonce:
        """A fresh nonce for ``client_ip``, valid for ``lifetime`` seconds from ``now``."""
        expires = int(now) + self.lifetime
        cached = self._issued.get(client_ip)
        if cached is not None and cached.expires == expires:
            return cached
        value = b"%08x" % expires + self._mac(expires, client_ip)
        nonce = Nonce(value, client_ip, expires)
        if len(self._issued) >= _CACHE_MAX:
            self._issued.clear()
        self._issued[client_ip] = nonce
        return nonce

    def valid(self, value: bytes, client_ip: str, now: float) -> bool:
        """Whether ``value`` was issued by us to ``client_ip`` and has not expired.

        A forged, foreign or expired nonce is answered with 438 Stale Nonce alike (RFC 8489
        §9.2.4), which hands the client a fresh one.
        """
        if len(value) != 8 + _MAC_HEX:
            return False
        try:
            expires = int(value[:8], 16)
        except ValueError:
            return False
        if now >= expires:
            return False
        return hmac.compare_digest(value[8:], self._mac(expires, client_ip))
