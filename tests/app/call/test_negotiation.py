"""The offer/answer bookkeeping of app.call.negotiation, alone (no sockets, no aiortc)."""

from __future__ import annotations

import pytest
from aioice import Candidate as IceCandidate

from app.call.negotiation import (
    Negotiation,
    check_remote_sdp,
    local_sdp,
    parse_remote_candidate,
    trickle_message,
)
from app.errors import CallError
from signaling.messages import Candidate, EndOfCandidates

HOST = "candidate:1 1 udp 2130706431 192.0.2.10 5000 typ host"
SRFLX = "candidate:2 1 udp 1694498815 198.18.0.7 6000 typ srflx raddr 192.0.2.10 rport 5000"
SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
    f"a=mid:0\r\na={HOST}\r\na={SRFLX}\r\na=end-of-candidates\r\n"
)


def test_trickle_waits_for_the_description_then_goes_out_in_order() -> None:
    n = Negotiation()
    first, second = Candidate(HOST, "0", 0), EndOfCandidates()
    assert n.outgoing(first) is False
    assert n.outgoing(second) is False
    assert n.description_went_out() == [first, second]
    assert n.trickle_queue == []
    # Once the description is out, trickle is sent at once and nothing is queued.
    third = Candidate(SRFLX, "0", 0)
    assert n.outgoing(third) is True
    assert n.description_went_out() == []


def test_remote_candidates_are_held_until_the_description_is_set() -> None:
    n = Negotiation()
    early = [Candidate(HOST, "0", 0), Candidate(SRFLX, "0", 0)]
    for candidate in early:
        n.hold_remote(candidate)
    assert n.take_pending() == early
    assert n.take_pending() == []  # taken once


def test_end_of_candidates_before_the_offer_is_remembered() -> None:
    n = Negotiation()
    assert n.remote_ended is False
    n.hold_end_of_candidates()
    assert n.remote_ended is True


def test_each_remote_candidate_is_taken_once() -> None:
    n = Negotiation()
    parsed = n.new_remote(HOST)
    assert parsed is not None
    assert (parsed.host, parsed.port, parsed.type) == ("192.0.2.10", 5000, "host")
    assert n.new_remote(HOST) is None  # the same again (in the SDP, then trickled)
    # The SDP's candidates that were already trickled are not new.
    assert [c.type for c in n.remote_description(SDP)] == ["srflx"]
    assert n.remote_description(SDP) == []


def test_a_malformed_remote_candidate_is_ignored_not_raised() -> None:
    n = Negotiation()
    assert parse_remote_candidate("candidate:nonsense") is None
    assert n.new_remote("candidate:nonsense") is None
    assert n.remote_seen == set()


def test_trickle_message_carries_the_candidate_on_the_bundled_section() -> None:
    candidate = IceCandidate.from_sdp(HOST.removeprefix("candidate:"))
    message = trickle_message(candidate)
    assert message == Candidate("candidate:" + candidate.to_sdp(), "0", 0)
    parsed = parse_remote_candidate(message.candidate)
    assert parsed is not None
    assert parsed.to_sdp() == candidate.to_sdp()  # a round trip


def test_local_sdp_drops_end_of_candidates_only_while_gathering() -> None:
    assert "end-of-candidates" not in local_sdp(SDP, gathering_pending=True)
    assert HOST in local_sdp(SDP, gathering_pending=True)
    assert local_sdp(SDP, gathering_pending=False) == SDP


def test_a_remote_description_without_media_is_refused() -> None:
    check_remote_sdp("offer", SDP)
    with pytest.raises(CallError, match="the peer's answer was not usable: it describes no media"):
        check_remote_sdp("answer", "v=0\r\ns=-\r\n")
