"""The private aiortc/aioice names :mod:`app.rtcfixes` relies on, checked on live objects.

An upgrade that renames one of these would break a workaround silently (a ``getattr`` with a
default, a patched method nobody calls). :func:`missing` builds the real objects and names
every attribute that is gone, so a test fails with the attribute's name.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: (where, attribute). "where" names the object :func:`missing` builds.
PRIVATE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    # readers.py / the session
    ("RTCPeerConnection", "_RTCPeerConnection__certificates"),
    ("RTCPeerConnection", "_RTCPeerConnection__sctp_mline_index"),
    ("RTCRtpReceiver", "_RTCRtpReceiver__jitter_buffer"),
    ("RTCRtpReceiver", "_handle_rtp_packet"),
    ("RTCRtpTransceiver", "_get_mline_index"),
    ("RTCRtpTransceiver", "_bundled"),
    ("RTCSctpTransport", "_rto"),
    ("RTCSctpTransport", "_bundled"),
    ("RTCIceGatherer", "_connection"),
    # gathering.py / icechecks.py (aioice's Connection)
    ("Connection", "_check_list"),
    ("Connection", "_nominated"),
    ("Connection", "_protocols"),
    ("Connection", "_remote_candidates"),
    ("Connection", "_local_candidates"),
    ("Connection", "_local_candidates_start"),
    ("Connection", "_local_candidates_end"),
    ("Connection", "_early_checks_done"),
    ("Connection", "_components"),
    ("Connection", "_closed"),
    ("Connection", "_closing"),
    ("Connection", "_transport_policy"),
    ("Connection", "_use_ipv4"),
    ("Connection", "_use_ipv6"),
    ("Connection", "_pair_remote_candidate"),
    ("Connection", "_add_remote_candidate"),
    ("Connection", "_find_pair"),
    ("Candidate", "_network_host"),
)


async def _objects() -> dict[str, Any]:
    from aioice import Candidate
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("audio")
    pc.createDataChannel("canary", negotiated=True, id=0)
    gatherer = transceiver.receiver.transport.transport.iceGatherer
    # aioice sets _network_host on the copy it keeps of a remote candidate.
    await gatherer._connection.add_remote_candidate(
        Candidate.from_sdp("1 1 udp 2130706431 192.0.2.1 9 typ host")
    )
    remote = gatherer._connection._remote_candidates
    candidate = remote[0] if remote else None
    return {
        "RTCPeerConnection": pc,
        "RTCRtpReceiver": transceiver.receiver,
        "RTCRtpTransceiver": transceiver,
        "RTCSctpTransport": pc.sctp,
        "RTCIceGatherer": gatherer,
        "Connection": gatherer._connection,
        "Candidate": candidate,
    }


async def missing() -> list[str]:
    """``where.attribute`` for every private name the installed libraries lack."""
    objects = await _objects()
    gone = [
        f"{where}.{name}"
        for where, name in PRIVATE_ATTRIBUTES
        if objects[where] is None or not hasattr(objects[where], name)
    ]
    await objects["RTCPeerConnection"].close()
    await asyncio.sleep(0)
    return gone
