"""Every workaround for aiortc 1.16 / aioice 0.13 weaknesses, in one place.

The session calls these; nothing else in PeerCall touches aiortc's or aioice's private attributes.

1. Gathering (:func:`install_gathering`). aioice gathers host, server-reflexive and relayed
   candidates in one call that waits up to 5 s per unreachable server, and aiortc's
   ``setLocalDescription`` awaits it, so a dead STUN server delays every call by 5 s per side;
   and it asks only the first STUN and the first TURN URI of the whole list, so with UDP blocked
   a TURN/TCP URI listed after the UDP one was never tried. We replace the connection's
   gathering: host candidates are ready at once, every STUN and TURN URI (UDP, TCP, TLS) is
   queried in parallel in the background, each under its own time limit, and each candidate is
   reported as it arrives (with its server, transport and mapped address) so the session can
   trickle it (RFC 8838). When the signaling cannot trickle, the session awaits the background
   queries (bounded) before it builds the SDP. Optionally only loopback host candidates are
   offered, which aioice never does on its own.
2. Connectivity checks (:mod:`app.rtcfixes.icechecks`, installed with the gathering): triggered
   checks when the peer's check arrives on a pair still in progress (RFC 8445 §7.3.1.4), the
   highest-priority nominated pair stays selected instead of the last one nominated, and pairs
   ranking above a selected relay keep being checked so a late direct path takes over.
3. Audio jitter buffer (:class:`AudioJitterBuffer`). aiortc's buffer waits for a lost packet until
   16 packets have queued up behind it and then stays 16 deep for the rest of the call (one-way
   latency ~80 ms -> ~280 ms after one loss). Ours skips a hole after a short wait and drops
   the oldest frames whenever it is deeper than its target, so latency comes back down.
4. Bundled remote candidates (:func:`install_bundle_fix`). Chromium writes its candidates only
   in the first bundled m-section; aiortc keeps a shared transport's candidates from the last
   one it parses, so a relay-only offer answered by Chromium got none. Remote descriptions get
   the union in every bundled section (:func:`merge_bundled_candidates`), and trickled
   candidates tagged with any bundled mid reach the shared transport.
5. Private-state readers (:func:`candidate_pairs`, :func:`selected_pair`, ...): the pair list
   and the nominated pair are only reachable through aioice internals; so are arriving RTP
   (:func:`on_rtp`), the DTLS certificates a renegotiated path must keep
   (:func:`certificates`, :func:`use_certificates`) and the jitter buffers.
6. SCTP (:func:`tune_sctp`): RFC 4960's 3 s initial RTO is far too slow for a call's data
   channels under loss.
"""

from app.rtcfixes.gathering import (
    LOOPBACK_ADDRESSES,
    CandidateOrigin,
    Gathering,
    ServerUri,
    candidate_origin,
    ice_connections,
    ice_gatherers,
    install_gathering,
    server_uris,
)
from app.rtcfixes.icechecks import CheckStats, check_stats, pair_priority
from app.rtcfixes.jitter import AudioJitterBuffer, install_audio_jitter_buffers
from app.rtcfixes.readers import (
    SocketTap,
    candidate_pairs,
    certificates,
    close_quietly,
    host_addresses,
    jitter_buffer,
    on_inbound,
    on_rtp,
    selected_pair,
    socket_tap,
    tap_socket,
    tap_sockets,
    use_certificates,
)
from app.rtcfixes.sctp import tune_sctp
from app.rtcfixes.sdp import install_bundle_fix, merge_bundled_candidates, strip_end_of_candidates

__all__ = [
    "LOOPBACK_ADDRESSES",
    "AudioJitterBuffer",
    "CandidateOrigin",
    "CheckStats",
    "Gathering",
    "ServerUri",
    "SocketTap",
    "candidate_origin",
    "candidate_pairs",
    "certificates",
    "check_stats",
    "close_quietly",
    "host_addresses",
    "ice_connections",
    "ice_gatherers",
    "install_audio_jitter_buffers",
    "install_bundle_fix",
    "install_gathering",
    "jitter_buffer",
    "merge_bundled_candidates",
    "on_inbound",
    "on_rtp",
    "pair_priority",
    "selected_pair",
    "server_uris",
    "socket_tap",
    "strip_end_of_candidates",
    "tap_socket",
    "tap_sockets",
    "tune_sctp",
    "use_certificates",
]
