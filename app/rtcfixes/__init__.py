"""Every workaround for aiortc 1.16 / aioice 0.13 weaknesses, in one place.

The session calls these; nothing else in PeerCall touches aiortc's or aioice's private attributes.

1. Gathering (:func:`install_gathering`). aioice gathers host, server-reflexive and relayed
   candidates in one call that waits up to 5 s per unreachable server, and aiortc's
   ``setLocalDescription`` awaits it, so a dead STUN server delays every call by 5 s per side.
   We replace the connection's gathering: host candidates are ready at once, STUN/TURN queries run
   in the background with a bounded timeout, and each candidate is reported as it arrives so the
   session can trickle it (RFC 8838). When the signaling cannot trickle, the session awaits the
   background queries (bounded) before it builds the SDP. Optionally only loopback host
   candidates are offered, which aioice never does on its own.
2. Audio jitter buffer (:class:`AudioJitterBuffer`). aiortc's buffer waits for a lost packet until
   16 packets have queued up behind it and then stays 16 deep for the rest of the call (one-way
   latency ~80 ms -> ~280 ms after one loss). Ours skips a hole after a short wait and drops
   the oldest frames whenever it is deeper than its target, so latency comes back down.
3. Private-state readers (:func:`candidate_pairs`, :func:`selected_pair`, ...): the pair list
   and the nominated pair are only reachable through aioice internals; so are arriving RTP
   (:func:`on_rtp`), the DTLS certificates a renegotiated path must keep
   (:func:`certificates`, :func:`use_certificates`) and the jitter buffers.
4. SCTP (:func:`tune_sctp`): RFC 4960's 3 s initial RTO is far too slow for a call's data
   channels under loss.

:data:`PRIVATE_ATTRIBUTES` lists every private name used here, so a canary test can name the
one an upgraded aiortc/aioice no longer has.
"""

from app.rtcfixes.gathering import (
    LOOPBACK_ADDRESSES,
    Gathering,
    ice_connections,
    ice_gatherers,
    install_gathering,
)
from app.rtcfixes.jitter import AudioJitterBuffer, install_audio_jitter_buffers
from app.rtcfixes.readers import (
    candidate_pairs,
    certificates,
    close_quietly,
    jitter_buffer,
    on_inbound,
    on_rtp,
    selected_pair,
    use_certificates,
)
from app.rtcfixes.sctp import tune_sctp
from app.rtcfixes.sdp import strip_end_of_candidates

__all__ = [
    "LOOPBACK_ADDRESSES",
    "AudioJitterBuffer",
    "Gathering",
    "candidate_pairs",
    "certificates",
    "close_quietly",
    "ice_connections",
    "ice_gatherers",
    "install_audio_jitter_buffers",
    "install_gathering",
    "jitter_buffer",
    "on_inbound",
    "on_rtp",
    "selected_pair",
    "strip_end_of_candidates",
    "tune_sctp",
    "use_certificates",
]
