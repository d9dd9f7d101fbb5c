"""Connectivity-check fixes for aioice 0.13 (see the package docstring, item 2).

- **Triggered checks** (RFC 8445 §7.3.1.4). When the peer's check arrives on a pair whose own
  check is in progress, aioice does nothing and the pair waits for its 500 ms retransmission;
  through a NAT that dropped our first check, that is the whole set-up time. We send the check
  again at once. It goes out as an early retransmission of the in-progress request (same
  transaction) rather than a new transaction, so a response to the first copy, if it was not
  lost, still completes the check and no round trip is wasted.
- **The best nominated pair carries media** (RFC 8445 §6.1.2.6 orders pairs by priority; with
  aggressive nomination the controlled agent uses the highest-priority nominated pair, RFC 5245
  §8.1.1.2). aioice replaces the selected pair by every later nominated success, so a relay pair
  succeeding 1 ms after the direct one took over. A later nomination now replaces the selected
  pair only if its priority is higher.
- **A better pair is still found after a worse one was nominated.** aioice stops every check
  once a pair is nominated. After ``connect()`` returns we resume the checks of pairs that rank
  above the selected one, so a direct path that answers late still replaces a relay. The
  switch only changes where ``sendto`` sends: the DTLS/SRTP session above is unchanged.
  Remote candidates trickled after that are checked too when they could beat the selected pair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aioice import Candidate, stun
from aioice.ice import CandidatePair, Connection, StunProtocol, candidate_pair_priority

logger = logging.getLogger(__name__)

_State = CandidatePair.State
_PENDING = (_State.FROZEN, _State.WAITING, _State.IN_PROGRESS)


@dataclass
class CheckStats:
    """What the fixes did on one connection (for tests and benchmarks)."""

    triggered: int = 0  # checks sent at once because the peer's check came first
    kept_better: int = 0  # later nominations that did not replace a higher-priority pair
    switched: int = 0  # times the selected pair moved to a higher-priority one
    resumed: int = 0  # checks resumed after connect() for pairs ranking above the selected
    # Called after the selected pair moved to a better one: the session reports the new path at
    # once instead of at its next poll (a short call could otherwise end before it shows).
    on_switch: Callable[[], None] | None = field(default=None, compare=False, repr=False)


class CheckProtocol(StunProtocol):
    """aioice's socket protocol, remembering each in-flight check so it can be sent again now."""

    def __init__(self, receiver: Connection) -> None:
        super().__init__(receiver)
        self._in_flight: dict[tuple[str, int], stun.Message] = {}

    async def request(
        self,
        request: stun.Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[stun.Message, tuple[str, int]]:
        # Consent checks (retransmissions=0) and STUN server queries are not pair checks.
        is_check = "USERNAME" in request.attributes and retransmissions is None
        if is_check:
            self._in_flight[addr] = request
        try:
            return await super().request(request, addr, integrity_key, retransmissions)
        finally:
            if self._in_flight.get(addr) is request:
                del self._in_flight[addr]

    def resend(self, addr: tuple[str, int]) -> bool:
        """Send the in-flight check to ``addr`` again now; False if there is none."""
        request = self._in_flight.get(addr)
        if request is None:
            return False
        self.send_stun(request, addr)
        return True


def pair_priority(conn: Connection, pair: CandidatePair) -> int:
    """RFC 8445 §6.1.2.3 pair priority, as this agent ranks it."""
    return candidate_pair_priority(
        pair.local_candidate, pair.remote_candidate, conn.ice_controlling
    )


def check_stats(conn: Connection) -> CheckStats:
    """The counters of :func:`install_check_fixes` on ``conn`` (zeros if not installed)."""
    stats: CheckStats | None = getattr(conn, "_peercall_check_stats", None)
    return stats if stats is not None else CheckStats()


def install_check_fixes(
    conn: Connection, *, triggered_checks: bool = True, best_pair: bool = True
) -> CheckStats:
    """Patch one aioice connection (before ``connect()``); returns its live counters."""
    stats = CheckStats()
    conn._peercall_check_stats = stats  # type: ignore[attr-defined]
    if triggered_checks:
        _install_triggered(conn, stats)
    if best_pair:
        _install_best_pair(conn, stats)
    return stats


def _find_pair(conn: Connection, protocol: StunProtocol, addr: tuple[str, int]) -> Any:
    for remote in conn._remote_candidates:
        if remote._network_host == addr[0] and remote.port == addr[1]:
            return conn._find_pair(protocol, remote)
    return None


def _ranks_above_selected(conn: Connection, pair: CandidatePair) -> bool:
    selected = conn._nominated.get(pair.component)
    return selected is None or pair_priority(conn, pair) > pair_priority(conn, selected)


def _restart(conn: Connection, pair: CandidatePair) -> None:
    """Check ``pair`` again whose check task is gone (aioice cancelled it on completion)."""
    pair.task = None
    conn.check_state(pair, _State.WAITING)
    conn.check_start_task(pair)


def _install_triggered(conn: Connection, stats: CheckStats) -> None:
    check_incoming = conn.check_incoming

    def triggered(message: stun.Message, addr: tuple[str, int], protocol: StunProtocol) -> None:
        check_incoming(message, addr, protocol)  # aioice triggers Frozen/Waiting/Failed pairs
        pair = _find_pair(conn, protocol, addr)
        if pair is None or pair.state != _State.IN_PROGRESS:
            return
        if pair.task is None or pair.task.done():
            # In progress on paper only: connect() cancelled the check when another pair was
            # nominated. Worth a new check only if this path would beat the selected one.
            if _ranks_above_selected(conn, pair):
                stats.triggered += 1
                _restart(conn, pair)
            return
        if isinstance(pair.protocol, CheckProtocol) and pair.protocol.resend(pair.remote_addr):
            stats.triggered += 1
            logger.debug("%s triggered check %s", conn, pair)

    conn.check_incoming = triggered  # type: ignore[method-assign]


def _install_best_pair(conn: Connection, stats: CheckStats) -> None:
    check_complete = conn.check_complete
    connect = conn.connect

    def keep_best(pair: CandidatePair) -> None:
        before = conn._nominated.get(pair.component)
        check_complete(pair)
        after = conn._nominated.get(pair.component)
        if before is None or before is after or after is not pair:
            return
        if before.state == _State.SUCCEEDED and pair_priority(conn, before) > pair_priority(
            conn, pair
        ):
            conn._nominated[pair.component] = before
            stats.kept_better += 1
            logger.info("%s keeps %s over the lower-priority %s", conn, before, pair)
        else:
            stats.switched += 1
            logger.info("%s switches from %s to the better %s", conn, before, pair)
            if stats.on_switch is not None:
                try:
                    stats.on_switch()
                except Exception:  # a reporting bug must not break aioice's check bookkeeping
                    logger.exception("on_switch callback failed")

    add_remote_candidate = conn._add_remote_candidate
    looking_further = False

    def add_and_check(candidate: Candidate, network_host: str) -> None:
        add_remote_candidate(candidate, network_host)
        # aioice pairs a candidate trickled after completion but never checks it (its check
        # loop has ended). A late server-reflexive candidate is often the only way to a direct
        # path through the peer's NAT (our check opens our own NAT for theirs), so check the
        # pairs that would beat the selected one, as during connect() (RFC 8838 §10).
        if looking_further:
            _resume_better_checks(conn, stats)

    async def connect_then_look_further() -> None:
        nonlocal looking_further
        await connect()
        # connect() has only asked the pending checks to cancel: let them finish doing so (one
        # loop turn). A check started since, e.g. a triggered one, is not waited for.
        cancelled = [
            p.task
            for p in conn._check_list
            if p.task is not None and not p.task.done() and p.task.cancelling()
        ]
        if cancelled:
            await asyncio.wait(cancelled, timeout=1.0)
        looking_further = True
        _resume_better_checks(conn, stats)

    conn.check_complete = keep_best  # type: ignore[method-assign]
    conn.connect = connect_then_look_further  # type: ignore[method-assign]
    conn._add_remote_candidate = add_and_check  # type: ignore[method-assign, assignment]


def _resume_better_checks(conn: Connection, stats: CheckStats) -> None:
    """Resume checks of pairs ranking above the selected one (aioice dropped or cancelled them)."""
    if conn._closing:
        return
    known = {id(p) for p in conn._check_list}
    for remote in conn._remote_candidates:
        conn._pair_remote_candidate(remote)  # re-forms the pairs aioice removed on nomination
    for pair in list(conn._check_list):
        above = _ranks_above_selected(conn, pair)
        if id(pair) not in known and not above:
            conn._check_list.remove(pair)  # only the re-formed pairs that could win stay
            continue
        if above and pair.state in _PENDING and (pair.task is None or pair.task.done()):
            stats.resumed += 1
            _restart(conn, pair)
    conn.sort_check_list()
