"""Canary: the private aiortc/aioice names the ICE fixes rely on still exist.

An upgrade that renames one fails here, naming it, instead of as a call that no longer connects.
"""

from __future__ import annotations

import inspect

from aioice import Candidate
from aioice.ice import CandidatePair, Connection, StunProtocol
from aioice.turn import TurnTransport
from aiortc import RTCPeerConnection

# (what, attribute) for gathering.py, icechecks.py and sdp.py.
CONNECTION = (
    "_check_list", "_check_list_done", "_closed", "_closing", "_components",
    "_early_checks_done", "_find_pair", "_local_candidates", "_local_candidates_end",
    "_local_candidates_start", "_nominated", "_pair_remote_candidate", "_protocols",
    "_remote_candidates", "_transport_policy", "_use_ipv4", "_use_ipv6", "check_complete",
    "check_incoming", "check_start_task", "check_state", "connect", "gather_candidates",
    "sort_check_list", "stun_server", "turn_server", "turn_ssl", "turn_transport",
)  # fmt: skip


async def test_connection_has_every_name_the_fixes_use() -> None:
    conn = Connection(ice_controlling=True)
    missing = [name for name in CONNECTION if not hasattr(conn, name)]
    assert missing == []


async def test_pair_candidate_and_protocol_names() -> None:
    candidate = Candidate("f", 1, "udp", 1, "127.0.0.1", 9, "host")
    assert hasattr(candidate, "_network_host")
    protocol = StunProtocol(Connection(ice_controlling=True))
    protocol.local_candidate = candidate
    pair = CandidatePair(protocol, candidate)
    for name in ("task", "state", "nominated", "remote_addr", "local_candidate", "component"):
        assert hasattr(pair, name), name
    # CheckProtocol overrides request() with this signature.
    params = list(inspect.signature(StunProtocol.request).parameters)
    assert params == ["self", "request", "addr", "integrity_key", "retransmissions"]
    assert "related_address" in inspect.getsource(TurnTransport.get_extra_info)


async def test_peer_connection_bundle_names() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio")
        pc.createDataChannel("chat", negotiated=True, id=0)
        assert hasattr(transceiver, "_bundled")
        assert hasattr(transceiver, "_get_mline_index")
        assert pc.sctp is None or hasattr(pc.sctp, "_bundled")
        assert hasattr(pc, "_RTCPeerConnection__sctp_mline_index")
        gatherer = transceiver.receiver.transport.transport.iceGatherer
        assert isinstance(gatherer._connection, Connection)
    finally:
        await pc.close()
