"""SCTP timing for real-time calls (aiortc's association keeps RFC 4960's defaults).

RFC 4960 §6.3.1 starts the retransmission timer at RTO.Initial = 3 s. The chat and control
channels' INIT/COOKIE handshake then needs 3 s per lost packet before it retries, so under 5 %
loss a call waited 10 s for its data channels. RFC 4960 §15 lets an application tune
RTO.Initial; WebRTC stacks use far less than 3 s (Chromium's dcSCTP starts at 0.5 s).
"""

from __future__ import annotations

from aiortc import RTCPeerConnection

#: RTO.Initial for the call's association, in seconds (RTO.Min of 1 s still applies once an
#: RTT has been measured, as aiortc's _update_rto clamps it).
INITIAL_RTO = 0.5


def tune_sctp(pc: RTCPeerConnection, initial_rto: float = INITIAL_RTO) -> bool:
    """Lower the initial RTO of ``pc``'s SCTP association; returns False if it has none yet.

    Call right after the first ``createDataChannel``: aiortc creates the transport there and
    reads ``_rto`` when the handshake's T1 timer starts.
    """
    sctp = pc.sctp
    if sctp is None:
        return False
    sctp._rto = initial_rto
    return True
