"""SDP rewrites aiortc needs: around trickle ICE, and for candidates of bundled m-sections."""

from __future__ import annotations

import logging
from typing import Any

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCSessionDescription

logger = logging.getLogger(__name__)

_END = "a=end-of-candidates"


def strip_end_of_candidates(sdp: str) -> str:
    """Remove ``a=end-of-candidates`` (RFC 8840 §4.1) while candidates are still to be trickled.

    aiortc marks gathering complete as soon as our replacement returns with host candidates;
    the peer must not take that as the last word.
    """
    lines = sdp.split("\r\n")
    return "\r\n".join(line for line in lines if line != _END)


def _bundle_mids(session_lines: list[str]) -> list[str]:
    """The mids of the first ``a=group:BUNDLE`` line (RFC 9143 §7.1), in order."""
    for line in session_lines:
        if line.startswith("a=group:BUNDLE"):
            return line.split()[1:]
    return []


def merge_bundled_candidates(sdp: str) -> str:
    """Give every m-section of the BUNDLE group the candidates of all of them.

    With BUNDLE all m-sections share one transport, so their candidates belong to it
    (RFC 9143 §7.1: the candidates of the bundled m-sections are those of the shared transport).
    Chromium writes them only in the first bundled m-section; aiortc 1.16 keeps, for a shared
    transport, only the candidates of the *last* m-section it parsed
    (``iceCandidates[iceTransport] = media``), so a PeerCall offer answered by Chromium ended up
    with no remote candidates at all. Copying the union into each bundled section makes the
    result independent of which section aiortc reads. ``a=end-of-candidates`` is copied too when
    any bundled section has it. Sections outside the group and the line order within each section
    are kept; an SDP without a BUNDLE group is returned unchanged.
    """
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if not starts:
        return sdp
    mids = set(_bundle_mids(lines[: starts[0]]))
    if not mids:
        return sdp
    bounds = list(zip(starts, [*starts[1:], len(lines)], strict=True))
    sections = [lines[a:b] for a, b in bounds]

    def mid_of(section: list[str]) -> str | None:
        return next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)

    bundled = [i for i, s in enumerate(sections) if mid_of(s) in mids]
    union: list[str] = []
    ended = False
    for i in bundled:
        for line in sections[i]:
            if line.startswith("a=candidate:") and line not in union:
                union.append(line)
            ended = ended or line == _END
    if not union and not ended:
        return sdp
    for i in bundled:
        section = sections[i]
        # A trailing empty string is the final newline of the SDP: keep it last.
        tail = [section.pop()] if section and section[-1] == "" else []
        section.extend(line for line in union if line not in section)
        if ended and _END not in section:
            section.append(_END)
        section.extend(tail)
    merged = lines[: starts[0]] + [line for s in sections for line in s]
    return newline.join(merged)


def install_bundle_fix(pc: RTCPeerConnection) -> None:
    """Make remote candidates of any bundled m-section reach the shared ICE transport.

    Remote descriptions go through :func:`merge_bundled_candidates`. A trickled candidate whose
    ``sdpMid`` names a bundled m-section other than the one aiortc keeps the transport on is
    redirected to that one: aiortc 1.16's ``addIceCandidate`` drops candidates for a transceiver
    it has marked ``_bundled`` (RFC 8838 §9 lets the peer tag them with any bundled mid).
    """
    set_remote = pc.setRemoteDescription
    add_candidate = pc.addIceCandidate

    async def set_remote_description(sessionDescription: RTCSessionDescription) -> None:
        merged = merge_bundled_candidates(sessionDescription.sdp)
        await set_remote(RTCSessionDescription(sdp=merged, type=sessionDescription.type))

    async def add_ice_candidate(candidate: RTCIceCandidate | None) -> None:
        if candidate is not None:
            _retarget(pc, candidate)
        await add_candidate(candidate)

    pc.setRemoteDescription = set_remote_description  # type: ignore[method-assign]
    pc.addIceCandidate = add_ice_candidate  # type: ignore[method-assign]


def _retarget(pc: RTCPeerConnection, candidate: RTCIceCandidate) -> None:
    """Point a candidate tagged with a bundled mid at the m-section owning the transport."""
    # Typed as always set, but None before the first setRemoteDescription.
    sdp: str | None = getattr(pc.remoteDescription, "sdp", None)
    if sdp is None:
        return
    mids = _bundle_mids(sdp.splitlines())
    if candidate.sdpMid is None and candidate.sdpMLineIndex is not None:
        mline_mids = [line[6:].strip() for line in sdp.splitlines() if line.startswith("a=mid:")]
        if candidate.sdpMLineIndex < len(mline_mids):
            candidate.sdpMid = mline_mids[candidate.sdpMLineIndex]
    if candidate.sdpMid not in mids:
        return
    owner = _transport_owner(pc)
    if owner is not None and owner[0] in mids and owner[0] != candidate.sdpMid:
        logger.debug("bundled candidate for mid %s goes to mid %s", candidate.sdpMid, owner[0])
        candidate.sdpMid, candidate.sdpMLineIndex = owner


def _transport_owner(pc: RTCPeerConnection) -> tuple[str, int | None] | None:
    """(mid, m-line index) of the unbundled transceiver or SCTP transport: the one aiortc
    hands candidates to (``addIceCandidate`` skips those marked ``_bundled``)."""
    for transceiver in pc.getTransceivers():
        if not transceiver._bundled and transceiver.mid is not None:
            index: Any = transceiver._get_mline_index()
            return transceiver.mid, index
    sctp = pc.sctp
    if sctp is not None and not sctp._bundled and sctp.mid is not None:
        return sctp.mid, pc._RTCPeerConnection__sctp_mline_index  # type: ignore[attr-defined]
    return None
