"""stats.sample: a pure function of (report, previous counters, now); no sockets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.call import stats
from app.rtcfixes import socket_tap, tap_socket


def test_stats_sample_converts_rtp_jitter_units_to_milliseconds() -> None:
    # RFC 3550 jitter comes in RTP timestamp units; Opus clocks at 48 kHz, so 480 units = 10 ms.
    from datetime import UTC, datetime

    from aiortc.stats import RTCInboundRtpStreamStats

    stat = RTCInboundRtpStreamStats(
        timestamp=datetime.now(UTC),
        type="inbound-rtp",
        id="in-audio",
        ssrc=1,
        kind="audio",
        transportId="t",
        packetsReceived=100,
        packetsLost=2,
        jitter=480,
    )
    sample, _ = stats.sample({"in-audio": stat}, None, 1.0)
    assert sample.jitter_ms == pytest.approx(10.0)
    assert sample.packets_lost == 2


def test_stats_sample_converts_rtcp_fraction_lost_to_a_fraction() -> None:
    # RFC 3550 §6.4.1: the receiver report's fraction lost is 8-bit fixed point (x/256).
    from datetime import UTC, datetime

    from aiortc.stats import RTCRemoteInboundRtpStreamStats

    stat = RTCRemoteInboundRtpStreamStats(
        timestamp=datetime.now(UTC),
        type="remote-inbound-rtp",
        id="remote-in-audio",
        ssrc=1,
        kind="audio",
        transportId="t",
        packetsReceived=95,
        packetsLost=5,
        jitter=0,
        roundTripTime=0.05,
        fractionLost=64,
    )
    sample, _ = stats.sample({"remote-in-audio": stat}, None, 1.0)
    assert sample.fraction_lost == pytest.approx(0.25)
    assert sample.rtt_ms == pytest.approx(50.0)


def test_bit_rates_come_from_two_reports() -> None:
    def report(bytes_in: int, bytes_out: int) -> dict[str, object]:
        transport = SimpleNamespace(type="transport", bytesReceived=bytes_in, bytesSent=bytes_out)
        return {"t": transport}

    first, counters = stats.sample(report(1000, 2000), None, 10.0)
    assert first.bitrate_in_kbps is None
    second, _ = stats.sample(report(126_000, 4000), counters, 11.0)
    assert second.bitrate_in_kbps == pytest.approx(1000.0)  # 125 000 bytes in 1 s
    assert second.bitrate_out_kbps == pytest.approx(16.0)
    assert second.at == 11.0


class _Socket:
    """Stands in for an aioice StunProtocol: records what goes out and what is delivered."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.delivered: list[bytes] = []

    def send_stun(self, message: object, addr: tuple[str, int]) -> None:
        self.sent.append(message)

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.delivered.append(data)


def _binding(klass: Any, tid: bytes) -> Any:
    from aioice import stun

    return stun.Message(message_method=stun.Method.BINDING, message_class=klass, transaction_id=tid)


def test_stun_kind_reads_class_method_and_transaction_of_stun_only() -> None:
    from aioice import stun

    request = bytes(_binding(stun.Class.REQUEST, b"A" * 12))
    response = bytes(_binding(stun.Class.RESPONSE, b"B" * 12))
    assert stats.stun_kind(request) == (0, 1, b"A" * 12)
    assert stats.stun_kind(response) == (2, 1, b"B" * 12)
    assert stats.stun_kind(b"\x80" + bytes(30)) is None  # RTP (RFC 7983: 128..191)
    assert stats.stun_kind(b"\x16" + bytes(30)) is None  # DTLS (20..63)


def test_check_counter_counts_checks_retransmissions_rtt_and_bytes() -> None:
    import asyncio

    from aioice import stun

    now = [10.0]
    socket = _Socket()
    counter = stats.CheckCounter(clock=lambda: now[0])
    tap_socket(socket, counter)
    peer, other = ("192.0.2.7", 5000), ("192.0.2.8", 6000)
    first, second = _binding(stun.Class.REQUEST, b"1" * 12), _binding(stun.Class.REQUEST, b"2" * 12)
    socket.send_stun(first, peer)
    now[0] = 10.020
    socket.datagram_received(bytes(_binding(stun.Class.RESPONSE, b"1" * 12)), peer)
    # The second check is retransmitted once before its answer: no RTT sample (Karn).
    socket.send_stun(second, peer)
    socket.send_stun(second, peer)
    now[0] = 11.0
    socket.datagram_received(bytes(_binding(stun.Class.RESPONSE, b"2" * 12)), peer)
    # The peer's check, our answer, then media both ways.
    socket.datagram_received(bytes(_binding(stun.Class.REQUEST, b"3" * 12)), peer)
    socket.send_stun(_binding(stun.Class.RESPONSE, b"3" * 12), peer)
    asyncio.run(socket.send_data(b"\x80" + bytes(99), peer))
    socket.datagram_received(b"\x80" + bytes(149), peer)
    socket.datagram_received(b"\x80" + bytes(9), other)
    # Everything still reached aioice.
    assert len(socket.delivered) == 5
    assert len(socket.sent) == 5

    assert socket_tap(socket) is counter
    counters = stats.pair_counters(socket_tap(socket), peer)
    assert counters is not None
    assert (counters.requests_sent, counters.retransmissions_sent) == (2, 1)
    assert (counters.responses_received, counters.requests_received) == (2, 1)
    assert counters.responses_sent == 1
    assert counters.rtt_samples == 1
    assert counters.current_rtt_ms == pytest.approx(20.0)
    assert counters.total_rtt_ms == pytest.approx(20.0)
    assert (counters.bytes_sent, counters.bytes_received) == (100, 150)
    assert counter.counts[other].bytes_received == 10


def test_pair_counters_is_none_for_a_socket_nobody_counted() -> None:
    assert stats.pair_counters(socket_tap(_Socket()), ("192.0.2.7", 5000)) is None


def test_streams_list_rtp_figures_per_direction_with_the_peers_report() -> None:
    from datetime import UTC, datetime

    from aiortc.stats import (
        RTCInboundRtpStreamStats,
        RTCOutboundRtpStreamStats,
        RTCRemoteInboundRtpStreamStats,
    )

    t = datetime.now(UTC)
    report = {
        "out": RTCOutboundRtpStreamStats(
            timestamp=t, type="outbound-rtp", id="out", ssrc=7, kind="audio", transportId="t",
            packetsSent=500, bytesSent=40_000, trackId="x",
        ),
        "rin": RTCRemoteInboundRtpStreamStats(
            timestamp=t, type="remote-inbound-rtp", id="rin", ssrc=7, kind="audio",
            transportId="t", packetsReceived=497, packetsLost=3, jitter=96,
            roundTripTime=0.01, fractionLost=0,
        ),
        "vin": RTCInboundRtpStreamStats(
            timestamp=t, type="inbound-rtp", id="vin", ssrc=9, kind="video", transportId="t",
            packetsReceived=300, packetsLost=1, jitter=900,
        ),
    }  # fmt: skip
    sample, _ = stats.sample(report, None, 1.0)
    audio_out, video_in = sample.streams
    assert (audio_out.kind, audio_out.direction, audio_out.packets) == ("audio", "out", 500)
    assert (audio_out.bytes, audio_out.packets_lost) == (40_000, 3)
    assert audio_out.jitter_ms == pytest.approx(2.0)  # 96 units at 48 kHz
    assert (video_in.direction, video_in.packets, video_in.packets_lost) == ("in", 300, 1)
    assert video_in.bytes is None  # aiortc does not count received bytes
    assert video_in.jitter_ms == pytest.approx(10.0)  # 900 units at 90 kHz
