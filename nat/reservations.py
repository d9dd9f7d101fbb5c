"""Relay ports held by EVEN-PORT's R bit, findable by RESERVATION-TOKEN from any relay worker.

RFC 8656 §7.2: an Allocate with EVEN-PORT (R bit set) makes the server hold port + 1 and
return a RESERVATION-TOKEN; a later Allocate carrying that token gets that port. With
``--workers N`` the later Allocate (a new five-tuple) may reach another worker than the one
holding the port. :class:`SharedReservationBook` keeps ``token -> (address, expiry)`` in shared
memory under one lock, so any worker can claim it exactly once; the claiming worker binds the
port beside the holder's socket (both use ``SO_REUSEPORT``; the holder's is connected to
itself, so it never takes a peer's datagram) and the holder closes its socket at expiry.
"""

from __future__ import annotations

import ipaddress
import mmap
import struct
from typing import Protocol

from nat.five_tuple import Address

_ENTRY = struct.Struct("<8sB16sHd")  # token, IP version (0 = free), address, port, expiry


class ReservationBook(Protocol):
    """Where reservation tokens are found (see the module docstring)."""

    def put(self, token: bytes, relay: Address, now: float, expires: float) -> bool:
        """Record ``token`` for ``relay`` until ``expires``; False when there is no room."""
        ...

    def take(self, token: bytes, now: float) -> Address | None:
        """The relay reserved under ``token`` if still valid, removing it (claimed once)."""
        ...


class _Lock(Protocol):
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...


class SharedReservationBook:
    """:class:`ReservationBook` in anonymous shared memory, inherited by forked workers.

    ``entries`` bounds the reservations alive at once (each lives 30 s); beyond it EVEN-PORT's
    R bit gets no token (the Allocate itself still succeeds, without the reservation).
    """

    def __init__(self, lock: _Lock, entries: int = 1024) -> None:
        self._lock = lock
        self._entries = entries
        self._memory = mmap.mmap(-1, entries * _ENTRY.size)

    def put(self, token: bytes, relay: Address, now: float, expires: float) -> bool:
        ip = ipaddress.ip_address(relay[0])
        packed = ip.packed.ljust(16, b"\0")
        self._lock.acquire()
        try:
            for i in range(self._entries):
                offset = i * _ENTRY.size
                _, version, _, _, until = _ENTRY.unpack_from(self._memory, offset)
                if version == 0 or until <= now:  # free, or expired unclaimed
                    _ENTRY.pack_into(
                        self._memory, offset, token, ip.version, packed, relay[1], expires
                    )
                    return True
            return False
        finally:
            self._lock.release()

    def take(self, token: bytes, now: float) -> Address | None:
        self._lock.acquire()
        try:
            for i in range(self._entries):
                offset = i * _ENTRY.size
                found, version, packed, port, until = _ENTRY.unpack_from(self._memory, offset)
                if version and found == token:
                    _ENTRY.pack_into(self._memory, offset, bytes(8), 0, bytes(16), 0, 0.0)
                    if now >= until:
                        return None
                    size = 4 if version == 4 else 16
                    return str(ipaddress.ip_address(packed[:size])), port
            return None
        finally:
            self._lock.release()
