"""Where ``user-quota`` and ``total-quota`` are counted: in the process, or shared by workers.

The server core asks a ledger to hold one allocation for a user before it opens a relay and
to release it when the allocation ends. :class:`LocalLedger` counts in the process (the
in-process relay of the desktop window, and ``--workers 1``). :class:`SharedLedger` counts in a
small shared-memory table under one lock, so that with ``peercall relay --workers N`` a 486 is
still a 486: the check and the increment are one atomic step across every worker.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections import Counter
from typing import Protocol

from nat.errors import ConfigError


class QuotaLedger(Protocol):
    """Counts allocations per quota name and in total against the configured quotas."""

    def try_hold(self, name: str) -> bool:
        """Count one more allocation for ``name`` if both quotas allow it; whether it did."""
        ...

    def release(self, name: str) -> None:
        """Uncount one allocation of ``name`` (ended, failed, or its client went away)."""
        ...

    def left(self, name: str) -> bool:
        """Whether one more allocation for ``name`` would fit now (not a reservation)."""
        ...


class LocalLedger:
    """In-process counters; 0 for a quota means unlimited."""

    def __init__(self, user_quota: int = 0, total_quota: int = 0) -> None:
        self.user_quota = user_quota
        self.total_quota = total_quota
        self._per_user: Counter[str] = Counter()
        self._total = 0

    def left(self, name: str) -> bool:
        if self.total_quota and self._total >= self.total_quota:
            return False
        return not (self.user_quota and self._per_user[name] >= self.user_quota)

    def try_hold(self, name: str) -> bool:
        if not self.left(name):
            return False
        self._total += 1
        self._per_user[name] += 1
        return True

    def release(self, name: str) -> None:
        self._total -= 1
        self._per_user[name] -= 1
        if self._per_user[name] <= 0:
            del self._per_user[name]


class _Lock(Protocol):
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool: ...

    def release(self) -> None: ...


_SLOT = struct.Struct("<Qq")  # (64-bit hash of the quota name, allocations held), 16 bytes
_HEAD = struct.Struct("<q")  # total allocations held


class SharedLedger:
    """Counters in anonymous shared memory, inherited by forked workers, under ``lock``.

    Users are found by a 64-bit BLAKE2b hash of their quota name in an open-addressing table
    of ``slots`` entries (linear probing); entries whose count fell to 0 are reused for their
    own name and swept out when the table fills. More distinct users holding allocations at
    once than ``slots`` is refused like a full quota (486). ``lock`` is a
    ``multiprocessing.Lock`` of the fork context that starts the workers.
    """

    def __init__(self, user_quota: int, total_quota: int, lock: _Lock, slots: int = 16384) -> None:
        if slots <= 0 or slots & (slots - 1):
            raise ConfigError(f"quota table: {slots} slots is not a power of two")
        self.user_quota = user_quota
        self.total_quota = total_quota
        self._lock = lock
        self._slots = slots
        self._memory = mmap.mmap(-1, _HEAD.size + slots * _SLOT.size)  # MAP_SHARED, zeroed

    @staticmethod
    def _hash(name: str) -> int:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot

    def _find(self, key: int, create: bool) -> int | None:
        """Offset of ``key``'s slot (made if ``create`` and room), else None. Under the lock."""
        memory, mask = self._memory, self._slots - 1
        index = key & mask
        for _ in range(self._slots):
            offset = _HEAD.size + index * _SLOT.size
            found, _ = _SLOT.unpack_from(memory, offset)
            if found == key:
                return offset
            if found == 0:
                if not create:
                    return None
                _SLOT.pack_into(memory, offset, key, 0)
                return offset
            index = (index + 1) & mask
        if create and self._sweep():
            return self._find(key, create)
        return None

    def _sweep(self) -> bool:
        """Drop entries at 0 and re-insert the others; whether any room was made."""
        memory = self._memory
        live = []
        for i in range(self._slots):
            key, count = _SLOT.unpack_from(memory, _HEAD.size + i * _SLOT.size)
            if key and count > 0:
                live.append((key, count))
        if len(live) == self._slots:
            return False
        memory[_HEAD.size :] = bytes(self._slots * _SLOT.size)
        mask = self._slots - 1
        for key, count in live:
            index = key & mask
            while _SLOT.unpack_from(memory, _HEAD.size + index * _SLOT.size)[0]:
                index = (index + 1) & mask
            _SLOT.pack_into(memory, _HEAD.size + index * _SLOT.size, key, count)
        return True

    def _count(self, name: str) -> int:
        offset = self._find(self._hash(name), create=False)
        return 0 if offset is None else _SLOT.unpack_from(self._memory, offset)[1]

    def held(self, name: str) -> int:
        """Allocations ``name`` holds across every worker (0 when user-quota is off)."""
        self._lock.acquire()
        try:
            return self._count(name)
        finally:
            self._lock.release()

    def total(self) -> int:
        """Allocations held across every worker."""
        self._lock.acquire()
        try:
            return int(_HEAD.unpack_from(self._memory, 0)[0])
        finally:
            self._lock.release()

    def left(self, name: str) -> bool:
        self._lock.acquire()
        try:
            total = _HEAD.unpack_from(self._memory, 0)[0]
            if self.total_quota and total >= self.total_quota:
                return False
            return not (self.user_quota and self._count(name) >= self.user_quota)
        finally:
            self._lock.release()

    def try_hold(self, name: str) -> bool:
        self._lock.acquire()
        try:
            memory = self._memory
            total = _HEAD.unpack_from(memory, 0)[0]
            if self.total_quota and total >= self.total_quota:
                return False
            if not self.user_quota:  # no per-user limit: only the total is counted
                _HEAD.pack_into(memory, 0, total + 1)
                return True
            offset = self._find(self._hash(name), create=True)
            if offset is None:
                return False
            key, count = _SLOT.unpack_from(memory, offset)
            if self.user_quota and count >= self.user_quota:
                return False
            _SLOT.pack_into(memory, offset, key, count + 1)
            _HEAD.pack_into(memory, 0, total + 1)
            return True
        finally:
            self._lock.release()

    def release(self, name: str) -> None:
        self._lock.acquire()
        try:
            memory = self._memory
            offset = self._find(self._hash(name), create=False) if self.user_quota else None
            if offset is not None:
                key, count = _SLOT.unpack_from(memory, offset)
                _SLOT.pack_into(memory, offset, key, max(0, count - 1))
            _HEAD.pack_into(memory, 0, max(0, _HEAD.unpack_from(memory, 0)[0] - 1))
        finally:
            self._lock.release()
