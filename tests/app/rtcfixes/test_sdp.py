"""Bundled candidates (issue 11): the SDP shape Chromium produces, rewritten and applied."""

from __future__ import annotations

import pytest
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy

from app.rtcfixes import ice_connections, install_bundle_fix, merge_bundled_candidates

# Chromium's answer to an audio + data channel offer, as its localDescription reads after
# gathering relay candidates (iceTransportPolicy "relay"): every a=candidate line sits in the
# first bundled m-section, the m=application section has none.
CHROMIUM_ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 3019285843925362213 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS 5f3c8b1e-6a0d-4a57-9d4b-1f3f0e6c2a71",
        "m=audio 40211 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 127.0.0.1",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:2157334355 1 udp 41885439 127.0.0.1 40211 typ relay raddr 0.0.0.0"
        " rport 0 generation 0 network-id 1",
        "a=candidate:2157334356 1 udp 8331007 127.0.0.1 40213 typ relay raddr 0.0.0.0"
        " rport 0 generation 0 network-id 1",
        "a=ice-ufrag:9Ynm",
        "a=ice-pwd:bWxZ6dBnJxX3rY1vHk5Yk0Ah",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:"
        "1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
        "a=setup:active",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendrecv",
        "a=msid:5f3c8b1e-6a0d-4a57-9d4b-1f3f0e6c2a71 0a6e4c36-2d5b-4d55-8c43-5b1e1b3b6f0e",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:1396245530 cname:lRkUAfSDuAW1Ff1c",
        "a=ssrc:1396245530 msid:5f3c8b1e-6a0d-4a57-9d4b-1f3f0e6c2a71"
        " 0a6e4c36-2d5b-4d55-8c43-5b1e1b3b6f0e",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:9Ynm",
        "a=ice-pwd:bWxZ6dBnJxX3rY1vHk5Yk0Ah",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:"
        "1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
        "a=setup:active",
        "a=mid:1",
        "a=sctp-port:5000",
        "a=max-message-size:262144",
        "",
    ]
)


def candidate_lines(section: str) -> list[str]:
    return [line for line in section.split("\r\n") if line.startswith("a=candidate:")]


def test_merge_copies_first_section_candidates_into_every_bundled_section() -> None:
    merged = merge_bundled_candidates(CHROMIUM_ANSWER)
    _head, audio, application = merged.split("\r\nm=")
    assert candidate_lines(audio) == candidate_lines(CHROMIUM_ANSWER)
    assert candidate_lines(application) == candidate_lines(CHROMIUM_ANSWER)
    assert merged.endswith(
        "a=max-message-size:262144\r\n" + "\r\n".join(candidate_lines(CHROMIUM_ANSWER)) + "\r\n"
    )
    assert merge_bundled_candidates(merged) == merged  # idempotent


def test_merge_copies_end_of_candidates_and_unions_both_ways() -> None:
    sdp = "\n".join(
        [
            "v=0",
            "a=group:BUNDLE a b",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0",
            "a=mid:a",
            "a=candidate:1 1 udp 10 127.0.0.1 1000 typ host",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "a=mid:b",
            "a=candidate:2 1 udp 5 127.0.0.1 2000 typ relay raddr 0.0.0.0 rport 0",
            "a=end-of-candidates",
            "m=video 0 UDP/TLS/RTP/SAVPF 96",
            "a=mid:c",
        ]
    )
    merged = merge_bundled_candidates(sdp).split("\nm=")
    for section in merged[1:3]:
        assert "a=candidate:1 1 udp 10 127.0.0.1 1000 typ host" in section
        assert "typ relay" in section
        assert section.count("a=end-of-candidates") == 1
    assert "a=candidate" not in merged[3]  # not in the group: untouched


def test_merge_leaves_an_sdp_without_bundle_alone() -> None:
    sdp = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"
    assert merge_bundled_candidates(sdp) == sdp


def relay_only_offerer() -> RTCPeerConnection:
    """A PeerCall-shaped relay-only offerer (audio + negotiated chat) with no TURN server.

    It gathers no local candidate, so aiortc never starts checks: the test sends nothing.
    """
    pc = RTCPeerConnection(
        RTCConfiguration(
            iceServers=[],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY,
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
    )
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("chat", negotiated=True, id=0)
    return pc


async def remote_hosts_after_answer(fix: bool) -> list[tuple[str, int]]:
    pc = relay_only_offerer()
    try:
        if fix:
            install_bundle_fix(pc)
        await pc.setLocalDescription(await pc.createOffer())
        await pc.setRemoteDescription(RTCSessionDescription(sdp=CHROMIUM_ANSWER, type="answer"))
        (conn,) = ice_connections(pc)
        return sorted((c.host, c.port) for c in conn.remote_candidates)
    finally:
        await pc.close()


async def test_aiortc_alone_loses_chromium_candidates() -> None:
    # The bug this module works around (if aiortc fixes it, the fix can go).
    assert await remote_hosts_after_answer(fix=False) == []


async def test_chromium_answer_candidates_reach_the_shared_transport() -> None:
    assert await remote_hosts_after_answer(fix=True) == [("127.0.0.1", 40211), ("127.0.0.1", 40213)]


@pytest.mark.parametrize(
    ("mid", "index"), [("1", 1), (None, 1), ("0", 0)], ids=["mid", "mline-index", "owner"]
)
async def test_trickled_candidate_for_a_bundled_mid_reaches_the_shared_transport(
    mid: str | None, index: int
) -> None:
    pc = relay_only_offerer()
    try:
        install_bundle_fix(pc)
        await pc.setLocalDescription(await pc.createOffer())
        no_candidates = "\r\n".join(
            line for line in CHROMIUM_ANSWER.split("\r\n") if not line.startswith("a=candidate:")
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=no_candidates, type="answer"))
        # Tagged with the data channel's m-section (mid "1", index 1), which aiortc has marked
        # bundled, by mid or by index only; or with the audio section that owns the transport.
        await pc.addIceCandidate(
            RTCIceCandidate(
                component=1, foundation="9", ip="127.0.0.1", port=40300, priority=5,
                protocol="udp", type="relay", sdpMid=mid, sdpMLineIndex=index,
            )
        )  # fmt: skip
        (conn,) = ice_connections(pc)
        assert [(c.host, c.port) for c in conn.remote_candidates] == [("127.0.0.1", 40300)]
    finally:
        await pc.close()
