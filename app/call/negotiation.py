"""Offer/answer bookkeeping of one peer connection, apart from the connection itself.

What a path needs between "make an offer" and "both descriptions set" (RFC 8829 JSEP, RFC 8838
trickle ICE): our candidates are held until our description has gone out, the peer's until
its description is set, each remote candidate is taken once, and end-of-candidates is
remembered when it arrives early. No sockets and no aiortc here: :class:`CallSession` feeds in
what happens and does what this returns, so the rules are testable alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aioice import Candidate as IceCandidate

from app import rtcfixes
from app.call.iceview import sdp_candidates
from app.errors import CallError
from signaling.messages import Candidate, Message

logger = logging.getLogger(__name__)

__all__ = [
    "Negotiation",
    "check_remote_sdp",
    "local_sdp",
    "parse_remote_candidate",
    "trickle_message",
]


def trickle_message(candidate: IceCandidate) -> Candidate:
    """The signaling message that trickles one local candidate (RFC 8840 §4.4: a
    ``candidate:`` attribute with its m-section; everything is bundled on the first)."""
    return Candidate("candidate:" + candidate.to_sdp(), "0", 0)


def local_sdp(sdp: str, *, gathering_pending: bool) -> str:
    """Our description as sent: while gathering still runs it must not claim
    end-of-candidates (RFC 8840 §4.4), or the peer stops waiting for the rest."""
    return rtcfixes.strip_end_of_candidates(sdp) if gathering_pending else sdp


def check_remote_sdp(kind: str, sdp: str) -> None:
    """Refuse a remote description with no m-section: aiortc would accept it and the call
    would wait for media that can never come."""
    if "\nm=" not in sdp:
        raise CallError(f"the peer's {kind} was not usable: it describes no media")


def parse_remote_candidate(value: str) -> IceCandidate | None:
    """A remote ``candidate:`` value parsed, or None (logged) when it is malformed."""
    try:
        return IceCandidate.from_sdp(value.removeprefix("candidate:"))
    except ValueError:
        logger.info("ignoring malformed remote candidate %r", value)
        return None


@dataclass
class Negotiation:
    """The signaling state of one peer connection (a restarted path starts a fresh one)."""

    description_sent: bool = False
    trickle_queue: list[Message] = field(default_factory=list)
    pending_remote: list[Candidate] = field(default_factory=list)
    remote_seen: set[str] = field(default_factory=set)
    remote_ended: bool = False  # end-of-candidates came before the offer was taken

    # -- ours -------------------------------------------------------------------------

    def outgoing(self, message: Message) -> bool:
        """A trickle message to send: True to send it now, False when it was queued because
        our description has not gone out yet (a candidate must not precede it)."""
        if self.description_sent:
            return True
        self.trickle_queue.append(message)
        return False

    def description_went_out(self) -> list[Message]:
        """Our description was sent: from now on trickle goes straight out; returns what was
        held meanwhile, in order."""
        self.description_sent = True
        queued, self.trickle_queue = self.trickle_queue, []
        return queued

    # -- theirs -----------------------------------------------------------------------

    def hold_remote(self, candidate: Candidate) -> None:
        """Keep a candidate that came before the remote description (RFC 8838 §8)."""
        self.pending_remote.append(candidate)

    def hold_end_of_candidates(self) -> None:
        """End-of-candidates came while it rang: applied once the offer is."""
        self.remote_ended = True

    def take_pending(self) -> list[Candidate]:
        """The held candidates, once the remote description is set; clears them."""
        pending, self.pending_remote = self.pending_remote, []
        return pending

    def new_remote(self, value: str) -> IceCandidate | None:
        """A remote candidate not seen before, parsed; None for a repeat or a malformed one
        (one arrives both in the SDP and trickled, or twice over two channels)."""
        if value in self.remote_seen:
            return None
        parsed = parse_remote_candidate(value)
        if parsed is None:
            return None
        self.remote_seen.add(value)
        return parsed

    def remote_description(self, sdp: str) -> list[IceCandidate]:
        """The candidates a remote description carries that were not seen before."""
        return [c for c in self._new(sdp_candidates(sdp)) if c is not None]

    def _new(self, values: Iterable[str]) -> list[IceCandidate | None]:
        return [self.new_remote(value) for value in values]
