"""stats.sample: a pure function of (report, previous counters, now); no sockets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.call import stats


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
