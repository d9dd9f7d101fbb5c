"""The allocation manager: every allocation by five-tuple and by relay address, the quotas,
port reservations, and the expiry schedule of everything with a lifetime.

Like pion/turn's allocation manager, but sans-I/O: expiry happens when the owner calls
:meth:`AllocationManager.expire` with the current time, which returns what expired so the
server core can turn it into actions.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass

from nat.allocation import Allocation
from nat.channel import CHANNEL_COOLDOWN, ChannelBinding
from nat.five_tuple import Address, FiveTuple, Transport
from nat.permission import Permission
from nat.quota import LocalLedger, QuotaLedger
from nat.reservations import ReservationBook

RESERVATION_LIFETIME = 30.0
"""Seconds a port reserved by EVEN-PORT's R bit is held (RFC 8656 §7.2 / RFC 5766 §6.2)."""


@dataclass(slots=True, eq=False)
class Reservation:
    """A relay port held for a later Allocate carrying ``token`` (RESERVATION-TOKEN)."""

    token: bytes
    relay: Address
    expires: float
    closed: bool = False


_Item = Allocation | Permission | ChannelBinding | Reservation


class AllocationManager:
    """Owns the allocations; enforces ``user-quota`` and ``total-quota`` (0 = unlimited)."""

    def __init__(
        self,
        *,
        user_quota: int = 0,
        total_quota: int = 0,
        ledger: QuotaLedger | None = None,
        book: ReservationBook | None = None,
    ) -> None:
        self.user_quota = user_quota
        self.total_quota = total_quota
        # Where the quotas are counted: here, or shared with the other worker processes.
        self.ledger: QuotaLedger = ledger or LocalLedger(user_quota, total_quota)
        # Reservation tokens shared with the other workers (None: only this process's).
        self.book = book
        self.by_five_tuple: dict[FiveTuple, Allocation] = {}
        self.by_relay: dict[Address, Allocation] = {}
        # The same allocations by listener, then by client address: what the I/O layer holds
        # for one listener (see clients_on), so a packet's lookup hashes only its source.
        self._clients: dict[Transport, dict[Address, Allocation]] = {}
        self.reservations: dict[bytes, Reservation] = {}
        self._per_user: Counter[str] = Counter()
        self._pending = 0
        # (deadline, seq, item, owner): at most one entry per item (see _schedule).
        self._heap: list[tuple[float, int, _Item, Allocation | None]] = []
        self._queued: set[int] = set()
        self._seq = itertools.count()

    # -- quotas
    def quota_left(self, quota_name: str) -> bool:
        """Whether one more allocation (counting those being opened) fits the quotas now."""
        return self.ledger.left(quota_name)

    def hold(self, quota_name: str) -> bool:
        """Count an allocation whose relay socket is about to be opened against the quotas,
        if they allow it (one atomic step, also across workers); whether it was counted."""
        if not self.ledger.try_hold(quota_name):
            return False
        self._pending += 1
        self._per_user[quota_name] += 1
        return True

    def release(self, quota_name: str) -> None:
        """Undo :meth:`hold` (the relay could not be opened, or the client left)."""
        self._pending -= 1
        self._uncount(quota_name)

    def _uncount(self, quota_name: str) -> None:
        self.ledger.release(quota_name)
        self._per_user[quota_name] -= 1
        if self._per_user[quota_name] <= 0:
            del self._per_user[quota_name]

    @property
    def users(self) -> int:
        """How many distinct users hold allocations."""
        return len(self._per_user)

    # -- allocations
    def clients_on(self, transport: Transport) -> dict[Address, Allocation]:
        """The allocations of the clients on listener ``transport``, by client address: a live
        view (the same dict for as long as the manager lives), for the I/O layer to hold."""
        clients = self._clients.get(transport)
        if clients is None:
            clients = self._clients[transport] = {}
        return clients

    def add(self, allocation: Allocation) -> None:
        """Register a held allocation now that its relay is open (after :meth:`hold`)."""
        self._pending -= 1
        ft = allocation.five_tuple
        self.by_five_tuple[ft] = allocation
        self.clients_on(ft.transport)[ft.client] = allocation
        for relay in allocation.relays:
            self.by_relay[relay] = allocation
        self.schedule(allocation)

    def remove(self, allocation: Allocation) -> None:
        """Delete ``allocation`` (Refresh 0, expiry, connection loss)."""
        if allocation.closed:
            return
        allocation.closed = True
        ft = allocation.five_tuple
        del self.by_five_tuple[ft]
        del self._clients[ft.transport][ft.client]
        for relay in allocation.relays:
            del self.by_relay[relay]
        self._uncount(allocation.quota_name)

    def reserve(self, token: bytes, relay: Address, now: float) -> Reservation:
        """Hold ``relay`` for :data:`RESERVATION_LIFETIME` seconds under ``token``."""
        reservation = Reservation(token, relay, now + RESERVATION_LIFETIME)
        self.reservations[token] = reservation
        self.schedule(reservation)
        if self.book is not None:
            self.book.put(token, relay, now, reservation.expires)
        return reservation

    def claim(self, token: bytes, now: float) -> Reservation | None:
        """Take the reservation for ``token`` if it is still valid (once: from any worker when
        the book is shared; the one that made it closes its held socket at expiry)."""
        if self.book is not None:
            relay = self.book.take(token, now)
            mine = self.reservations.pop(token, None)
            if mine is not None:
                mine.closed = True  # the service closes its held socket on binding beside it
            if relay is None:
                return None
            return Reservation(token, relay, now, closed=True)
        reservation = self.reservations.get(token)
        if reservation is None or now >= reservation.expires:
            return None
        del self.reservations[token]
        reservation.closed = True
        return reservation

    # -- lifetimes
    def schedule(self, item: _Item, owner: Allocation | None = None) -> None:
        """Make sure ``item`` is looked at when it may expire.

        An item is queued at most once; when its entry comes due and the item was refreshed in
        the meantime, it is re-queued at its new expiry. This keeps the heap bounded by the
        number of live items however often clients refresh.
        """
        key = id(item)
        if key in self._queued:
            return
        self._queued.add(key)
        deadline = (
            item.expires + CHANNEL_COOLDOWN if isinstance(item, ChannelBinding) else item.expires
        )
        heapq.heappush(self._heap, (deadline, next(self._seq), item, owner))

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to do (maybe earlier), or None."""
        return self._heap[0][0] if self._heap else None

    def expire(self, now: float) -> list[Allocation | Reservation]:
        """Drop everything whose lifetime ended by ``now``; return the allocations and
        reservations removed (their relay sockets must be closed)."""
        closed: list[Allocation | Reservation] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, item, owner = heapq.heappop(heap)
            self._queued.discard(id(item))
            if isinstance(item, Allocation):
                if item.closed:
                    continue
                if item.expires > now:
                    self.schedule(item)
                    continue
                self.remove(item)
                closed.append(item)
            elif isinstance(item, Reservation):
                if item.closed:
                    continue
                item.closed = True
                self.reservations.pop(item.token, None)
                closed.append(item)
            elif owner is None or owner.closed:
                continue
            elif isinstance(item, Permission):
                if item.expires > now:
                    self.schedule(item, owner)
                elif owner.permissions.get(item.ip) is item:
                    del owner.permissions[item.ip]
            elif item.reclaimable(now):
                owner.unbind(item)
            else:
                self.schedule(item, owner)
        return closed

    def close_all(self) -> list[Allocation | Reservation]:
        """Remove every allocation and reservation (server shutdown)."""
        closed: list[Allocation | Reservation] = []
        for allocation in list(self.by_five_tuple.values()):
            self.remove(allocation)
            closed.append(allocation)
        for reservation in self.reservations.values():
            reservation.closed = True
            closed.append(reservation)
        self.reservations.clear()
        self._heap.clear()
        self._queued.clear()
        return closed
