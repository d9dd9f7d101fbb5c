"""Once-a-second call statistics as a pure function of (report, previous counters, now)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.events import StatsSample


@dataclass(frozen=True)
class Counters:
    """What the next sample needs from this one: byte totals and when they were read."""

    at: float
    bytes_in: float
    bytes_out: float


def sample(
    report: Mapping[str, Any],
    previous: Counters | None,
    now: float,
    extra: Mapping[str, float] | None = None,
) -> tuple[StatsSample, Counters]:
    """Read an aiortc stats report into a :class:`StatsSample` and the counters for the next.

    Bit rates need two reports, so the first sample has none.
    """
    rtt = jitter = fraction = None
    lost = 0
    seen_lost = False
    bytes_in = bytes_out = 0.0
    for stat in report.values():
        kind = getattr(stat, "type", "")
        if kind == "remote-inbound-rtp":
            if stat.roundTripTime is not None:
                rtt = stat.roundTripTime * 1000.0
            if stat.fractionLost is not None:
                # aiortc passes the receiver report's raw 8-bit fixed-point fraction
                # (RFC 3550 §6.4.1: lost/expected * 256); StatsSample wants 0..1.
                fraction = float(stat.fractionLost) / 256.0
        elif kind == "transport":  # every byte on the path: media, RTCP, chat
            bytes_in += stat.bytesReceived or 0
            bytes_out += stat.bytesSent or 0
        elif kind == "inbound-rtp":
            if stat.jitter is not None and stat.kind == "audio":
                # aiortc reports RFC 3550 §6.4.1 interarrival jitter in RTP timestamp units;
                # Opus always uses a 48 kHz RTP clock (RFC 7587 §4.1), so 48 units = 1 ms.
                jitter = float(stat.jitter) / 48.0
            if stat.packetsLost is not None:
                lost += stat.packetsLost
                seen_lost = True
    rate_in = rate_out = None
    if previous is not None:
        dt = max(now - previous.at, 1e-3)
        rate_in = max(0.0, (bytes_in - previous.bytes_in) * 8 / 1000 / dt)
        rate_out = max(0.0, (bytes_out - previous.bytes_out) * 8 / 1000 / dt)
    result = StatsSample(
        at=now,
        rtt_ms=rtt,
        jitter_ms=jitter,
        packets_lost=lost if seen_lost else None,
        fraction_lost=fraction,
        bitrate_in_kbps=rate_in,
        bitrate_out_kbps=rate_out,
        extra=dict(extra or {}),
    )
    return result, Counters(now, bytes_in, bytes_out)
